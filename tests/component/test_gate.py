"""The gate every operator request passes (hub/rbac/gate.py): a real RBAC policy from YAML files,
a real file audit log and a real registry in tmp_path, the fake clock and seeded randomness.
What is checked is the decision a caller gets and the audit events an auditor would read."""

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgecommon.audit_record import AuditFilter
from edgecommon.errors import PermissionDenied, Unauthenticated, Unreachable
from hub.audit.emitter import AuditEmitter
from hub.audit.file_log import FileAuditLog
from hub.config import LinkSection
from hub.fleet.registry import Registry
from hub.rbac.gate import Gate, GateCall
from hub.rbac.source import RbacSource
from hub.store.sqlite import SqliteStore
from tests.fakes import FakeClock, connect, eventually, running, seeded

DENIAL_WINDOW_S = 60.0
POLICY = """\
assignments:
  - {operator: alice, role: operator}
  - {operator: vera, role: viewer}
  - {operator: gus, role: operator, scope: group:site-a}
"""


def build(
    rbac: RbacSource, registry: Registry, audit: AuditEmitter, clock: FakeClock, enforce: bool
) -> Gate:
    """The component as the hub assembles it: the one place to follow its constructor."""
    return Gate(
        rbac, registry, audit, seeded(), clock, enforce=enforce, denial_interval_s=DENIAL_WINDOW_S
    )


@dataclass
class Parts:
    rbac: RbacSource
    registry: Registry
    audit: AuditEmitter
    audit_dir: Path


@pytest.fixture
async def parts(tmp_path: Path, hub_store: SqliteStore, clock: FakeClock) -> AsyncIterator[Parts]:
    (tmp_path / "rbac").mkdir()
    (tmp_path / "rbac" / "policy.yaml").write_text(POLICY)
    rbac = RbacSource(hub_store, tmp_path / "rbac", clock)
    await rbac.load()
    registry = Registry(hub_store, clock, LinkSection())
    connect(registry, "a1", "site-a")
    connect(registry, "b1", "site-b")
    audit_dir = tmp_path / "audit"
    audit = AuditEmitter(
        None, FileAuditLog(audit_dir, clock), logging.getLogger("test.audit"), clock
    )
    await audit.open()
    try:
        yield Parts(rbac, registry, audit, audit_dir)
    finally:
        await audit.close()


def gate(parts: Parts, clock: FakeClock, enforce: bool = True) -> Gate:
    return build(parts.rbac, parts.registry, parts.audit, clock, enforce)


async def audited(parts: Parts) -> list[tuple[str, str, str, str]]:
    """(operator, action, target, outcome) of every event in the audit log, in order."""
    events = await parts.audit.fallback.query(AuditFilter())
    return [(e.operator, e.action, e.target, e.outcome) for e in events]


def engage(operator: str, target: str = "fleet", **fields: str) -> GateCall:
    return GateCall(
        operator=operator,
        permission="estop.engage",
        target=target,
        action="estop.engage",
        mutates=True,
        request_id="req-1",
        **fields,
    )


async def test_inv_rbac_01_a_request_without_the_permission_is_denied_and_audited(
    parts: Parts, clock: FakeClock
) -> None:
    g = gate(parts, clock)
    with pytest.raises(PermissionDenied, match=r"vera may not estop\.engage on fleet"):
        await g.admit(engage("vera"))
    assert await audited(parts) == [("vera", "estop.engage", "fleet", "denied")]
    assert (g.stats.denied, g.stats.allowed) == (1, 0)


async def test_an_allowed_action_is_audited_before_its_effect_and_its_outcome_after(
    parts: Parts, clock: FakeClock
) -> None:
    g = gate(parts, clock)
    call = engage("alice", reason="smoke in hall 2")
    await g.admit(call)
    assert await audited(parts) == [("alice", "estop.engage", "fleet", "attempt")]
    await g.finish(call, "success")
    events = await parts.audit.fallback.query(AuditFilter())
    assert [e.outcome for e in events] == ["attempt", "success"]
    assert {(e.request_id, e.reason) for e in events} == {("req-1", "smoke in hall 2")}


async def test_reads_are_decided_but_not_audited(parts: Parts, clock: FakeClock) -> None:
    g = gate(parts, clock)
    read = GateCall(operator="vera", permission="fleet.read", target="fleet", action="fleet.read")
    await g.admit(read)
    await g.finish(read, "success")
    assert await audited(parts) == []
    assert g.stats.allowed == 1


async def test_a_group_assignment_covers_the_group_and_its_nodes_never_the_fleet(
    parts: Parts, clock: FakeClock
) -> None:
    g = gate(parts, clock)
    for allowed in ("group:site-a", "node:a1"):
        await g.admit(engage("gus", allowed))
    for denied in ("node:b1", "group:site-b", "fleet", "node:z9"):
        with pytest.raises(PermissionDenied):
            await g.admit(engage("gus", denied))
    outcomes = [(target, outcome) for _, _, target, outcome in await audited(parts)]
    assert outcomes == [
        ("group:site-a", "attempt"),
        ("node:a1", "attempt"),
        ("node:b1", "denied"),
        ("group:site-b", "denied"),
        ("fleet", "denied"),
        ("node:z9", "denied"),
    ]


async def test_inv_rbac_01_with_enforcement_off_every_request_passes_audited_as_bypassed(
    parts: Parts, clock: FakeClock
) -> None:
    g = gate(parts, clock, enforce=False)
    await g.admit(engage("vera"))
    (event,) = await parts.audit.fallback.query(AuditFilter())
    assert (event.operator, event.outcome) == ("vera", "bypassed")
    assert event.detail.startswith("would be denied: ")
    assert g.stats.bypassed == 1


async def test_an_operator_claiming_another_name_is_denied(parts: Parts, clock: FakeClock) -> None:
    g = gate(parts, clock)
    with pytest.raises(PermissionDenied):
        await g.admit(engage("vera", claimed="alice"))
    (event,) = await parts.audit.fallback.query(AuditFilter())
    assert event.outcome == "denied"
    assert "AUTONOMY_OPERATOR=alice does not match the authenticated operator vera" in event.detail


async def test_an_action_the_audit_log_cannot_record_is_refused_but_an_emergency_stop_proceeds(
    parts: Parts, clock: FakeClock
) -> None:
    g = gate(parts, clock)
    await parts.audit.close()  # no backend takes events any more
    release = GateCall(
        operator="alice",
        permission="estop.release",
        target="fleet",
        action="estop.release",
        mutates=True,
    )
    with pytest.raises(Unreachable, match=r"refusing estop\.release: the audit log cannot record"):
        await g.admit(release)
    await g.admit(engage("alice"))  # admitted: a stop is never refused for want of audit
    assert g.stats.unrecorded == 1
    log = FileAuditLog(parts.audit_dir, clock)
    await log.open()
    try:
        assert await log.query(AuditFilter()) == []
    finally:
        await log.close()


async def test_denials_without_a_credential_are_recorded_once_then_counted_per_window(
    parts: Parts, clock: FakeClock
) -> None:
    g = gate(parts, clock)
    no_cert = Unauthenticated("no client certificate")
    for _ in range(5):
        await g.unauthenticated("10.0.0.9", "anonymous", "ListNodes", no_cert)
        await clock.advance(1.0)
    await g.unauthenticated("10.0.0.7", "anonymous", "ListNodes", no_cert)
    first = [("anonymous", "ListNodes", f"source:{s}", "denied") for s in ("10.0.0.9", "10.0.0.7")]
    assert await audited(parts) == first
    async with running(g.run(tick_s=1.0)):
        await clock.advance(DENIAL_WINDOW_S - 6.0)
        assert len(await audited(parts)) == 2  # 10.0.0.9's window is still open
        await clock.advance(2.0)

        async def counted() -> bool:
            return len(await audited(parts)) == 3

        await eventually("the count of 10.0.0.9's window is recorded", counted)
    events = await parts.audit.fallback.query(AuditFilter())
    assert events[2].target == "source:10.0.0.9"
    assert events[2].detail.startswith("4 more denials of the same kind as the one recorded at")
    assert g.stats.denied == 6


async def test_a_request_id_is_kept_when_valid_else_drawn_from_the_injected_randomness(
    parts: Parts, clock: FakeClock
) -> None:
    g = gate(parts, clock)
    assert g.request_id("req-7.a:b") == "req-7.a:b"
    assert g.request_id("no spaces allowed") == f"{seeded().getrandbits(64):016x}"
