"""What the request boundary and the local caller check cost, beside the bare floor.

    .venv/bin/python bench/boundary.py [--calls 2000] [--batches 50]  (and harness.py's options)

Prints (median, p99, max):
  - per message, in-process: decoding a heartbeat (AgentMessage) and a PermitRequest
    alone (the floor) and decoding plus the boundary's field check (--batches batches of
    1000, time per message);
  - a dry-run RequestPermit round trip on the agent's Unix socket (the local relay, the
    caller check and the boundary included) against bench/_floor.py's bare grpc.aio server
    on a Unix socket answering the same method with a constant answer (the floor), --calls
    sequential calls each, one client, both on this machine's loopback.
"""

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import harness
from harness import Agent, Run, at_least, progress

from edgecommon.boundary import decode
from edgecommon.pb import agent_pb2, agent_pb2_grpc, link_pb2

SMOKE = {"calls": 10, "batches": 2, "timeout": 60.0}
WARM_UP_CALLS = 100


def heartbeat() -> bytes:
    beat = link_pb2.Heartbeat(
        seq=5, agent_version="0.1.0", node_switch_source="file:/etc/autonomyops/autonomy.yaml"
    )
    beat.local_stop_ids.append("local-0123456789ab")
    beat.journal.role = "leader"
    beat.journal.detail = "ok"
    beat.journal.last_index = 100
    for i in range(3):
        beat.journal.replicas.add(node_id=f"node-{i}", durable_index=100)
    return link_pb2.AgentMessage(heartbeat=beat).SerializeToString()


def per_message(
    decoder: Callable[[bytes], object], raw: bytes, checked: bool, batches: int
) -> harness.Summary | None:
    """Microseconds per message, one figure per batch of 1000."""
    one = (lambda: decode(decoder, raw)) if checked else (lambda: decoder(raw))
    out = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(1000):
            one()
        out.append((time.perf_counter() - start) * 1000)  # ms per 1000 = us per message
    return harness.summarize(out)


def round_trips(socket: Path, calls: int) -> list[float]:
    """Milliseconds per dry-run RequestPermit, sequential, from a blocking client."""
    request = agent_pb2.PermitRequest(action="move_arm", dry_run=True, holder="bench")
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        stub = agent_pb2_grpc.AgentLocalStub(channel)
        for _ in range(WARM_UP_CALLS):  # the connection, caches
            stub.RequestPermit(request, timeout=5)
        out = []
        for _ in range(calls):
            start = time.perf_counter()
            stub.RequestPermit(request, timeout=5)
            out.append((time.perf_counter() - start) * 1000)
    return out


async def bare_floor(run: Run) -> list[float]:
    socket = run.root / "bare.sock"
    spec_file = run.root / "permit-floor.json"
    spec_file.write_text(json.dumps({"socket": str(socket)}))
    argv = [str(harness.BENCH_DIR / "_floor.py"), "permit", str(spec_file)]
    server = await run.children.python("permit-floor", argv, piped=True)
    try:
        await server.ready(run.args.timeout)
        return await asyncio.to_thread(round_trips, socket, run.args.calls)
    finally:
        await run.children.stop(server, 10.0)


async def agent_path(run: Run) -> list[float]:
    hub = run.hub("hub")
    await hub.start_with_operator()
    agent = await Agent.enroll(hub, "node-a", "site-a")
    try:
        await agent.wait_connected()
        return await asyncio.to_thread(round_trips, agent.socket, run.args.calls)
    finally:
        await agent.stop()
        await hub.close()


async def scenario(run: Run) -> None:
    batches = run.args.batches
    raw_beat = heartbeat()
    raw_permit = agent_pb2.PermitRequest(action="move_arm", holder="worker-7").SerializeToString()
    section = run.report.section(f"per message: batches of 1000 ({batches}); round trips")
    beat, permit = link_pb2.AgentMessage.FromString, agent_pb2.PermitRequest.FromString
    section.add(
        "heartbeat (AgentMessage) decoded and checked by the boundary",
        "us",
        per_message(beat, raw_beat, True, batches),
        per_message(beat, raw_beat, False, batches),
    )
    section.add(
        "PermitRequest decoded and checked",
        "us",
        per_message(permit, raw_permit, True, batches),
        per_message(permit, raw_permit, False, batches),
    )
    progress("bare permit server")
    bare = await bare_floor(run)
    progress("through the agent")
    ours = await agent_path(run)
    section.add(
        f"dry-run RequestPermit round trip ({run.args.calls} calls)",
        "ms",
        harness.summarize(ours),
        harness.summarize(bare),
    )
    run.report.print_section(section)


def parser() -> argparse.ArgumentParser:
    p = harness.options(__doc__ or "")
    p.add_argument("--calls", type=at_least(1), default=2000)
    p.add_argument("--batches", type=at_least(1), default=50)
    return p


if __name__ == "__main__":
    sys.exit(harness.main(parser(), SMOKE, scenario))
