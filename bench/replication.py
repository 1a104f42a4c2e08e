"""Benchmark the replicated journal with real hub and agent processes.

    .venv/bin/python bench/replication.py [--appends 2000] [--writers 16] [--seconds 10]
                                          [--behind 100000] [--journal 1000000] [--json]

Prints:
  - commit latency (median, p99, max) of one writer appending one entry at a time on the
    leader's Unix socket, with 2 sync replicas (min_sync_replicas = 2, 3 nodes);
  - committed appends per second with --writers concurrent writers (same group);
  - replica catch-up rate: a new replica pulling a leader journal --behind entries ahead,
    from its first pulled entry to the last (its status polled every 20 ms);
  - divergence detection time for journals of --journal entries: the bisection a replica
    runs over EntryHash calls (real mTLS on loopback, SQLite files on both sides), in one
    process, --trials times at random divergence points.
Loopback only; every process is stopped at the end. The machine's load average is printed
because the cores may be shared.
"""

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import ReplicationSection  # noqa: E402
from agent.credentials import NodeCredentials  # noqa: E402
from agent.divergence import find_divergence  # noqa: E402
from agent.journal import GENESIS, JournalStore, Position, make_entry  # noqa: E402
from agent.peer import peer_channel, start_peer_server  # noqa: E402
from agent.replication import Replication  # noqa: E402
from agent.revocations import RevokedSerials  # noqa: E402
from edgecommon import pki  # noqa: E402
from edgecommon.clock import SystemClock  # noqa: E402
from edgecommon.identity import Identity, Kind  # noqa: E402
from edgecommon.pb import link_pb2, replication_pb2, replication_pb2_grpc  # noqa: E402
from tests.procs import Fleet, fleet_fixture, wait_until  # noqa: E402

LEASE = "[lease]\nttl_s = 2.0\nrenew_interval_s = 0.5\nrenew_deadline_s = 0.5\nmargin_s = 0.3\n"
NODES = ("node-a", "node-b", "node-c")


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": statistics.median(ordered), "p99": p99, "max": ordered[-1], "n": len(ordered)}


def quorum(fleet: Fleet) -> dict:
    r = fleet.edgectl("--output", "json", "quorum", "status", "--group", "site-a")
    return r.json if r.code == 0 else {}


def start_group(fleet: Fleet, min_sync: int) -> str:
    fleet.start_hub(LEASE + f'[replication]\ngroup_min_sync = {{ site-a = "{min_sync}" }}\n')
    fleet.bootstrap_operator()
    for node in NODES:
        fleet.start_agent(node, fleet.token(node))
    for node in NODES:
        fleet.wait_connected(node)
    q = wait_until(
        "quorum met", lambda: (q := quorum(fleet)) and q["met"] and len(q["sync_set"]) >= 2 and q
    )
    return str(q["leader"])


async def ready(stub: replication_pb2_grpc.JournalLocalStub) -> None:
    """Until the leader confirms its sync replicas (joining members become sync)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await stub.Append(replication_pb2.AppendRequest(key="warm", value=b"up"), timeout=5)
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the leader never accepted an append")


async def one_writer(fleet: Fleet, leader: str, appends: int) -> list[float]:
    async with grpc.aio.insecure_channel(f"unix:{fleet.socket(leader)}") as channel:
        stub = replication_pb2_grpc.JournalLocalStub(channel)
        await ready(stub)
        out = []
        for i in range(appends):
            t = time.perf_counter()
            r = await stub.Append(
                replication_pb2.AppendRequest(key="bench", value=b"x" * 100 + str(i).encode()),
                timeout=10,
            )
            out.append(time.perf_counter() - t)
            assert len(r.confirmed_by) == 2, r
        return out


async def many_writers(fleet: Fleet, leader: str, writers: int, seconds: float) -> dict:
    async with grpc.aio.insecure_channel(f"unix:{fleet.socket(leader)}") as channel:
        stub = replication_pb2_grpc.JournalLocalStub(channel)
        await ready(stub)
        done = 0
        latencies: list[float] = []
        stop = time.perf_counter() + seconds

        async def writer(w: int) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                t = time.perf_counter()
                await stub.Append(
                    replication_pb2.AppendRequest(key=f"w{w}", value=b"y" * 100), timeout=10
                )
                latencies.append(time.perf_counter() - t)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - start
    return {"appends_per_s": done / elapsed, "latency": stats(latencies), "writers": writers}


async def many_stream_writers(fleet: Fleet, leader: str, writers: int, seconds: float) -> dict:
    """Like many_writers, each writer with its own AppendStream, one append in flight."""
    async with grpc.aio.insecure_channel(f"unix:{fleet.socket(leader)}") as channel:
        stub = replication_pb2_grpc.JournalLocalStub(channel)
        await ready(stub)
        done = 0
        latencies: list[float] = []
        stop = time.perf_counter() + seconds

        async def writer(w: int) -> None:
            nonlocal done
            call = stub.AppendStream()
            try:
                i = 0
                while time.perf_counter() < stop:
                    i += 1
                    t = time.perf_counter()
                    await call.write(
                        replication_pb2.AppendRequest(key=f"s{w}", value=b"z" * 100, request_id=i)
                    )
                    result = await call.read()
                    if result.error:
                        raise RuntimeError(result.error)
                    latencies.append(time.perf_counter() - t)
                    done += 1
                await call.done_writing()
            finally:
                call.cancel()

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - start
    return {"appends_per_s": done / elapsed, "latency": stats(latencies), "writers": writers}


async def prefill(path: Path, count: int, epoch: int = 1, seed: bytes = b"") -> None:
    store = JournalStore(path, time.time)
    await store.open()
    last, batch = GENESIS, []
    try:
        for i in range(count):
            e = make_entry(last, epoch, "k", seed + i.to_bytes(8, "big"), 0.0)
            batch.append(e)
            last = Position(e.index, e.epoch, e.hash)
            if len(batch) == 10_000:
                await store.append_replicated(batch)
                batch = []
        await store.append_replicated(batch)
    finally:
        await store.close()


def catch_up(fleet: Fleet, behind: int) -> dict:
    fleet.start_hub(LEASE)
    fleet.bootstrap_operator()
    fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    fleet.agents["node-a"].stop()
    asyncio.run(prefill(fleet.agent_dir("node-a") / "state" / "journal.db", behind))
    fleet.agents["node-a"].start()
    fleet.wait_connected("node-a")
    wait_until("node-a leads", lambda: quorum(fleet).get("leader") == "node-a")
    fleet.start_agent("node-b", fleet.token("node-b"))
    wait_until("node-b's socket", fleet.socket("node-b").exists)
    return asyncio.run(watch_catch_up(fleet.socket("node-b"), behind))


async def watch_catch_up(sock: Path, behind: int) -> dict:
    """Poll the replica's status every 20 ms from its first pulled entry to the last."""
    async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
        stub = replication_pb2_grpc.JournalLocalStub(channel)
        first_t = first_i = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                status = await stub.ReplicaStatus(replication_pb2.ReplicaStatusRequest(), timeout=5)
                last = status.last_index
            except grpc.aio.AioRpcError:
                last = 0
            now = time.perf_counter()
            if last and first_t is None:
                first_t, first_i = now, last
            if last >= behind and first_t is not None and first_i is not None:
                elapsed = now - first_t
                return {
                    "entries": behind - first_i,
                    "seconds": elapsed,
                    "entries_per_s": (behind - first_i) / elapsed if elapsed else float("inf"),
                }
            await asyncio.sleep(0.02)
    raise RuntimeError("the replica did not catch up within 600 s")


class Lead:
    epoch, leader = 1, "n1"

    def is_leader(self) -> bool:
        return True


def node_creds(ca: tuple, name: str) -> NodeCredentials:
    ca_key, ca_cert = ca
    key = pki.generate_key()
    now = dt.datetime.now(dt.UTC)
    identity = Identity(Kind.NODE, name, "g")
    cert = pki.issue_for_key(ca_key, ca_cert, key, identity, "edge", now, dt.timedelta(hours=1))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return NodeCredentials(identity, "edge", pem, cert, [ca_cert])


async def divergence(root: Path, size: int, trials: int) -> dict:
    """Two journals of `size` entries that part at a random index; bisect over real mTLS,
    `trials` times (same pair: the bisection's cost hardly depends on where they part)."""
    rng = random.Random(7)
    ca = pki.create_ca("edge", dt.datetime.now(dt.UTC), dt.timedelta(days=1))
    leader_creds, replica_creds = node_creds(ca, "n1"), node_creds(ca, "n2")
    leader_db, replica_db = root / "leader.db", root / "replica.db"
    await prefill(leader_db, size)
    shutil.copyfile(leader_db, replica_db)
    split = rng.randrange(size // 10, size - 10)
    for target, tag in ((leader_db, b"L"), (replica_db, b"R")):
        store = JournalStore(target, time.time)
        await store.open()
        await store.truncate_after(split)
        for i in range(3):
            await store.append("k", tag + i.to_bytes(8, "big"), 2)
        await store.close()
    leader = JournalStore(leader_db, time.time)
    replica = JournalStore(replica_db, time.time)
    await leader.open()
    await replica.open()
    rep = Replication(
        leader,
        ReplicationSection(),
        leader_creds.identity,
        Lead(),
        SystemClock(),
        RevokedSerials(),
        "",  # the address it would report to a hub: there is none
    )
    rep.set_plan(link_pb2.ReplicationPlan(group="g", leader="n1", epoch=1))
    server, port, _ = await start_peer_server(rep, leader_creds, SystemClock(), "127.0.0.1:0")
    times, probes = [], []
    try:
        async with peer_channel(replica_creds, f"127.0.0.1:{port}", "n1") as stub:
            await stub.EntryHash(replication_pb2.EntryHashRequest(index=0), timeout=5)

            async def theirs(i: int) -> bytes | None:
                r = await stub.EntryHash(replication_pb2.EntryHashRequest(index=i), timeout=5)
                return r.hash if r.found else None

            for _ in range(trials):
                t = time.perf_counter()
                head = await stub.EntryHash(replication_pb2.EntryHashRequest(index=0), timeout=5)
                verdict = await find_divergence(
                    replica.last.index, head.last_index, replica.hash_at, theirs
                )
                times.append(time.perf_counter() - t)
                probes.append(verdict.probes)
                assert verdict.diverged_at == split + 1, (verdict, split)
    finally:
        await server.stop(None)
        await leader.close()
        await replica.close()
    return {"time": stats(times), "probes_max": max(probes), "journal_entries": size}


def run(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {
        "cores": psutil.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    if args.appends or args.writers:
        for fleet in fleet_fixture():
            leader = start_group(fleet, 2)
            if args.appends:
                results["commit latency, 1 writer, 2 sync replicas"] = stats(
                    asyncio.run(one_writer(fleet, leader, args.appends))
                )
            if args.writers:
                results[f"{args.writers} writers (unary Append), 2 sync replicas"] = asyncio.run(
                    many_writers(fleet, leader, args.writers, args.seconds)
                )
                results[f"{args.writers} writers (AppendStream), 2 sync replicas"] = asyncio.run(
                    many_stream_writers(fleet, leader, args.writers, args.seconds)
                )
    if args.behind:
        for fleet in fleet_fixture():
            results[f"catch-up from {args.behind} behind"] = catch_up(fleet, args.behind)
    if args.journal:
        with tempfile.TemporaryDirectory(prefix="ae-div-", dir="/tmp") as root:
            results[f"divergence detection, {args.journal} entries"] = asyncio.run(
                divergence(Path(root), args.journal, args.trials)
            )
    results["load_average_at_end"] = os.getloadavg()
    return results


def ms(s: dict[str, float]) -> str:
    return f"{s['median'] * 1000:.2f} / {s['p99'] * 1000:.2f} / {s['max'] * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--behind", type=int, default=100_000)
    parser.add_argument("--journal", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"machine: {results['cores']} cores; load average at start "
        f"{'/'.join(f'{x:.2f}' for x in results['load_average_at_start'])}, at end "  # type: ignore[attr-defined]
        f"{'/'.join(f'{x:.2f}' for x in results['load_average_at_end'])}"  # type: ignore[attr-defined]
    )
    for name, value in results.items():
        if not isinstance(value, dict):
            continue
        if "median" in value:
            print(f"{name}: median / p99 / max {ms(value)} (n={value['n']})")
        elif "appends_per_s" in value:
            print(
                f"{name}: {value['appends_per_s']:.0f} committed appends/s; latency median / "
                f"p99 / max {ms(value['latency'])}"
            )
        elif "entries_per_s" in value:
            print(
                f"{name}: {value['entries_per_s']:.0f} entries/s "
                f"({value['entries']} entries in {value['seconds']:.2f} s)"
            )
        elif "probes_max" in value:
            print(
                f"{name}: median / p99 / max {ms(value['time'])} "
                f"(n={value['time']['n']}, at most {value['probes_max']} round trips)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
