"""What the request boundary and the local caller check cost, beside the bare floor.

    nice .venv/bin/python bench/boundary.py [--calls 2000] [--json]

Prints (median, p99, max):
  - per message, in-process: decoding a heartbeat (AgentMessage) and a PermitRequest
    alone (the floor) and decoding plus the boundary's field check (batches of 1000,
    time per message);
  - a dry-run RequestPermit round trip on the agent's Unix socket (the local relay,
    the caller check and the boundary included) against a bare grpc.aio server on a
    Unix socket answering the same method with a constant answer (the floor), --calls
    sequential calls each, one client, both in this machine's loopback.
Also prints the load average and the core count; run it on a quiet machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgecommon.boundary import decode  # noqa: E402
from edgecommon.pb import agent_pb2, agent_pb2_grpc, link_pb2  # noqa: E402
from tests.procs import fleet_fixture  # noqa: E402

BARE_SERVER = """
import asyncio, sys
import grpc
sys.path.insert(0, sys.argv[2])
from edgecommon.pb import agent_pb2, agent_pb2_grpc

class Bare(agent_pb2_grpc.AgentLocalServicer):
    async def RequestPermit(self, request, context):
        return agent_pb2.PermitDecision(granted=True, reason="granted")

async def main():
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentLocalServicer_to_server(Bare(), server)
    server.add_insecure_port("unix:" + sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": statistics.median(ordered), "p99": p99, "max": ordered[-1], "n": len(ordered)}


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


def per_message(decoder, raw: bytes, checked: bool, batches: int = 50) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Microseconds per message, one figure per batch of 1000."""
    one = (lambda: decode(decoder, raw)) if checked else (lambda: decoder(raw))
    out = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(1000):
            one()
        out.append((time.perf_counter() - start) * 1000)  # ms per 1000 = us per message
    return stats(out)


def round_trips(socket: Path, calls: int) -> dict[str, float]:
    """Milliseconds per dry-run RequestPermit, sequential."""
    request = agent_pb2.PermitRequest(action="move_arm", dry_run=True, holder="bench")
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        stub = agent_pb2_grpc.AgentLocalStub(channel)
        for _ in range(100):  # warm up: connection, caches
            stub.RequestPermit(request, timeout=5)
        out = []
        for _ in range(calls):
            start = time.perf_counter()
            stub.RequestPermit(request, timeout=5)
            out.append((time.perf_counter() - start) * 1000)
    return stats(out)


def bare_floor(calls: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ab-", dir="/tmp") as tmp:
        socket = Path(tmp) / "bare.sock"
        proc = subprocess.Popen(
            [sys.executable, "-c", BARE_SERVER, str(socket), str(ROOT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("the bare server did not start")
            return round_trips(socket, calls)
        finally:
            proc.terminate()
            proc.wait(10)


def agent_path(calls: int) -> dict[str, float]:
    for fleet in fleet_fixture():
        fleet.start_hub()
        fleet.bootstrap_operator()
        fleet.start_agent("node-a", fleet.token("node-a"))
        fleet.wait_connected("node-a")
        return round_trips(fleet.socket("node-a"), calls)
    raise SystemExit("no fleet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    raw_beat = heartbeat()
    raw_permit = agent_pb2.PermitRequest(action="move_arm", holder="worker-7").SerializeToString()
    report = {
        "load_average": os.getloadavg(),
        "cores": os.cpu_count(),
        "heartbeat_decode_us": per_message(link_pb2.AgentMessage.FromString, raw_beat, False),
        "heartbeat_decode_and_check_us": per_message(
            link_pb2.AgentMessage.FromString, raw_beat, True
        ),
        "permit_decode_us": per_message(agent_pb2.PermitRequest.FromString, raw_permit, False),
        "permit_decode_and_check_us": per_message(
            agent_pb2.PermitRequest.FromString, raw_permit, True
        ),
        "permit_round_trip_bare_ms": bare_floor(args.calls),
        "permit_round_trip_agent_ms": agent_path(args.calls),
        "load_average_after": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"load average {report['load_average']}, {report['cores']} cores")
    for key, value in report.items():
        if isinstance(value, dict):
            print(
                f"{key:34} median {value['median']:8.3f}  p99 {value['p99']:8.3f}  "
                f"max {value['max']:8.3f}  (n={value['n']})"
            )
    print(f"load average after {report['load_average_after']}")


if __name__ == "__main__":
    main()
