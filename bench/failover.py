"""Benchmark leader failover and switchover with real hub and agent processes.

    .venv/bin/python bench/failover.py [--trials 20] [--renewers 200] [--json]

Prints, over --trials trials each (median, p99, max):
  - the leaderless window of a graceful resign (the hub's own measure: from the old
    leader's release to the new grant);
  - time to a new leader after SIGKILL of the leader, with the default timing
    (ttl 10 s, renew every 2 s) and with a 2 s TTL (renew every 0.5 s), measured from the
    kill to the first LeaderStatus answer naming another leader (polled every 20 ms);
  - the hub's CPU per 1000 lease renewals per second: --renewers simulated members
    (own mTLS channel and certificate each, 10 per group) renewing 5 times a second for
    10 s, hub CPU time over that window.
Loopback only; every process is stopped at the end.
"""

import argparse
import asyncio
import datetime as dt
import json
import signal
import statistics
import sys
import time
from pathlib import Path

import grpc
import psutil
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgecommon import pki  # noqa: E402
from edgecommon.identity import Identity, Kind  # noqa: E402
from edgecommon.pb import fleet_pb2, fleet_pb2_grpc, link_pb2, link_pb2_grpc  # noqa: E402
from hub.credentials import CredentialPaths, load_ca  # noqa: E402
from tests.procs import Fleet, fleet_fixture, wait_until  # noqa: E402

DEFAULT = "[lease]\nttl_s = 10.0\nrenew_interval_s = 2.0\nrenew_deadline_s = 1.0\n"
FAST = "[lease]\nttl_s = 2.0\nrenew_interval_s = 0.5\nrenew_deadline_s = 0.5\nmargin_s = 0.3\n"
NODES = ("node-a", "node-b", "node-c")


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": statistics.median(ordered), "p99": p99, "max": ordered[-1], "n": len(ordered)}


def operator_channel(fleet: Fleet) -> grpc.aio.Channel:
    ctx = fleet.context
    creds = grpc.ssl_channel_credentials(
        (ctx / "ca.crt").read_bytes(),
        (ctx / "operator.key").read_bytes(),
        (ctx / "operator.crt").read_bytes(),
    )
    return grpc.aio.secure_channel(fleet.listen, creds)


async def leader_of(stub: fleet_pb2_grpc.FleetStub) -> tuple[str, int]:
    report = await stub.LeaderStatus(fleet_pb2.GroupLeaderRequest(group="site-a"), timeout=5)
    group = report.groups[0]
    return group.leader, group.epoch


def start_group(fleet: Fleet, lease: str) -> None:
    fleet.start_hub(lease)
    fleet.bootstrap_operator()
    for node in NODES:
        fleet.start_agent(node, fleet.token(node))
    for node in NODES:
        fleet.wait_connected(node)


async def resign_windows(fleet: Fleet, trials: int) -> list[float]:
    async with operator_channel(fleet) as channel:
        stub = fleet_pb2_grpc.FleetStub(channel)
        windows = []
        for _ in range(trials):
            await until_leader(stub)
            report = await stub.ResignLeader(
                fleet_pb2.ResignLeaderRequest(group="site-a", timeout_s=10), timeout=15
            )
            if not report.done:
                raise RuntimeError(f"resign did not complete: {report.detail}")
            windows.append(report.leaderless_s)
            await asyncio.sleep(0.3)
        return windows


async def until_leader(stub: fleet_pb2_grpc.FleetStub, not_this: str = "") -> float:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        leader, _ = await leader_of(stub)
        if leader and leader != not_this:
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise TimeoutError("no leader within 60 s")


async def kill_failovers(fleet: Fleet, trials: int) -> list[float]:
    async with operator_channel(fleet) as channel:
        stub = fleet_pb2_grpc.FleetStub(channel)
        times = []
        for _ in range(trials):
            await until_leader(stub)
            leader, _ = await leader_of(stub)
            killed = time.monotonic()
            fleet.agents[leader].signal(signal.SIGKILL)
            fleet.agents[leader].popen.wait(10)  # type: ignore[union-attr]
            times.append(await until_leader(stub, not_this=leader) - killed)
            fleet.start_agent(leader, config=fleet.agent_dir(leader) / "agent.toml")
            await asyncio.to_thread(fleet.wait_connected, leader)
        return times


def renewer_creds(fleet: Fleet, n: int) -> list[grpc.ChannelCredentials]:
    ca_key, ca_cert = load_ca(CredentialPaths.under(fleet.hub_state))
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        key = pki.generate_key()
        identity = Identity(Kind.NODE, f"r{i:04d}", f"g{i // 10:03d}")
        cert = pki.issue_for_key(ca_key, ca_cert, key, identity, "edge", now, dt.timedelta(hours=1))
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        out.append(grpc.ssl_channel_credentials(pki.pem(ca_cert), key_pem, pki.pem(cert)))
    return out


async def renewal_cost(fleet: Fleet, renewers: int, window_s: float = 10.0) -> dict[str, float]:
    creds = renewer_creds(fleet, renewers)
    channels = [
        grpc.aio.secure_channel(fleet.listen, c, options=[("grpc.use_local_subchannel_pool", 1)])
        for c in creds
    ]
    stubs = [link_pb2_grpc.LinkStub(ch) for ch in channels]
    count = 0
    stop_at = 0.0

    async def renew_loop(stub: link_pb2_grpc.LinkStub) -> None:
        nonlocal count
        epoch = 0
        while time.monotonic() < stop_at:
            answer = await stub.RenewLease(link_pb2.RenewLeaseRequest(epoch=epoch), timeout=5)
            epoch = answer.epoch if answer.verdict in ("granted", "renewed") else 0
            count += 1
            await asyncio.sleep(0.2)

    try:
        stop_at = time.monotonic() + 2
        await asyncio.gather(*(renew_loop(s) for s in stubs))  # warm up: connect, elect
        hub = psutil.Process(fleet.hub.pid)
        count = 0
        cpu0 = sum(hub.cpu_times()[:2])
        started = time.monotonic()
        stop_at = started + window_s
        await asyncio.gather(*(renew_loop(s) for s in stubs))
        elapsed = time.monotonic() - started
        cpu = sum(hub.cpu_times()[:2]) - cpu0
    finally:
        for ch in channels:
            await ch.close()
    rate = count / elapsed
    return {
        "renewals_per_s": rate,
        "hub_cpu_s": cpu,
        "core_percent_per_1000_per_s": cpu / elapsed / rate * 1000 * 100,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {"cores": psutil.cpu_count()}
    for label, lease in (("default timing (ttl 10 s)", DEFAULT), ("ttl 2 s", FAST)):
        for fleet in fleet_fixture():
            start_group(fleet, lease)
            wait_until("a leader", lambda f=fleet: f.fleet_status()["online"] == 3)
            if lease is DEFAULT:
                results["resign leaderless window"] = stats(
                    asyncio.run(resign_windows(fleet, args.trials))
                )
                results["hub cpu per 1000 renewals/s"] = asyncio.run(
                    renewal_cost(fleet, args.renewers)
                )
            results[f"new leader after SIGKILL, {label}"] = stats(
                asyncio.run(kill_failovers(fleet, args.trials))
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--renewers", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"machine: {results['cores']} cores; {args.trials} trials each")
    print(f"{'figure':<44} {'median':>9} {'p99':>9} {'max':>9}")
    for name, value in results.items():
        if isinstance(value, dict) and "median" in value:
            print(
                f"{name:<44} {value['median'] * 1000:>7.1f}ms {value['p99'] * 1000:>7.1f}ms "
                f"{value['max'] * 1000:>7.1f}ms"
            )
    cost = results["hub cpu per 1000 renewals/s"]
    assert isinstance(cost, dict)
    print(
        f"hub CPU per 1000 renewals/s: {cost['core_percent_per_1000_per_s']:.1f}% of one core "
        f"(measured at {cost['renewals_per_s']:.0f} renewals/s, {args.renewers} members)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
