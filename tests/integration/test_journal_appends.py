"""Operator appends through the hub (`edgectl journal append --group`) with real processes:
the hub forwards them to the group's leader on one pooled mTLS channel
(hub/journal/leader_channels.py), follows a leader change, survives a CA rollover and closes the
channel when it stops."""

from edgecommon import pki
from tests.integration.test_cert_lifecycle import FAST_RENEWAL, pki_dir
from tests.integration.test_replication import (
    FAST_LEASE,
    FAST_REPLICATION,
    NODES,
    _new_leader,
    quorum,
    start_group,
)
from tests.procs import Fleet, Result, free_port, wait_until
from tests.tcpproxy import TcpProxy


def hub_append(fleet: Fleet, value: str, group: str = "site-a") -> Result:
    return fleet.edgectl("--output", "json", "journal", "append", "k", value, "--group", group)


def hub_lines(fleet: Fleet, words: str) -> list[str]:
    assert fleet.hub is not None
    return [line for line in fleet.hub.output().splitlines() if words in line]


def test_operator_appends_through_the_hub_share_one_connection_to_the_leader(
    fleet: Fleet,
) -> None:
    """The leader's Peer service is reached only through a proxy that counts connections;
    the node is alone in its group, so every connection there is the hub's."""
    fleet.start_hub(FAST_LEASE + FAST_REPLICATION)
    fleet.bootstrap_operator()
    peer_port = free_port()
    proxy = TcpProxy("127.0.0.1", peer_port).start()
    try:
        fleet.start_agent(
            "node-a",
            fleet.token("node-a"),
            extra=f'[replication]\nlisten = "127.0.0.1:{peer_port}"\n'
            f'advertise_address = "{proxy.address}"\n',
        )
        fleet.wait_connected("node-a")
        first = wait_until(
            "an append through the hub", lambda: (r := hub_append(fleet, "0")).code == 0 and r
        )
        assert first.json["leader"] == "node-a"
        connections = proxy.accepted
        assert connections >= 1
        for i in range(1, 8):
            done = hub_append(fleet, str(i))
            assert done.code == 0, done.stderr
            assert done.json["index"] == first.json["index"] + i
        assert proxy.accepted == connections  # dialling per append opened 7 more
        assert len(hub_lines(fleet, "dialled journal leader node-a of group site-a")) == connections
        # SIGTERM: the hub closes the channel (after its server stopped) and exits cleanly.
        assert fleet.hub is not None
        assert fleet.hub.stop() == 0
        closed = hub_lines(fleet, "closing the channel to journal leader node-a")
        assert closed[-1].endswith("the hub is shutting down")
        assert hub_lines(fleet, "hub stopped")
    finally:
        proxy.stop()


def test_after_a_leader_change_the_next_append_goes_to_the_new_leader(fleet: Fleet) -> None:
    start_group(fleet)
    q = quorum(fleet)
    old, sync = q["leader"], q["sync_set"][0]
    before = hub_append(fleet, "before")
    assert before.code == 0, before.stderr
    assert before.json["leader"] == old
    moved = fleet.edgectl("leader", "resign", "--group", "site-a", "--to", sync)
    assert moved.code == 0, moved.stderr
    assert _new_leader(fleet, old) == sync
    after = wait_until(
        "an append through the hub on the new leader",
        lambda: (r := hub_append(fleet, "after")).code == 0 and r,
    )
    assert after.json["leader"] == sync
    assert after.json["index"] > before.json["index"]
    replaced = hub_lines(fleet, f"closing the channel to journal leader {old} of group site-a")
    assert replaced, fleet.hub.output() if fleet.hub else ""
    assert replaced[0].endswith(f"the leader is now {sync}")
    assert hub_lines(fleet, f"dialled journal leader {sync} of group site-a")


def test_appends_through_the_hub_keep_working_across_a_ca_rollover(fleet: Fleet) -> None:
    """After `ca retire-old` the hub's certificate is re-issued by the new CA and the
    leader trusts only that one: a channel kept from before would be refused on every
    call ("client certificate is not from this fleet's CA")."""
    start_group(fleet, agent_extra=FAST_RENEWAL)
    leader = quorum(fleet)["leader"]
    assert hub_append(fleet, "before").code == 0
    rotated = fleet.edgectl("--output", "json", "ca", "rotate", "--force")
    assert rotated.code == 0, rotated.stderr
    new_ca = rotated.json["cas"][1]["fingerprint"]

    def all_on_the_new_ca() -> bool:
        report = fleet.edgectl("--output", "json", "ca", "status").json
        new = next(c for c in report["cas"] if c["fingerprint"] == new_ca)
        return set(new["node_ids"]) == set(NODES)

    wait_until("every node on the new CA", all_on_the_new_ca)
    during = hub_append(fleet, "during the rollover")
    assert during.code == 0, during.stderr
    assert fleet.edgectl("cert", "rotate", "--operator").code == 0
    retired = fleet.edgectl("--output", "json", "ca", "retire-old")
    assert retired.code == 0, retired.stderr
    bundle = pki_dir(fleet, leader) / "ca.crt"
    wait_until(
        f"{leader} trusts only the new CA",
        lambda: [pki.fingerprint(c) for c in pki.load_certificates(bundle)] == [new_ca],
    )
    after = hub_append(fleet, "after the rollover")
    assert after.code == 0, after.stderr
    assert after.json["leader"] == leader
    changed = hub_lines(fleet, f"closing the channel to journal leader {leader}")
    # Replaced twice: at the first append after `ca rotate`, and after `ca retire-old`.
    assert [line.endswith("the hub's credentials changed") for line in changed] == [True, True]
