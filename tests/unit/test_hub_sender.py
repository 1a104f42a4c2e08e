"""The hub has one sender to agents: Registry.send queues a message for the connected nodes
of a scope and says which; no other module touches a session's outbox (the Link servicer
only drains it onto the stream)."""

import datetime as dt
import re
from pathlib import Path

from edgecommon import pki
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2
from edgecommon.scope import Scope, ScopeKind
from hub.config import LinkSection
from hub.fleet.registry import Registry, Session
from hub.store.sqlite import SqliteStore
from tests.audit_support import FakeClock

ROOT = Path(__file__).resolve().parents[2]
# The sender (and Session, the outbox's owner), and the servicer that drains it.
OUTBOX_OWNERS = {"hub/fleet/registry.py", "hub/fleet/link_service.py"}


def test_no_module_of_the_hub_but_the_sender_and_the_link_touches_an_outbox() -> None:
    touching = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "hub").rglob("*.py")
        if re.search(r"\boutbox\b", path.read_text())
    }
    assert touching == OUTBOX_OWNERS


def attach(registry: Registry, node: str, group: str) -> Session:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = pki.create_ca("edge", now, dt.timedelta(days=1))
    identity = Identity(Kind.NODE, node, group)
    cert = pki.issue_for_key(
        ca_key, ca, pki.generate_key(), identity, "edge", now, dt.timedelta(hours=1)
    )
    return registry.attach(identity, cert, link_pb2.Register())


def queued(session: Session) -> list[link_pb2.HubMessage | None]:
    out = []
    while not session.outbox.empty():
        out.append(session.outbox.get_nowait())
    return out


def test_send_queues_for_the_connected_nodes_of_the_scope_and_names_them(
    tmp_path: Path,
) -> None:
    registry = Registry(SqliteStore(tmp_path / "hub.db"), FakeClock(), LinkSection())
    c = attach(registry, "c", "site-a")
    a = attach(registry, "a", "site-a")
    b = attach(registry, "b", "site-b")
    gone = attach(registry, "d", "site-b")
    registry.detach(gone, "stream closed")
    stop = link_pb2.HubMessage(estop=link_pb2.EstopCommand(stop_id="s1"))

    assert registry.send(stop, Scope(ScopeKind.FLEET)) == ("a", "b", "c")
    assert registry.send(stop, Scope(ScopeKind.GROUP, "site-a")) == ("a", "c")
    assert registry.send(stop, Scope(ScopeKind.NODE, "b")) == ("b",)
    assert registry.send(stop, Scope(ScopeKind.NODE, "d")) == ()  # offline: nobody
    assert registry.send(stop, Scope(ScopeKind.GROUP, "nowhere")) == ()
    picked = registry.send(stop, Scope(ScopeKind.FLEET), only=lambda s: s.group == "site-b")
    assert picked == ("b",)
    assert [len(queued(s)) for s in (a, b, c, gone)] == [2, 3, 2, 0]


def test_a_replaced_or_silent_session_leaves_its_group(tmp_path: Path) -> None:
    clock = FakeClock()
    registry = Registry(SqliteStore(tmp_path / "hub.db"), clock, LinkSection())
    old = attach(registry, "a", "site-a")
    new = attach(registry, "a", "site-b")  # the same node, re-enrolled into another group
    message = link_pb2.HubMessage(lease_nudge=link_pb2.LeaseNudge(reason="r"))
    assert registry.send(message, Scope(ScopeKind.GROUP, "site-a")) == ()
    assert registry.send(message, Scope(ScopeKind.GROUP, "site-b")) == ("a",)
    assert queued(old) == [None]  # closed when replaced, sent nothing after
    clock.now += LinkSection().offline_after_s + 1
    registry.sweep()
    assert registry.send(message, Scope(ScopeKind.FLEET)) == ()
    assert registry.send(message, Scope(ScopeKind.GROUP, "site-b")) == ()
    assert [m.WhichOneof("body") if m else None for m in queued(new)] == ["lease_nudge", None]
