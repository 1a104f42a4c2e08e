"""Benchmark the replicated journal with real hub and agent processes.

    .venv/bin/python bench/replication.py [--appends 2000] [--writers 16] [--seconds 10]
        [--behind 100000] [--journal 1000000] [--trials 10]  (and harness.py's options)

Prints:
  - commit latency (median, p99, max) of one writer appending one entry at a time on the
    leader's Unix socket, with 2 sync replicas (min_sync_replicas = 2, 3 nodes);
  - committed appends per second with --writers concurrent writers (same group), unary
    Append and AppendStream;
  - replica catch-up rate: a new replica pulling a leader journal --behind entries ahead,
    from its first pulled entry to the last (its status polled every 20 ms);
  - divergence detection time for journals of --journal entries: the bisection a replica
    runs over EntryHash calls (real mTLS on loopback, SQLite files on both sides), in one
    process, --trials times at random divergence points.
A phase is skipped when its option is 0. No floor: the journal store alone is measured in
docs/benchmarks.md's notes.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import harness
from harness import QUICK_RECONNECT, Agent, BenchError, Hub, Run, at_least, progress

from agent.assemble import build_local, build_node
from agent.config import AgentConfig, AgentSection
from agent.journal.divergence import find_divergence
from agent.journal.peer import peer_channel
from agent.journal.store import GENESIS, JournalStore, Position, make_entry
from agent.pki import credentials
from agent.state_db import AGENT_DB, AgentStateDB
from edgecommon import pki
from edgecommon.clock import SystemClock
from edgecommon.identity import Identity, Kind
from edgecommon.pb import replication_pb2, replication_pb2_grpc

LEASE = "[lease]\nttl_s = 2.0\nrenew_interval_s = 0.5\nrenew_deadline_s = 0.5\nmargin_s = 0.3\n"
NODES = ("node-a", "node-b", "node-c")
GROUP = "site-a"
SMOKE = {
    "appends": 5,
    "writers": 2,
    "seconds": 0.5,
    "behind": 200,
    "journal": 1000,
    "trials": 2,
    "timeout": 60.0,
}


async def start_group(run: Run, min_sync: int) -> tuple[Hub, dict[str, Agent], str]:
    """A hub and three agents; once the quorum is met with two sync replicas, the leader."""
    hub = run.hub(
        "hub-group",
        sections=LEASE + f'[replication]\ngroup_min_sync = {{ {GROUP} = "{min_sync}" }}\n',
    )
    await hub.start_with_operator()
    agents = {node: await Agent.enroll(hub, node, GROUP, QUICK_RECONNECT) for node in NODES}
    for agent in agents.values():
        await agent.wait_connected()

    async def met() -> tuple[str | None, str]:
        q = await hub.operator.quorum(GROUP)
        done = q.met and len(q.sync_set) >= 2
        return (q.leader if done else None), f"met {q.met}, sync set {list(q.sync_set)}"

    leader = await harness.wait_until(met, run.args.timeout, "quorum met", period_s=0.05)
    return hub, agents, leader


@dataclasses.dataclass
class Writers:
    """Appends on the leader's Unix socket."""

    run: Run
    socket: Path

    async def ready(self, stub: replication_pb2_grpc.JournalLocalStub) -> None:
        """Until the leader confirms its sync replicas (joining members become sync)."""

        async def check() -> tuple[bool | None, str]:
            try:
                request = replication_pb2.AppendRequest(key="warm", value=b"up")
                await stub.Append(request, timeout=5)
            except grpc.aio.AioRpcError as err:
                return None, err.code().name
            return True, "accepted"

        await harness.wait_until(check, self.run.args.timeout, "the leader accepts an append")

    async def one_writer(self, appends: int) -> list[float]:
        async with grpc.aio.insecure_channel(f"unix:{self.socket}") as channel:
            stub = replication_pb2_grpc.JournalLocalStub(channel)
            await self.ready(stub)
            out = []
            for i in range(appends):
                t = time.perf_counter()
                r = await stub.Append(
                    replication_pb2.AppendRequest(key="bench", value=b"x" * 100 + str(i).encode()),
                    timeout=10,
                )
                out.append(time.perf_counter() - t)
                if len(r.confirmed_by) != 2:
                    raise BenchError(f"an append was confirmed by {list(r.confirmed_by)}")
            return out

    async def many(self, writers: int, seconds: float, stream: bool) -> tuple[float, list[float]]:
        """Committed appends per second and their latencies; unary or one stream each."""
        async with grpc.aio.insecure_channel(f"unix:{self.socket}") as channel:
            stub = replication_pb2_grpc.JournalLocalStub(channel)
            await self.ready(stub)
            latencies: list[float] = []
            stop = time.perf_counter() + seconds

            async def unary(w: int) -> None:
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    request = replication_pb2.AppendRequest(key=f"w{w}", value=b"y" * 100)
                    await stub.Append(request, timeout=10)
                    latencies.append(time.perf_counter() - t)

            async def streamed(w: int) -> None:
                call = stub.AppendStream()
                try:
                    i = 0
                    while time.perf_counter() < stop:
                        i += 1
                        t = time.perf_counter()
                        request = replication_pb2.AppendRequest(
                            key=f"s{w}", value=b"z" * 100, request_id=i
                        )
                        await call.write(request)
                        result = await call.read()
                        if result.error:
                            raise BenchError(result.error)
                        latencies.append(time.perf_counter() - t)
                    await call.done_writing()
                finally:
                    call.cancel()

            start = time.perf_counter()
            await asyncio.gather(*((streamed if stream else unary)(w) for w in range(writers)))
            elapsed = time.perf_counter() - start
        return len(latencies) / elapsed, latencies


async def prefill(path: Path, count: int) -> None:
    store = JournalStore(path, time.time)
    await store.open()
    last, batch = GENESIS, []
    try:
        for i in range(count):
            e = make_entry(last, 1, "k", i.to_bytes(8, "big"), 0.0)
            batch.append(e)
            last = Position(e.index, e.epoch, e.hash)
            if len(batch) == 10_000:
                await store.append_replicated(batch)
                batch = []
        await store.append_replicated(batch)
    finally:
        await store.close()


async def catch_up(run: Run, behind: int) -> tuple[int, float]:
    """(entries, seconds) a new replica took to pull a leader journal `behind` entries ahead."""
    hub = run.hub("hub-catch-up", sections=LEASE)
    agents: list[Agent] = []
    try:
        await hub.start_with_operator()
        leader = await Agent.enroll(hub, "node-a", GROUP, QUICK_RECONNECT)
        agents.append(leader)
        await leader.wait_connected()
        await leader.stop()
        await prefill(leader.state_dir / "journal.db", behind)
        await leader.start()
        await leader.wait_connected()

        async def leads() -> tuple[bool | None, str]:
            current = (await hub.operator.quorum(GROUP)).leader
            return (True if current == "node-a" else None), f"leader {current or 'none'}"

        await harness.wait_until(leads, run.args.timeout, "node-a leads", period_s=0.05)
        replica = await Agent.enroll(hub, "node-b", GROUP, QUICK_RECONNECT)
        agents.append(replica)
        return await watch_catch_up(run, replica, behind)
    finally:
        for agent in agents:
            await agent.stop()
        await hub.close()


async def watch_catch_up(run: Run, replica: Agent, behind: int) -> tuple[int, float]:
    """Poll the replica's status every 20 ms from its first pulled entry to the last."""
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + max(run.args.timeout, 600.0)
    while time.monotonic() < deadline:
        last = 0
        if replica.socket.exists():
            async with grpc.aio.insecure_channel(f"unix:{replica.socket}") as channel:
                stub = replication_pb2_grpc.JournalLocalStub(channel)
                with_status = stub.ReplicaStatus(replication_pb2.ReplicaStatusRequest(), timeout=5)
                try:
                    last = (await with_status).last_index
                except grpc.aio.AioRpcError:
                    last = 0
        now = time.perf_counter()
        if last and first is None:
            first = now, last
        if last >= behind and first is not None:
            return behind - first[1], now - first[0]
        await asyncio.sleep(0.02)
    raise BenchError("the replica did not catch up in time")


@contextlib.asynccontextmanager
async def leader_peer(
    state_dir: Path, node: harness.NodeCert, journal: JournalStore, rng: random.Random
) -> AsyncIterator[str]:
    """`node` enrolled in `state_dir`, over `journal`, built by the product's assembly
    (agent.assemble); of its parts only the Peer server runs (it answers EntryHash to any
    member of its group, leading or not). Yields the address the journal reports."""
    paths = credentials.CredentialPaths.under(state_dir)
    credentials.save(paths, node.key, pki.pem(node.cert), pki.pem(node.ca_cert))
    clock = SystemClock()
    config = AgentConfig(agent=AgentSection(state_dir=state_dir))
    state = AgentStateDB(state_dir / AGENT_DB)
    await state.open()
    try:
        local = await build_local(config, clock, state, journal)
        creds = local.enrolled.credentials()
        if creds is None:
            raise BenchError(f"no node credentials in {state_dir}")
        parts = build_node(config, clock, rng, local, journal, creds)
        await parts.peer_server.start()
        try:
            yield parts.replication.peer_address
        finally:
            await parts.peer_server.stop(None)
    finally:
        await state.close()


async def divergence(run: Run, size: int) -> tuple[list[float], int]:
    """Two journals of `size` entries that part at a random index; bisect over real mTLS,
    --trials times (same pair: the bisection's cost hardly depends on where they part).
    Returns the times and the most EntryHash round trips one bisection took."""
    root = run.root / "divergence"
    root.mkdir()
    rng = random.Random(7)
    ca = pki.create_ca("edge", dt.datetime.now(dt.UTC), dt.timedelta(days=1))
    leader_node = harness.issue_node(ca, Identity(Kind.NODE, "n1", "g"), "edge", 1)
    replica_node = harness.issue_node(ca, Identity(Kind.NODE, "n2", "g"), "edge", 1)
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
    leader, replica = JournalStore(leader_db, time.time), JournalStore(replica_db, time.time)
    for opened in (leader, replica):
        await opened.open()
    times, probes = [], []
    try:
        async with (
            leader_peer(root / "leader", leader_node, leader, rng) as address,
            peer_channel(replica_node.node_credentials(), address, "n1") as stub,
        ):
            await stub.EntryHash(replication_pb2.EntryHashRequest(index=0), timeout=5)

            async def theirs(i: int) -> bytes | None:
                r = await stub.EntryHash(replication_pb2.EntryHashRequest(index=i), timeout=5)
                return r.hash if r.found else None

            for _ in range(run.args.trials):
                t = time.perf_counter()
                head = await stub.EntryHash(replication_pb2.EntryHashRequest(index=0), timeout=5)
                verdict = await find_divergence(
                    replica.last.index, head.last_index, replica.hash_at, theirs
                )
                times.append(time.perf_counter() - t)
                probes.append(verdict.probes)
                if verdict.diverged_at != split + 1:
                    raise BenchError(f"bisection found {verdict.diverged_at}, not {split + 1}")
    finally:
        for opened in (leader, replica):
            await opened.close()
    return times, max(probes)


async def scenario(run: Run) -> None:
    args = run.args
    section = run.report.section("replicated journal, group of 3, min_sync_replicas = 2")
    if args.appends or args.writers:
        progress("commit latency and throughput")
        hub, agents, leader = await start_group(run, 2)
        try:
            writers = Writers(run, agents[leader].socket)
            if args.appends:
                latencies = await writers.one_writer(args.appends)
                section.add("commit latency, 1 writer", "ms", harness.summarize(latencies, 1e3))
            for stream, how in ((False, "unary Append"), (True, "AppendStream")):
                if not args.writers:
                    continue
                rate, latencies = await writers.many(args.writers, args.seconds, stream)
                name = f"{args.writers} writers ({how})"
                section.add(f"{name}: committed appends", "/s", harness.one(rate))
                section.add(f"{name}: latency", "ms", harness.summarize(latencies, 1e3))
        finally:
            for agent in agents.values():
                await agent.stop()
            await hub.close()
    if args.behind:
        progress("catch-up")
        entries, seconds = await catch_up(run, args.behind)
        rate = entries / seconds if seconds else None
        section.add(f"catch-up from {args.behind} behind", "entries/s", harness.one(rate))
        section.notes.append(f"catch-up: {entries} entries pulled in {seconds:.2f} s")
    if args.journal:
        progress("divergence detection")
        times, probes = await divergence(run, args.journal)
        figure = f"divergence detection, {args.journal} entries"
        section.add(figure, "ms", harness.summarize(times, 1e3))
        section.notes.append(f"divergence: at most {probes} EntryHash round trips")
    run.report.print_section(section)


def parser() -> argparse.ArgumentParser:
    p = harness.options(__doc__ or "")
    p.add_argument("--appends", type=at_least(0), default=2000)
    p.add_argument("--writers", type=at_least(0), default=16)
    p.add_argument("--seconds", type=at_least(0.1, float), default=10.0)
    p.add_argument("--behind", type=at_least(0), default=100_000)
    p.add_argument("--journal", type=at_least(0), default=1_000_000)
    p.add_argument("--trials", type=at_least(1), default=10)
    return p


if __name__ == "__main__":
    sys.exit(harness.main(parser(), SMOKE, scenario))
