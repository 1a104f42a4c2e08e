"""The replicated journal with real processes: append, replicate, sync commit, quorum."""

import pytest

from tests.procs import Fleet, wait_until

FAST_LEASE = (
    "[lease]\nttl_s = 2.0\nrenew_interval_s = 0.5\nrenew_deadline_s = 0.5\nmargin_s = 0.3\n"
)
FAST_REPLICATION = "[replication]\nreplica_timeout_s = 1.5\n"
NODES = ("node-a", "node-b", "node-c")


def quorum(fleet: Fleet, group: str = "site-a") -> dict:
    result = fleet.edgectl("--output", "json", "quorum", "status", "--group", group)
    assert result.code == 0, result.stderr
    return result.json


def append(fleet: Fleet, node: str, key: str, value: str, *extra: str):  # type: ignore[no-untyped-def]
    return fleet.edgectl(
        "--output",
        "json",
        "journal",
        "append",
        key,
        value,
        "--socket",
        str(fleet.socket(node)),
        *extra,
    )


def read(fleet: Fleet, node: str, *extra: str) -> dict:
    result = fleet.edgectl(
        "--output",
        "json",
        "journal",
        "read",
        "--limit",
        "1000",
        "--socket",
        str(fleet.socket(node)),
        *extra,
    )
    assert result.code == 0, result.stderr
    return result.json


def replica_status(fleet: Fleet, node: str) -> dict | None:
    result = fleet.edgectl(
        "--output", "json", "replica", "status", "--socket", str(fleet.socket(node))
    )
    return result.json if result.code == 0 else None


def start_group(fleet: Fleet, nodes: tuple[str, ...] = NODES, agent_extra: str = "") -> None:
    fleet.start_hub(FAST_LEASE + FAST_REPLICATION)
    fleet.bootstrap_operator()
    for node in nodes:
        fleet.start_agent(node, fleet.token(node), extra=agent_extra)
    for node in nodes:
        fleet.wait_connected(node)
    wait_until("quorum met", lambda: quorum(fleet)["met"] and quorum(fleet)["sync_set"])


@pytest.fixture
def group(fleet: Fleet) -> Fleet:
    start_group(fleet)
    return fleet


def test_append_on_leader_replicates_and_replicas_refuse(group: Fleet) -> None:
    fleet = group
    q = quorum(fleet)
    leader = q["leader"]
    replicas = [n for n in NODES if n != leader]
    done = append(fleet, leader, "plan/step", "one")
    assert done.code == 0, done.stderr
    assert done.json["committed"]
    assert done.json["index"] == 1
    assert done.json["confirmed_by"] == q["sync_set"]
    refused = append(fleet, replicas[0], "plan/step", "two")
    assert refused.code == 1
    assert "not_leader" in refused.stderr
    assert leader in refused.stderr
    for node in NODES:
        wait_until(f"{node} has entry 1", lambda n=node: read(fleet, n)["last_index"] == 1)
        entry = read(fleet, node)["entries"][0]
        assert entry["key"] == "plan/step"
        assert entry["value"] == "one"
        assert entry["hash"] == done.json["hash"]
    via_hub = fleet.edgectl(
        "--output", "json", "journal", "append", "plan/step", "three", "--group", "site-a"
    )
    assert via_hub.code == 0, via_hub.stderr
    assert via_hub.json["index"] == 2
    assert [e["value"] for e in read(fleet, leader, "--key", "plan/step")["entries"]] == [
        "one",
        "three",
    ]
