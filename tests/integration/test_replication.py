"""The replicated journal with real processes: append, replicate, sync commit, quorum."""

import asyncio
import base64
import json
import signal
from pathlib import Path

import grpc
import pytest

from edgecommon import grpcopts
from edgecommon.pb import link_pb2, link_pb2_grpc, replication_pb2, replication_pb2_grpc
from edgecommon.peerwire import peer_options
from tests.procs import Fleet, Result, free_port, wait_until
from tests.tcpproxy import TcpProxy

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
    big = append(fleet, leader, "plan/step", "x" * 70_000)
    assert big.code == 2
    assert "max_payload_bytes" in big.stderr
    empty = append(fleet, leader, "", "v")
    assert empty.code == 2
    bad_from = fleet.edgectl(
        "journal", "read", "--from", "0", "--socket", str(fleet.socket(leader))
    )
    assert bad_from.code == 2
    assert read(fleet, leader)["last_index"] == 1
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


async def _write_until_killed(
    fleet: Fleet, leader: str, kill_after: int, limit: int
) -> list[tuple[int, bytes, str]]:
    """Append as fast as acknowledgements come; SIGKILL the leader after `kill_after` of them
    while the stream goes on. Returns every acknowledged (index, hash, value)."""
    acked: list[tuple[int, bytes, str]] = []
    async with grpc.aio.insecure_channel(f"unix:{fleet.socket(leader)}") as channel:
        stub = replication_pb2_grpc.JournalLocalStub(channel)

        async def writer(w: int) -> None:
            for i in range(limit):
                value = f"w{w}-{i}"
                try:
                    r = await stub.Append(
                        replication_pb2.AppendRequest(key="ckpt", value=value.encode()), timeout=5
                    )
                except grpc.aio.AioRpcError:
                    return
                acked.append((r.index, r.hash, value))
                if len(acked) == kill_after:
                    fleet.agents[leader].kill()

        await asyncio.gather(*(writer(w) for w in range(4)))
    return acked


def _new_leader(fleet: Fleet, old: str) -> str:
    def led() -> str | None:
        q = quorum(fleet)
        lead = q["leader"]
        if not lead or lead == old:
            return None
        status = replica_status(fleet, lead)
        return lead if status and status["role"] == "leader" else None

    return wait_until("a new journal leader", led)


def test_inv_repl_01_sigkill_of_the_leader_mid_stream_loses_no_acknowledged_entry(
    group: Fleet,
) -> None:
    fleet = group
    for round_no in range(2):
        before = quorum(fleet)
        old = before["leader"]
        acked = asyncio.run(_write_until_killed(fleet, old, 40, 200))
        assert len(acked) >= 40
        new = _new_leader(fleet, old)
        assert new in before["sync_set"]
        entries = read_all(fleet, new)
        by_index = {e["index"]: e for e in entries}
        for index, digest, value in acked:
            assert index in by_index, f"round {round_no}: acknowledged entry {index} lost"
            assert by_index[index]["hash"] == digest.hex()
            assert by_index[index]["value"] == value
        assert [e["index"] for e in entries] == list(range(1, len(entries) + 1))
        wait_until("quorum met again", lambda: quorum(fleet)["met"])
        after = append(fleet, new, "after", f"round {round_no}")
        assert after.code == 0, after.stderr
        rejoin(fleet, old, new)


def rejoin(fleet: Fleet, old: str, leader: str) -> None:
    """Restart the killed leader. It may hold entries it wrote that were never acknowledged:
    it is then diverged and waits for an operator (auto_rewind is off), as in the runbook."""
    fleet.agents[old].start()
    fleet.wait_connected(old)
    target = read(fleet, leader)["last_index"]
    state = wait_until(
        f"{old} caught up or diverged",
        lambda: (
            (s := replica_status(fleet, old))
            and (s["diverged_at"] or s["last_index"] >= target)
            and s
        ),
    )
    if state["diverged_at"]:
        done = fleet.edgectl(
            "replica", "recover", "--strategy", "rewind", "--socket", str(fleet.socket(old))
        )
        assert done.code == 0, done.stderr
    wait_until(f"{old} caught up", lambda: read(fleet, old)["last_index"] >= target)


def read_all(fleet: Fleet, node: str) -> list[dict]:
    out: list[dict] = []
    while True:
        page = read(fleet, node, "--from", str(len(out) + 1))["entries"]
        out.extend(page)
        if len(page) < 1000:
            return out


def test_losing_a_sync_replica_in_strict_mode_blocks_appends_and_restore_brings_quorum_back(
    group: Fleet,
) -> None:
    fleet = group
    q = quorum(fleet)
    leader, sync = q["leader"], q["sync_set"][0]
    spare = next(n for n in NODES if n not in (leader, sync))
    assert append(fleet, leader, "k", "before").code == 0
    fleet.agents[sync].kill()
    refused = wait_until(
        "appends refused",
        lambda: (
            (r := append(fleet, leader, "k", "refused")).code != 0
            and "quorum lost" in r.stderr
            and r
        ),
    )
    assert sync in refused.stderr
    last = read(fleet, leader)["last_index"]
    again = append(fleet, leader, "k", "refused again")
    assert again.code == 1
    assert "quorum lost" in again.stderr
    assert read(fleet, leader)["last_index"] == last  # a refused append stores nothing
    status = wait_until("quorum not met", lambda: (s := quorum(fleet)) and not s["met"] and s)
    assert sync in status["reason"]
    dry = fleet.edgectl("--output", "json", "quorum", "restore", "--group", "site-a", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert dry.json["added"] == [spare]
    assert dry.json["removed"] == [sync]
    assert quorum(fleet)["sync_set"] == [sync]  # a dry run changes nothing
    done = fleet.edgectl("--output", "json", "quorum", "restore", "--group", "site-a")
    assert done.code == 0, done.stderr
    assert done.json["added"] == [spare]
    ok = wait_until(
        "appends resume", lambda: (r := append(fleet, leader, "k", "after")).code == 0 and r
    )
    assert ok.json["confirmed_by"] == [spare]
    wait_until("quorum met", lambda: quorum(fleet)["met"])
    nothing = fleet.edgectl("--output", "json", "quorum", "restore", "--group", "site-a")
    assert nothing.code == 0
    assert "nothing to restore" in nothing.json["restore"]


def test_a_leader_whose_lease_lapsed_while_its_sync_replica_was_down_takes_it_back(
    group: Fleet,
) -> None:
    """Strict mode, the only sync replica dead, the leader frozen past its lease: nobody else
    holds every committed entry, but the leader does, so it must lead again (a later epoch)
    rather than leave the group leaderless until the dead replica returns."""
    fleet = group
    q = quorum(fleet)
    leader, sync = q["leader"], q["sync_set"][0]
    assert append(fleet, leader, "k", "before").code == 0
    fleet.agents[sync].kill()
    fleet.agents[leader].signal(signal.SIGSTOP)
    try:
        wait_until("the lease lapsed", lambda: quorum(fleet)["leader"] is None)
    finally:
        fleet.agents[leader].signal(signal.SIGCONT)
    back = wait_until(
        f"{leader} leads again", lambda: (s := quorum(fleet))["leader"] == leader and s
    )
    assert back["epoch"] > q["epoch"]
    refused = wait_until(
        "appends refused for the lost replica, not for want of a leader",
        lambda: (
            (r := append(fleet, leader, "k", "refused")).code != 0
            and "quorum lost" in r.stderr
            and r
        ),
    )
    assert sync in refused.stderr
    done = fleet.edgectl("--output", "json", "quorum", "restore", "--group", "site-a")
    assert done.code == 0, done.stderr
    wait_until("appends resume", lambda: append(fleet, leader, "k", "after").code == 0)


def test_a_cut_off_old_leader_that_appended_is_found_diverged_and_rewound(fleet: Fleet) -> None:
    fleet.start_hub(FAST_LEASE + FAST_REPLICATION)
    fleet.bootstrap_operator()
    host, port = fleet.listen.rsplit(":", 1)
    hub_proxy = TcpProxy(host, int(port)).start()
    peer_port = free_port()
    peer_proxy = TcpProxy("127.0.0.1", peer_port).start()
    try:
        config = fleet.write_agent_config(
            "node-a",
            fleet.token("node-a"),
            extra=f'[replication]\nlisten = "127.0.0.1:{peer_port}"\n'
            f'advertise_address = "{peer_proxy.address}"\n',
        )
        config.write_text(
            config.read_text().replace(f'hub = "{fleet.listen}"', f'hub = "{hub_proxy.address}"')
        )
        fleet.start_agent("node-a", config=config)
        fleet.wait_connected("node-a")
        wait_until("node-a leads", lambda: quorum(fleet)["leader"] == "node-a")
        for node in NODES[1:]:
            fleet.start_agent(node, fleet.token(node))
            fleet.wait_connected(node)
        wait_until("quorum met", lambda: quorum(fleet)["met"] and quorum(fleet)["sync_set"])
        for i in range(3):
            assert append(fleet, "node-a", "k", f"shared {i}").code == 0
        hub_proxy.cut()
        peer_proxy.cut()
        lost = append(fleet, "node-a", "k", "only on the old leader")
        assert lost.code == 1  # durable on node-a, never acknowledged
        assert "not acknowledged" in lost.stderr or "quorum lost" in lost.stderr
        assert read(fleet, "node-a")["last_index"] == 4
        new = _new_leader(fleet, "node-a")
        wait_until("appends on the new leader", lambda: append(fleet, new, "k", "new").code == 0)
        hub_proxy.heal()
        peer_proxy.heal()
        found = wait_until(
            "node-a diverged",
            lambda: (s := replica_status(fleet, "node-a")) and s["diverged_at"] and s,
        )
        assert found["diverged_at"] == 4
        assert found["role"] == "diverged"
        div = wait_until(
            "the hub reports it",
            lambda: (
                (r := fleet.edgectl("--output", "json", "replica", "divergence")).code == 0
                and r.json["diverged"]
                and r.json
            ),
        )
        assert div["diverged"][0]["node_id"] == "node-a"
        assert div["diverged"][0]["diverged_at"] == 4
        sock = str(fleet.socket("node-a"))
        bogus = fleet.edgectl("replica", "recover", "--strategy", "bogus", "--socket", sock)
        assert bogus.code == 2
        assert "unknown strategy" in bogus.stderr
        on_leader = fleet.edgectl(
            "replica", "recover", "--strategy", "rewind", "--socket", str(fleet.socket(new))
        )
        assert on_leader.code == 1
        assert "leads group" in on_leader.stderr
        assert replica_status(fleet, "node-a")["last_index"] == 4  # nothing changed
        done = fleet.edgectl(
            "--output", "json", "replica", "recover", "--strategy", "rewind", "--socket", sock
        )
        assert done.code == 0, done.stderr
        assert done.json["removed"] == 1
        lines = Path(done.json["forensics_file"]).read_text().splitlines()
        forensic = [json.loads(line) for line in lines]
        assert [(e["index"], e["key"]) for e in forensic] == [(4, "k")]
        assert base64.b64decode(forensic[0]["payload_b64"]) == b"only on the old leader"
        leader_hashes = [e["hash"] for e in read(fleet, new)["entries"]]
        wait_until(
            "node-a caught up",
            lambda: [e["hash"] for e in read(fleet, "node-a")["entries"]] == leader_hashes,
        )
        assert not replica_status(fleet, "node-a")["diverged_at"]
        resync = fleet.edgectl(
            "--output", "json", "replica", "recover", "--strategy", "resync", "--socket", sock
        )
        assert resync.code == 0, resync.stderr
        assert resync.json["last_index"] == len(leader_hashes)
        assert [e["hash"] for e in read(fleet, "node-a")["entries"]] == leader_hashes
    finally:
        hub_proxy.stop()
        peer_proxy.stop()


async def _stream(fleet: Fleet, node: str) -> list[replication_pb2.AppendResult]:
    async with grpc.aio.insecure_channel(f"unix:{fleet.socket(node)}") as channel:
        call = replication_pb2_grpc.JournalLocalStub(channel).AppendStream()
        for i, value in enumerate((b"a", b"x" * 70_000, b"c")):
            await call.write(replication_pb2.AppendRequest(key="s", value=value, request_id=i))
        await call.done_writing()
        return sorted([r async for r in call], key=lambda r: r.request_id)


def test_append_stream_answers_each_request_and_refusals_do_not_end_it(group: Fleet) -> None:
    fleet = group
    leader = quorum(fleet)["leader"]
    first, big, last = asyncio.run(_stream(fleet, leader))
    assert first.committed
    assert last.committed
    assert first.index < last.index
    assert not big.committed
    assert "max_payload_bytes" in big.error
    assert read(fleet, leader)["last_index"] == 2


def test_inv_repl_01_switchover_goes_only_to_a_sync_replica_and_loses_nothing(
    group: Fleet,
) -> None:
    fleet = group
    q = quorum(fleet)
    leader, sync = q["leader"], q["sync_set"][0]
    other = next(n for n in NODES if n not in (leader, sync))
    acked = []
    for i in range(5):
        done = append(fleet, leader, "k", f"v{i}")
        assert done.code == 0, done.stderr
        acked.append(done.json["hash"])
    refused = fleet.edgectl("leader", "resign", "--group", "site-a", "--to", other)
    assert refused.code == 1
    assert "not in the sync set" in refused.stderr
    plan = fleet.edgectl(
        "--output", "json", "leader", "resign", "--group", "site-a", "--to", sync, "--dry-run"
    )
    assert plan.code == 0, plan.stderr
    assert plan.json["at_risk"].startswith("nothing")
    moved = fleet.edgectl("--output", "json", "leader", "resign", "--group", "site-a", "--to", sync)
    assert moved.code == 0, moved.stderr
    assert moved.json["to"] == sync
    assert _new_leader(fleet, leader) == sync
    assert [e["hash"] for e in read(fleet, sync)["entries"]][:5] == acked
    wait_until("appends on the new leader", lambda: append(fleet, sync, "k", "after").code == 0)


# --- forged positions and acknowledgements (clients built here, with a node's real key) ---


def node_pki(fleet: Fleet, node: str) -> tuple[bytes, bytes, bytes]:
    """A node's real key, certificate and trust bundle, from its state directory."""
    d = fleet.agent_dir(node) / "state" / "pki"
    return (d / "node.key").read_bytes(), (d / "node.crt").read_bytes(), (d / "ca.crt").read_bytes()


def _credentials(fleet: Fleet, node: str) -> grpc.ChannelCredentials:
    key, cert, bundle = node_pki(fleet, node)
    return grpc.ssl_channel_credentials(bundle, key, cert)


async def _forge_acks(
    fleet: Fleet, forged: str, leader: str, address: str, stop: asyncio.Event
) -> int:
    """Answer the leader's long polls as `forged` (its real key and certificate over real
    mTLS), claiming to hold the leader's last entry, storing nothing. The last index and its
    hash come from EntryHash; entries the leader sends are dropped. Returns the claims made."""
    claims, token = 0, b""
    async with grpc.aio.secure_channel(
        address, _credentials(fleet, forged), options=peer_options(leader)
    ) as channel:
        stub = replication_pb2_grpc.PeerStub(channel)
        while not stop.is_set():
            last = (await stub.EntryHash(replication_pb2.EntryHashRequest(index=0))).last_index
            digest = (await stub.EntryHash(replication_pb2.EntryHashRequest(index=last))).hash
            answer = await stub.Pull(
                replication_pb2.PullRequest(
                    after_index=last, after_hash=digest, wait_s=0.2, stream_token=token
                ),
                timeout=5,
            )
            token = answer.stream_token or token  # a forger echoes what it is given, too
            claims += 1
            await asyncio.sleep(0.05)
    return claims


async def _append_while_forging(
    fleet: Fleet, forged: str, leader: str, address: str
) -> tuple[Result, int]:
    stop = asyncio.Event()
    forger = asyncio.create_task(_forge_acks(fleet, forged, leader, address, stop))
    try:
        await asyncio.sleep(1.0)  # the forger is heard from before the append
        result = await asyncio.to_thread(
            fleet.edgectl,
            "--output",
            "json",
            "journal",
            "append",
            "k",
            "forged",
            "--group",
            "site-a",
        )
    finally:
        stop.set()
    return result, await forger


def test_inv_repl_01_forged_ack_beyond_what_was_sent_is_not_counted(fleet: Fleet) -> None:
    start_group(fleet, agent_extra="[replication]\ncommit_timeout_s = 2.0\n")
    q = quorum(fleet)
    leader, sync = q["leader"], q["sync_set"][0]
    assert append(fleet, leader, "k", "before").code == 0
    address = replica_status(fleet, leader)["peer_address"]
    fleet.agents[sync].kill()
    wait_until(
        "appends refused",
        lambda: (
            (r := append(fleet, leader, "k", "refused")).code != 0 and "quorum lost" in r.stderr
        ),
    )
    result, claims = asyncio.run(_append_while_forging(fleet, sync, leader, address))
    assert claims > 1
    assert result.code == 1, result.stdout
    assert "not acknowledged as committed" in result.stderr
    assert sync in result.stderr
    # The real replica, back, confirms again (its own claims are what the leader sent it).
    fleet.agents[sync].start()
    fleet.wait_connected(sync)
    done = wait_until(
        "appends commit with the real replica",
        lambda: (r := append(fleet, leader, "k", "after")).code == 0 and r,
    )
    assert done.json["confirmed_by"] == [sync]


async def _forge_leader_heartbeats(
    fleet: Fleet, leader: str, report: link_pb2.JournalReport, seconds: float
) -> None:
    """Register as `leader` (its real key, on the hub's mTLS port) and send heartbeats
    carrying `report` for `seconds`."""
    async with grpc.aio.secure_channel(
        fleet.listen,
        _credentials(fleet, leader),
        options=grpcopts.client_options(private_connection=True),
    ) as channel:
        call = link_pb2_grpc.LinkStub(channel).Connect()
        await call.write(link_pb2.AgentMessage(register=link_pb2.Register(agent_version="forged")))
        first = await call.read()
        assert first.WhichOneof("body") == "registered"
        for seq in range(int(seconds / 0.1)):
            beat = link_pb2.Heartbeat(seq=seq + 1, agent_version="forged")
            beat.journal.CopyFrom(report)
            await call.write(link_pb2.AgentMessage(heartbeat=beat))
            await asyncio.sleep(0.1)
        await call.done_writing()
        call.cancel()


@pytest.mark.parametrize("lie", ["commit_beyond_its_own_journal", "journal_and_commit"])
def test_a_heartbeat_claiming_an_impossible_commit_index_is_refused_and_failover_works(
    fleet: Fleet, lie: str
) -> None:
    start_group(fleet)
    q = quorum(fleet)
    leader, epoch = q["leader"], q["epoch"]
    for i in range(3):
        assert append(fleet, leader, "k", f"v{i}").code == 0
    last = read(fleet, leader)["last_index"]
    huge = 2**62
    forged = link_pb2.JournalReport(
        role="leader",
        last_index=huge if lie == "journal_and_commit" else last,
        last_epoch=epoch,
        commit_index=huge,
        epoch=epoch,
        peer_address=replica_status(fleet, leader)["peer_address"],
    )
    fleet.agents[leader].signal(signal.SIGSTOP)  # it cannot take its session back meanwhile
    asyncio.run(_forge_leader_heartbeats(fleet, leader, forged, 1.5))
    fleet.agents[leader].kill()
    new = _new_leader(fleet, leader)
    assert new in q["sync_set"]
    after = quorum(fleet)
    assert after["commit_index"] < huge
    # The new leader's sync set forms once the hub's plan for it reaches the replica.
    wait_until(
        "appends commit after the failover",
        lambda: append(fleet, new, "k", "after failover").code == 0,
        20,
    )
    if lie == "commit_beyond_its_own_journal":
        # Refused, reported as a bad peer once (not once per heartbeat), and shown.
        lines = [line for line in fleet.hub.output().splitlines() if "bad peer" in line]
        assert len(lines) == 1, lines
        assert leader in lines[0]
        assert str(huge) in lines[0]
        div = fleet.edgectl("--output", "json", "replica", "divergence").json
        row = next(r for r in div["replicas"] if r["node_id"] == leader)
        assert "commit index" in row["refused_report"]
