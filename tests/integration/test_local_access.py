"""Who may do what on the agent's local socket, with real workloads running as other users.

The agent runs as root here (so root and the agent's own user are the same caller); the
workloads are real processes that drop to `nobody` (and a second unprivileged uid) with
chosen supplementary groups before they connect, so the agent sees them through the
kernel exactly as it would see a workload started by systemd. The socket sits in a
setgid directory of the workload group, as systemd/tmpfiles.d sets it up in production.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.procs import ROOT, Fleet, clean_env, wait_until

WORKLOADS, OPERATORS, JOURNAL_WRITERS = 47901, 47902, 47903
NOBODY = 65534
OTHER_UID = 47950  # a second unprivileged workload user (no passwd entry needed)
LOCAL = (
    "[local]\n"
    f'workload_groups = ["{WORKLOADS}"]\n'
    f'operator_groups = ["{OPERATORS}"]\n'
    f'journal_append_groups = ["{JOURNAL_WRITERS}"]\n'
)
WORKLOAD = [WORKLOADS]
OPERATOR = [WORKLOADS, OPERATORS]  # operators are also in the socket's group

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="running a workload as another uid needs root"
)


def socket_of(fleet: Fleet, node: str) -> Path:
    return fleet.root / f"run-{node}" / "agent.sock"


def start_node(fleet: Fleet, node: str, local: str = LOCAL, socket_mode: str = "") -> Path:
    """An enrolled agent whose socket directory is root:WORKLOADS 2750, like
    /run/edge-agent in production. `fleet.socket(node)` is a link to it for root's checks."""
    os.chmod(fleet.root, 0o711)  # let other users walk to the socket directory
    run = socket_of(fleet, node).parent
    run.mkdir(mode=0o750)
    os.chown(run, 0, WORKLOADS)
    run.chmod(0o2751 if socket_mode else 0o2750)  # a wide socket mode: others may walk in
    config = fleet.write_agent_config(node, fleet.token(node), extra=local)
    text = config.read_text().replace(
        f'socket = "{fleet.socket(node)}"',
        f'socket = "{socket_of(fleet, node)}"'
        + (f"\nsocket_mode = {socket_mode}" if socket_mode else ""),
    )
    config.write_text(text)
    fleet.socket(node).symlink_to(socket_of(fleet, node))
    fleet.start_agent(node, config=config)
    fleet.wait_connected(node)
    return socket_of(fleet, node)


def as_user(
    fleet: Fleet, node: str, groups: list[int], op: str, *args: str, uid: int = NOBODY
) -> list[dict[str, Any]]:
    """Run tests/local_client.py as `uid` with `groups`; its JSON answers."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.local_client",
            str(uid),
            str(NOBODY),
            ",".join(map(str, groups)) or "-",
            str(socket_of(fleet, node)),
            op,
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(HOME="/nonexistent"),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def call(
    fleet: Fleet,
    node: str,
    groups: list[int],
    method: str,
    body: dict[str, Any] | None = None,
    uid: int = NOBODY,
) -> dict[str, Any]:
    service, name = method.split(".")
    answers = as_user(fleet, node, groups, "call", service, name, json.dumps(body or {}), uid=uid)
    assert len(answers) == 1, answers
    return answers[0]


def local_state(fleet: Fleet, node: str) -> dict[str, Any]:
    """The node's e-stop state as root (a node operator) sees it."""
    result = fleet.edgectl(
        "--output", "json", "estop", "status", "--local", "--socket", str(fleet.socket(node))
    )
    assert result.code == 0, result.stderr
    return dict(result.json)


def assert_denied(answer: dict[str, Any], permission: str, *named: str) -> None:
    assert answer["code"] == "PERMISSION_DENIED", answer
    for text in (permission, *named):
        assert text in answer["details"], answer


@pytest.fixture
def node(running_fleet: Fleet) -> Fleet:
    start_node(running_fleet, "node-1")
    return running_fleet


def test_local_workload_cannot_release_an_operators_local_stop(node: Fleet) -> None:
    fleet = node
    sock = str(fleet.socket("node-1"))
    engaged = fleet.edgectl("estop", "engage", "--local", "--reason", "hands in", "--socket", sock)
    assert engaged.code == 0, engaged.stderr

    answer = call(fleet, "node-1", WORKLOAD, "AgentLocal.ReleaseLocalStop", {"reason": "go"})
    assert_denied(answer, "local.estop.release", "nobody", "uid 65534", str(OPERATORS))
    assert local_state(fleet, "node-1")["stopped"], "a workload released the operator's stop"
    engage = call(fleet, "node-1", WORKLOAD, "AgentLocal.EngageLocalStop", {"reason": "mine"})
    assert_denied(engage, "local.estop.engage")

    released = call(fleet, "node-1", OPERATOR, "AgentLocal.ReleaseLocalStop", {"reason": "clear"})
    assert released["code"] == "OK", released
    assert not local_state(fleet, "node-1")["stopped"]


def test_local_workload_cannot_rotate_the_nodes_certificate(node: Fleet) -> None:
    fleet = node
    before = fleet.agent_status("node-1")
    assert before is not None
    answer = call(fleet, "node-1", WORKLOAD, "AgentLocal.RotateCertificate")
    assert_denied(answer, "local.cert.rotate", "uid 65534")
    after = fleet.agent_status("node-1")
    assert after is not None
    assert after["certificate"]["serial"] == before["certificate"]["serial"]


def test_local_workload_appends_to_the_journal_only_where_configured(node: Fleet) -> None:
    fleet = node
    body = {"key": "plan/step", "value": "b25l"}
    writer = [WORKLOADS, JOURNAL_WRITERS]
    wait_until(
        "the node leads its group and commits a journal writer's append",
        lambda: call(fleet, "node-1", writer, "JournalLocal.Append", body)["code"] == "OK",
    )
    read = call(fleet, "node-1", writer, "JournalLocal.Read", {"key": "plan/step"})
    assert read["code"] == "OK", read

    appended = call(fleet, "node-1", WORKLOAD, "JournalLocal.Append", body)
    assert_denied(appended, "local.journal.append", "uid 65534", str(JOURNAL_WRITERS))
    streamed = as_user(fleet, "node-1", WORKLOAD, "stream-append", "plan/step", "one", "5")
    assert_denied(streamed[0], "local.journal.append")
    [by_writer] = as_user(fleet, "node-1", writer, "stream-append", "plan/step", "two", "0")
    assert by_writer["code"] == "OK", by_writer
    assert by_writer["response"]["committed"], by_writer
    assert_denied(call(fleet, "node-1", WORKLOAD, "JournalLocal.Read"), "local.journal.read")
    recover = call(fleet, "node-1", writer, "JournalLocal.Recover", {"dry_run": True})
    assert_denied(recover, "local.journal.recover", str(OPERATORS))


def test_local_workload_cannot_watch_or_release_another_workloads_permit(node: Fleet) -> None:
    fleet = node
    holder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.local_client",
            str(NOBODY),
            str(NOBODY),
            str(WORKLOADS),
            str(socket_of(fleet, "node-1")),
            "hold",
            "move_arm",
            "1",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=clean_env(HOME="/nonexistent"),
    )
    try:
        assert holder.stdout is not None
        granted = json.loads(holder.stdout.readline())
        assert granted["response"]["granted"], granted
        permit = {"permit_id": granted["response"]["permit_id"]}

        other = call(fleet, "node-1", WORKLOAD, "AgentLocal.ReleasePermit", permit, uid=OTHER_UID)
        assert_denied(other, "local.permit.any", "uid 47950", "uid 65534")
        watched = call(fleet, "node-1", WORKLOAD, "AgentLocal.WatchPermit", permit, uid=OTHER_UID)
        assert_denied(watched, "local.permit.any")
        assert local_state(fleet, "node-1")["held_permits"] == 1

        # The same user on another connection may release its own permit.
        mine = call(fleet, "node-1", WORKLOAD, "AgentLocal.ReleasePermit", permit)
        assert mine == {"code": "OK", "details": "", "response": {"released": True}}
    finally:
        holder.communicate("", timeout=30)


def test_operator_may_release_any_workloads_permit(node: Fleet) -> None:
    fleet = node
    [granted] = as_user(fleet, "node-1", WORKLOAD, "hold", "move_arm", "1")
    # The holder has exited: its permit went with its connection.
    assert local_state(fleet, "node-1")["held_permits"] == 0
    holder = _holder(fleet, WORKLOAD, 1)
    try:
        permit = {"permit_id": holder[1][0]["response"]["permit_id"]}
        released = call(
            fleet, "node-1", OPERATOR, "AgentLocal.ReleasePermit", permit, uid=OTHER_UID
        )
        assert released["response"] == {"released": True}, released
    finally:
        holder[0].communicate("", timeout=30)
    assert granted["response"]["granted"]


def test_local_workload_may_ask_hold_and_release_its_own_permits_and_read_status(
    node: Fleet,
) -> None:
    fleet = node
    for method in ("Status", "GetEstop", "LeaderStatus"):
        assert call(fleet, "node-1", WORKLOAD, f"AgentLocal.{method}")["code"] == "OK", method
    assert call(fleet, "node-1", WORKLOAD, "JournalLocal.ReplicaStatus")["code"] == "OK"
    dry = call(
        fleet, "node-1", WORKLOAD, "AgentLocal.RequestPermit", {"action": "x", "dry_run": True}
    )
    assert dry["response"]["granted"], dry


def test_caller_in_no_role_is_refused_even_when_the_socket_mode_lets_it_in(
    running_fleet: Fleet,
) -> None:
    """The socket's mode is the first fence, not the only one."""
    fleet = running_fleet
    start_node(fleet, "node-1", socket_mode="0o666")
    answer = call(fleet, "node-1", [], "AgentLocal.RequestPermit", {"action": "x"})
    assert_denied(answer, "local.permit", "nobody", "uid 65534", str(WORKLOADS), str(OPERATORS))
    assert_denied(call(fleet, "node-1", [], "AgentLocal.Status"), "local.status.read")


def edgectl_as(
    fleet: Fleet, node: str, groups: list[int], *args: str, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """edgectl run by `nobody` with `groups`, against the node's socket, from `cwd`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.local_client",
            str(NOBODY),
            str(NOBODY),
            ",".join(map(str, groups)) or "-",
            str(socket_of(fleet, node)),
            "edgectl",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(HOME="/nonexistent", PYTHONPATH=str(ROOT)),
        timeout=60,
    )


def test_the_socket_mode_keeps_out_users_outside_its_group(node: Fleet) -> None:
    answer = call(node, "node-1", [], "AgentLocal.Status")
    assert answer["code"] == "UNAVAILABLE", answer
    # edgectl says which group would let this user in, and exits 4 (denied), not 3.
    done = edgectl_as(node, "node-1", [], "status")
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert f"not in group {WORKLOADS}" in done.stderr
    assert "usermod -aG" in done.stderr


def test_edgectl_reports_a_local_denial_with_exit_4(node: Fleet) -> None:
    fleet = node
    done = edgectl_as(
        fleet, "node-1", WORKLOAD, "estop", "engage", "--local", "--reason", "workload says stop"
    )
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert "local.estop.engage" in done.stderr
    assert "uid 65534" in done.stderr
    assert not local_state(fleet, "node-1")["stopped"]
    # An operator's local stop is recorded under the user the kernel names.
    done = edgectl_as(fleet, "node-1", OPERATOR, "estop", "engage", "--local", "--reason", "op")
    assert done.returncode == 0, done.stderr
    [stop] = local_state(fleet, "node-1")["stops"]
    assert stop["operator"].endswith("(local user nobody)") or stop["operator"] == "nobody"


# --- permits are bounded -----------------------------------------------------------


def _holder(fleet: Fleet, groups: list[int], count: int, uid: int = NOBODY):  # type: ignore[no-untyped-def]
    """A workload that asks for `count` permits on one connection and keeps it open."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.local_client",
            str(uid),
            str(NOBODY),
            ",".join(map(str, groups)),
            str(socket_of(fleet, "node-1")),
            "hold",
            "move_arm",
            str(count),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=clean_env(HOME="/nonexistent"),
    )
    assert proc.stdout is not None
    answers = []
    while (line := proc.stdout.readline()) and not line.startswith("HOLDING"):
        answers.append(json.loads(line))
    return proc, answers


def test_permits_beyond_the_per_caller_cap_are_refused_naming_the_cap(node: Fleet) -> None:
    fleet = node
    proc, answers = _holder(fleet, WORKLOAD, 65)  # the default cap is 64 per caller
    try:
        assert [a["code"] for a in answers[:64]] == ["OK"] * 64
        assert answers[64]["code"] == "RESOURCE_EXHAUSTED", answers[64]
        assert "[local].max_permits_per_caller" in answers[64]["details"]
        assert "64" in answers[64]["details"]
        assert local_state(fleet, "node-1")["held_permits"] == 64
    finally:
        proc.communicate("", timeout=30)


def test_permits_beyond_the_total_cap_are_refused_naming_the_cap(running_fleet: Fleet) -> None:
    fleet = running_fleet
    start_node(fleet, "node-1", LOCAL + "max_permits_per_caller = 3\nmax_permits_total = 4\n")
    first, answers = _holder(fleet, WORKLOAD, 4)
    second = None
    try:
        assert [a["code"] for a in answers] == ["OK", "OK", "OK", "RESOURCE_EXHAUSTED"]
        assert "[local].max_permits_per_caller" in answers[3]["details"]
        second, more = _holder(fleet, WORKLOAD, 2, uid=OTHER_UID)
        assert [a["code"] for a in more] == ["OK", "RESOURCE_EXHAUSTED"]
        assert "[local].max_permits_total" in more[1]["details"]
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.communicate("", timeout=30)


def test_an_unwatched_permit_is_released_when_its_holder_is_killed(node: Fleet) -> None:
    fleet = node
    proc, answers = _holder(fleet, WORKLOAD, 3)
    assert all(a["response"]["granted"] for a in answers), answers
    assert local_state(fleet, "node-1")["held_permits"] == 3
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    wait_until(
        "the dead workload's permits are released",
        lambda: local_state(fleet, "node-1")["held_permits"] == 0,
        timeout_s=10,
    )


def test_edgectl_run_beside_another_users_dev_fleet_ignores_it(node: Fleet) -> None:
    """Defect: a workload user running edgectl in a directory holding root's dev fleet
    (.edge-dev, 0700) got a PermissionError traceback instead of an answer."""
    fleet = node
    other = fleet.root / "someone-elses-project"
    dev = other / ".edge-dev"
    dev.mkdir(parents=True)
    (dev / "context.json").write_text("{}")
    dev.chmod(0o700)
    other.chmod(0o755)
    done = edgectl_as(fleet, "node-1", WORKLOAD, "permit", "check", "move_arm", cwd=other)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 4), (done.stdout, done.stderr)
    assert "move_arm on" in done.stdout
