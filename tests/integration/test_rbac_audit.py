"""RBAC and the audit log end to end: real hub and agent processes, real mTLS, edgectl.

INV-RBAC-01: enforced by default; AUTONOMY_RBAC_ENFORCEMENT=0 lets requests through,
loudly, each audited as bypassed. INV-AUDIT-01: `audit verify` names a changed event.
"""

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecommon.scope import parse_scope
from hub.rbac.policy import Assignment, Policy, Target, check
from tests.procs import Fleet, clean_env, fleet_fixture, wait_until

OK, FAILED, UNREACHABLE, DENIED, PARTIAL = 0, 1, 3, 4, 5

# (command, permission, scope it acts on); each is safe to repeat.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("fleet", "status"), "fleet.read", "fleet"),
    (("fleet", "status", "--group", "site-a"), "fleet.read", "group:site-a"),
    (("node", "show", "n1"), "fleet.read", "node:n1"),
    (("leader", "status", "--group", "site-a"), "leader.read", "group:site-a"),
    (
        ("estop", "engage", "--scope", "group:site-a", "--reason", "matrix"),
        "estop.engage",
        "group:site-a",
    ),
    (
        ("estop", "release", "--scope", "group:site-a", "--reason", "matrix", "--force"),
        "estop.release",
        "group:site-a",
    ),
    (("estop", "engage", "--scope", "fleet", "--reason", "matrix"), "estop.engage", "fleet"),
    (
        ("estop", "release", "--scope", "fleet", "--reason", "matrix", "--force"),
        "estop.release",
        "fleet",
    ),
    (("token", "create", "--node", "n9", "--group", "site-a"), "token.create", "group:site-a"),
    (("rbac", "role", "list"), "rbac.read", "fleet"),
    (("rbac", "assign", "zed", "viewer", "--scope", "group:site-a"), "rbac.admin", "fleet"),
    (("audit", "query", "--limit", "1"), "audit.read", "fleet"),
    (("cert", "list"), "cert.read", "fleet"),
    (("ca", "status"), "ca.read", "fleet"),
]
OPERATORS = {
    "viewer-all": ("viewer", "fleet"),
    "viewer-a": ("viewer", "group:site-a"),
    "oper-all": ("operator", "fleet"),
    "oper-a": ("operator", "group:site-a"),
    "admin-a": ("admin", "group:site-a"),
    "nobody": ("", "fleet"),
}


@pytest.fixture(scope="module")
def rbac_fleet() -> Iterator[Fleet]:
    """A hub, one agent (n1 in site-a) and one operator per role and scope."""
    for fleet in fleet_fixture():
        fleet.start_hub()
        fleet.bootstrap_operator()
        fleet.start_agent("n1", fleet.token("n1"))
        fleet.wait_connected("n1")
        for name, (role, scope) in OPERATORS.items():
            fleet.login_operator(name, role, scope)
        yield fleet


def as_op(fleet: Fleet, name: str, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return fleet.edgectl("--context", str(fleet.root / f"op-{name}"), *args, env=env)


def audit_events(fleet: Fleet, *filters: str) -> list[dict]:
    result = fleet.edgectl("-o", "json", "audit", "query", "--limit", "1000", *filters)
    assert result.code == OK, result.stderr
    return list(result.json["events"])


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_permission_matrix_through_edgectl(rbac_fleet: Fleet, name: str) -> None:
    role, scope = OPERATORS[name]
    assignments = [Assignment(name, role, parse_scope(scope))] if role else []
    policy = Policy.build([], assignments)
    for args, permission, target in COMMANDS:
        target_scope = parse_scope(target)
        expected = check(policy, name, permission, Target(target_scope, "site-a")).allowed
        result = as_op(rbac_fleet, name, *args)
        want = OK if expected else DENIED
        assert result.code == want, (name, args, result.stderr)
        if not expected:
            assert f"{name} may not {permission} on {target}" in result.stderr
            assert "Traceback" not in result.stderr


def test_denials_and_actions_are_audited_with_outcomes(rbac_fleet: Fleet) -> None:
    fleet = rbac_fleet
    denied = as_op(fleet, "viewer-all", "estop", "engage", "--scope", "fleet", "--reason", "x")
    assert denied.code == DENIED
    events = audit_events(fleet, "--operator", "viewer-all", "--outcome", "denied")
    assert any(e["action"] == "estop.engage" and e["scope"] == "fleet" for e in events)
    engaged = as_op(
        fleet, "oper-a", "estop", "engage", "--scope", "group:site-a", "--reason", "audit trail"
    )
    assert engaged.code == OK, engaged.stderr
    trail = [
        e
        for e in audit_events(fleet, "--action", "estop.engage", "--operator", "oper-a")
        if e["reason"] == "audit trail"
    ]
    assert [e["outcome"] for e in trail[-2:]] == ["attempt", "success"]
    assert trail[-1]["request_id"] == trail[-2]["request_id"] != ""
    assert trail[-1]["target"] == "group:site-a"
    enrolled = audit_events(fleet, "--action", "enroll", "--target", "node:n1")
    assert [e["outcome"] for e in enrolled[:2]] == ["attempt", "success"]
    released = as_op(
        fleet,
        "oper-a",
        "estop",
        "release",
        "--scope",
        "group:site-a",
        "--reason",
        "done",
        "--force",
    )
    assert released.code == OK, released.stderr


def test_autonomy_operator_must_match_the_credential(rbac_fleet: Fleet) -> None:
    fleet = rbac_fleet
    wrong = as_op(fleet, "oper-all", "fleet", "status", env=clean_env(AUTONOMY_OPERATOR="admin"))
    assert wrong.code == DENIED
    assert "AUTONOMY_OPERATOR=admin does not match the authenticated operator oper-all" in (
        wrong.stderr
    )
    right = as_op(fleet, "oper-all", "fleet", "status", env=clean_env(AUTONOMY_OPERATOR="oper-all"))
    assert right.code == OK, right.stderr


def test_rbac_commands_and_bad_input(rbac_fleet: Fleet) -> None:
    fleet = rbac_fleet
    bad = [
        (("rbac", "role", "create", "x", "--permission", "estop.engag"), "did you mean"),
        (("rbac", "role", "create", "admin", "--permission", "fleet.read"), "built in"),
        (("rbac", "assign", "alice", "superuser"), "unknown role"),
        (("rbac", "assign", "alice", "viewer", "--scope", "group:nowhere"), "no enrolled node"),
        (("rbac", "assign", "alice", "viewer", "--scope", "node:n1"), "per group"),
        (("rbac", "check", "alice", "launch.missiles"), "unknown permission"),
        (("rbac", "role", "delete", "viewer", "--force"), "built in"),
        (("audit", "prune", "--older-than", "90", "--force"), "whole number of days"),
        (("audit", "query", "--since", "yesterday"), "--since"),
    ]
    before = fleet.edgectl("-o", "json", "rbac", "assignments").json
    for args, message in bad:
        result = fleet.edgectl(*args)
        assert result.code in (1, 2), (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fleet.edgectl("-o", "json", "rbac", "assignments").json == before

    created = fleet.edgectl(
        "rbac",
        "role",
        "create",
        "auditor",
        "-p",
        "audit.read,fleet.read",
        "--description",
        "reads the audit log",
    )
    assert created.code == OK, created.stderr
    assert fleet.edgectl("rbac", "assign", "viewer-a", "auditor").code == OK
    check_ok = fleet.edgectl("-o", "json", "rbac", "check", "viewer-a", "audit.read")
    assert check_ok.code == OK
    assert check_ok.json["decided_by"] == {
        "operator": "viewer-a",
        "role": "auditor",
        "scope": "fleet",
    }
    assert as_op(fleet, "viewer-a", "audit", "verify").code == OK
    refused = fleet.edgectl("rbac", "role", "delete", "auditor", "--force")
    assert refused.code == OK
    no_more = fleet.edgectl("rbac", "check", "viewer-a", "audit.read")
    assert no_more.code == DENIED
    assert "DENY" in no_more.stdout
    show = fleet.edgectl("-o", "json", "rbac", "role", "show", "operator")
    assert "estop.engage" in show.json["permissions"]
    changes = audit_events(fleet, "--action", "rbac.admin", "--outcome", "success")
    assert {e["target"] for e in changes} >= {"role:auditor", "operator:viewer-a"}


def test_inv_audit_01_verify_through_the_hub_names_an_edited_event(rbac_fleet: Fleet) -> None:
    fleet = rbac_fleet
    ok = fleet.edgectl("-o", "json", "audit", "verify")
    assert ok.code == OK, ok.stderr
    assert ok.json["ok"]
    assert ok.json["checked"] > 10
    segments = sorted((fleet.hub_state / "audit").glob("*.jsonl"))
    assert segments
    lines = segments[0].read_text().splitlines(keepends=True)
    event = json.loads(lines[3])
    edited = lines[3].replace(f'"operator":"{event["operator"]}"', '"operator":"someone-else"')
    assert edited != lines[3]
    segments[0].write_text("".join([*lines[:3], edited, *lines[4:]]))
    try:
        bad = fleet.edgectl("audit", "verify")
        assert bad.code == FAILED
        assert f"event {event['seq']}" in bad.stdout
        assert "edited" in bad.stdout
    finally:
        segments[0].write_text("".join(lines))


def test_inv_rbac_01_break_glass_is_loud_and_audited_as_bypassed(fleet: Fleet) -> None:
    """INV-RBAC-01."""
    fleet.start_hub(env={"AUTONOMY_RBAC_ENFORCEMENT": "0"})
    fleet.bootstrap_operator()
    assert "RBAC ENFORCEMENT IS OFF" in fleet.hub.output()
    fleet.login_operator("nobody")
    result = as_op(fleet, "nobody", "estop", "engage", "--scope", "fleet", "--reason", "glass")
    assert result.code == OK, result.stderr
    wait_until(
        "warning per request",
        lambda: "nobody estop.engage on fleet let through" in fleet.hub.output(),
    )
    events = audit_events(fleet, "--operator", "nobody")
    engage = [e for e in events if e["action"] == "estop.engage"]
    assert [e["outcome"] for e in engage] == ["bypassed", "success"]
    assert "would be denied" in engage[0]["detail"]
    status = fleet.edgectl("-o", "json", "rbac", "status")
    assert status.json["enforcing"] is False
    assert status.json["bypassed"] >= 1


def test_inv_rbac_01_enforcement_is_on_by_default(running_fleet: Fleet) -> None:
    """INV-RBAC-01: with nothing configured, an operator without a role is refused."""
    fleet = running_fleet
    fleet.login_operator("newcomer")
    assert as_op(fleet, "newcomer", "fleet", "status").code == DENIED
    assert "RBAC ENFORCEMENT IS OFF" not in fleet.hub.output()
    assert fleet.edgectl("-o", "json", "rbac", "status").json["enforcing"] is True


RBAC_FILE = """
roles:
  - name: stopper
    permissions: [estop.engage, estop.read]
assignments:
  - {operator: admin, role: admin}
  - {operator: ops, role: stopper}
"""


def test_rbac_directory_reloads_and_keeps_last_good_set(fleet: Fleet) -> None:
    directory = fleet.root / "rbac"
    directory.mkdir()
    policy_file = directory / "rbac.yaml"
    policy_file.write_text(RBAC_FILE)
    fleet.start_hub(env={"AUTONOMY_RBAC_DIR": str(directory)})
    fleet.bootstrap_operator()
    fleet.login_operator("ops")
    refused = fleet.edgectl("rbac", "assign", "ops", "viewer")
    assert refused.code == FAILED
    assert f"managed in files under {directory}" in refused.stderr
    assert as_op(fleet, "ops", "estop", "status").code == OK
    assert as_op(fleet, "ops", "fleet", "status").code == DENIED
    policy_file.write_text(RBAC_FILE.replace("[estop.engage, estop.read]", "[fleet.read]"))
    wait_until("reload", lambda: as_op(fleet, "ops", "fleet", "status").code == OK)
    policy_file.write_text("roles: [")
    status = wait_until(
        "rejected edit reported",
        lambda: (s := fleet.edgectl("-o", "json", "rbac", "status").json)["last_error"] and s,
    )
    assert "is not valid YAML" in status["last_error"]
    assert as_op(fleet, "ops", "fleet", "status").code == OK  # last good set still in force
    reloads = audit_events(fleet, "--action", "rbac.reload")
    assert [e["outcome"] for e in reloads][-2:] == ["success", "failure"]


def test_bad_rbac_directory_stops_the_hub_with_a_clear_error(fleet: Fleet) -> None:
    directory = fleet.root / "rbac"
    directory.mkdir()
    (directory / "rbac.yaml").write_text("assignments:\n  - {operator: a, role: ghost}\n")
    hub = fleet.start_hub(env={"AUTONOMY_RBAC_DIR": str(directory)}, wait=False)
    wait_until("hub exits", lambda: not hub.running())
    assert hub.stop() != 0
    assert "unknown role 'ghost'" in hub.output()
    assert "Traceback" not in hub.output()


@pytest.fixture
def small_disk(fleet: Fleet) -> Iterator[Path]:
    """A 256 KiB tmpfs for the audit log, so that a full disk is real."""
    mount = fleet.root / "auditfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if fleet.hub is not None:
            fleet.hub.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for _ in range(4096):  # at most 16 MiB, far beyond the mount
            try:
                out.write(b"\0" * 4096)
            except OSError:
                break
    return filler


def test_full_audit_disk_refuses_actions_but_never_emergency_stops(
    fleet: Fleet, small_disk: Path
) -> None:
    fleet.start_hub(extra=f'[audit]\ndir = "{small_disk / "audit"}"\n')
    fleet.bootstrap_operator()
    assert fleet.edgectl("token", "create", "--node", "n5", "--group", "site-a").code == OK
    filler = fill(small_disk)
    refused = None
    for attempt in range(40):  # the segment's last page may take a few more events
        result = fleet.edgectl("token", "create", "--node", f"m{attempt}", "--group", "site-a")
        if result.code != OK:
            refused = result
            break
    assert refused is not None, "no action was refused with the audit disk full"
    assert refused.code == UNREACHABLE
    assert "refusing token.create: the audit log cannot record it" in refused.stderr
    engaged = fleet.edgectl("estop", "engage", "--scope", "fleet", "--reason", "disk full")
    assert engaged.code == OK, engaged.stderr
    assert "AUDIT EVENT NOT RECORDED" in fleet.hub.output()
    status = fleet.edgectl("-o", "json", "audit", "status")
    assert status.code == PARTIAL
    assert status.json["unrecorded"] >= 1
    filler.unlink()
    again = fleet.edgectl("token", "create", "--node", "n6", "--group", "site-a")
    assert again.code == OK, again.stderr
    assert fleet.edgectl("audit", "verify").code == OK


def test_http_status_needs_autonomy_read(running_fleet: Fleet) -> None:
    fleet = running_fleet
    token = fleet.http_token_file.read_text().strip()

    def get() -> int:
        request = urllib.request.Request(f"http://{fleet.http}/v1/autonomy/status")
        request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    assert get() == 200
    assert fleet.edgectl("rbac", "unassign", "status-api", "viewer").code == OK
    assert get() == 403
    denied = audit_events(fleet, "--operator", "status-api", "--outcome", "denied")
    assert denied


def test_export_streams_every_event_as_jsonl_and_csv(rbac_fleet: Fleet) -> None:
    fleet = rbac_fleet
    # At least one denial in the log, whichever tests of this module ran before.
    assert as_op(fleet, "nobody", "fleet", "status").code == DENIED
    queried = audit_events(fleet)
    jsonl = fleet.edgectl("audit", "export", "--format", "jsonl")
    assert jsonl.code == OK, jsonl.stderr
    exported = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [e["seq"] for e in exported[: len(queried)]] == [e["seq"] for e in queried]
    out = fleet.root / "denied.csv"
    csv_run = fleet.edgectl(
        "audit", "export", "--format", "csv", "--outcome", "denied", "--file", str(out)
    )
    assert csv_run.code == OK, csv_run.stderr
    rows = out.read_text().splitlines()
    assert rows[0].startswith("seq,time,time_utc,operator,action")
    assert len(rows) > 1
    assert all(",denied," in row for row in rows[1:])
