"""Benchmark leader failover and switchover with real hub and agent processes.

    .venv/bin/python bench/failover.py [--trials 20] [--renewers 200] [--window 10]
        [--timings default fast]  (and harness.py's options)

A real hub and three real agents in group site-a, for each lease timing (`default`: ttl
10 s, renew every 2 s; `fast`: ttl 2 s, renew every 0.5 s). Prints, over --trials trials
each (median, p99, max):
  - the leaderless window of a graceful resign (the hub's own measure: from the old
    leader's release to the new grant), with the first timing;
  - time to a new leader after SIGKILL of the leader, measured from the kill to the first
    LeaderStatus answer naming another leader (polled every 20 ms), with each timing;
  - the hub's CPU per 1000 lease renewals per second, with the first timing: --renewers
    simulated members (own mTLS channel and certificate each, 10 per group) renewing 5
    times a second for --window s after a warm-up of 2 s (at most --window), hub CPU time
    over that window.
No floor: nothing bare does what a lease does.
"""

import argparse
import asyncio
import sys
import time

import grpc
import harness
from harness import QUICK_RECONNECT, Agent, BenchError, Hub, Run, at_least, progress

from edgecommon.identity import Identity, Kind
from edgecommon.pb import fleet_pb2, link_pb2, link_pb2_grpc
from hub.pki.credentials import load_ca

TIMINGS = {
    "default": (
        "ttl 10 s",
        "[lease]\nttl_s = 10.0\nrenew_interval_s = 2.0\nrenew_deadline_s = 1.0\n",
    ),
    "fast": (
        "ttl 2 s",
        "[lease]\nttl_s = 2.0\nrenew_interval_s = 0.5\nrenew_deadline_s = 0.5\nmargin_s = 0.3\n",
    ),
}
NODES = ("node-a", "node-b", "node-c")
GROUP = "site-a"
SMOKE = {"trials": 1, "renewers": 2, "window": 1.0, "timings": ["fast"], "timeout": 60.0}


async def leader_of(hub: Hub) -> tuple[str, int]:
    report = await hub.operator.fleet.LeaderStatus(
        fleet_pb2.GroupLeaderRequest(group=GROUP), timeout=5
    )
    group = report.groups[0]
    return group.leader, group.epoch


async def until_leader(run: Run, hub: Hub, not_this: str = "") -> float:
    """Monotonic time at which LeaderStatus first names a leader (other than `not_this`)."""

    async def check() -> tuple[float | None, str]:
        leader, _ = await leader_of(hub)
        found = bool(leader) and leader != not_this
        return (time.monotonic() if found else None), f"leader {leader or 'none'}"

    return await harness.wait_until(check, run.args.timeout, "a leader", period_s=0.02)


async def start_group(run: Run, name: str, lease: str) -> tuple[Hub, dict[str, Agent]]:
    hub = run.hub(name, sections=lease)
    await hub.start_with_operator()
    agents = {node: await Agent.enroll(hub, node, GROUP, QUICK_RECONNECT) for node in NODES}
    for agent in agents.values():
        await agent.wait_connected()

    async def all_online() -> tuple[bool | None, str]:
        online = (await hub.operator.view([GROUP])).online
        return (True if online == len(NODES) else None), f"{online} online"

    await harness.wait_until(all_online, run.args.timeout, "all three online", period_s=0.05)
    return hub, agents


async def resign_windows(run: Run, hub: Hub) -> list[float]:
    windows = []
    for _ in range(run.args.trials):
        await until_leader(run, hub)
        report = await hub.operator.fleet.ResignLeader(
            fleet_pb2.ResignLeaderRequest(group=GROUP, timeout_s=10), timeout=15
        )
        if not report.done:
            raise BenchError(f"resign did not complete: {report.detail}")
        windows.append(report.leaderless_s)
        await asyncio.sleep(0.3)
    return windows


async def kill_failovers(run: Run, hub: Hub, agents: dict[str, Agent]) -> list[float]:
    times = []
    for _ in range(run.args.trials):
        await until_leader(run, hub)
        leader, _ = await leader_of(hub)
        killed = time.monotonic()
        await agents[leader].kill()
        times.append(await until_leader(run, hub, not_this=leader) - killed)
        await agents[leader].start()
        await agents[leader].wait_connected()
    return times


async def renewal_cost(run: Run, hub: Hub) -> tuple[float, float]:
    """(renewals per second, % of a core per 1000 renewals/s) over the window."""
    ca = load_ca(hub.pki)
    members = [
        harness.issue_node(ca, Identity(Kind.NODE, f"r{i:04d}", f"g{i // 10:03d}"), "edge", 1)
        for i in range(run.args.renewers)
    ]
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.secure_channel(hub.listen, m.channel_credentials(), options=options)
        for m in members
    ]
    stubs = [link_pb2_grpc.LinkStub(ch) for ch in channels]
    count, stop_at = 0, 0.0

    async def renew_loop(stub: link_pb2_grpc.LinkStub) -> None:
        nonlocal count
        epoch = 0
        while time.monotonic() < stop_at:
            answer = await stub.RenewLease(link_pb2.RenewLeaseRequest(epoch=epoch), timeout=5)
            epoch = answer.epoch if answer.verdict in ("granted", "renewed") else 0
            count += 1
            await asyncio.sleep(0.2)

    assert hub.proc is not None
    try:
        stop_at = time.monotonic() + min(2.0, run.args.window)
        await asyncio.gather(*(renew_loop(s) for s in stubs))  # warm up: connect, elect
        count = 0
        cpu0, started = hub.proc.cpu_s(), time.monotonic()
        stop_at = started + run.args.window
        await asyncio.gather(*(renew_loop(s) for s in stubs))
        elapsed, cpu = time.monotonic() - started, hub.proc.cpu_s() - cpu0
    finally:
        for ch in channels:
            await ch.close()
    rate = count / elapsed
    return rate, cpu / elapsed / rate * 1000 * 100


async def scenario(run: Run) -> None:
    section = run.report.section(f"{run.args.trials} trials each")
    for i, timing in enumerate(run.args.timings):
        label, lease = TIMINGS[timing]
        progress(f"timing {timing}: {label}")
        hub, agents = await start_group(run, f"hub-{timing}", lease)
        try:
            if i == 0:
                windows = await resign_windows(run, hub)
                section.add(
                    f"leaderless window of a graceful resign ({label})",
                    "ms",
                    harness.summarize(windows, 1e3),
                )
                rate, cost = await renewal_cost(run, hub)
                section.add("lease renewals per second measured at", "/s", harness.one(rate))
                section.add(
                    f"hub CPU per 1000 renewals/s ({run.args.renewers} members)",
                    "% core",
                    harness.one(cost),
                )
            failovers = await kill_failovers(run, hub, agents)
            section.add(
                f"new leader after SIGKILL, {label}", "ms", harness.summarize(failovers, 1e3)
            )
        finally:
            for agent in agents.values():
                await agent.stop()
            await hub.close()
    run.report.print_section(section)


def parser() -> argparse.ArgumentParser:
    p = harness.options(__doc__ or "")
    p.add_argument("--trials", type=at_least(1), default=20)
    p.add_argument("--renewers", type=at_least(1), default=200)
    p.add_argument("--window", type=at_least(0.1, float), default=10.0, help="renewal window (s)")
    p.add_argument(
        "--timings",
        nargs="+",
        choices=sorted(TIMINGS),
        default=["default", "fast"],
        help="lease timings, in order; the first also measures resign and renewal cost",
    )
    return p


if __name__ == "__main__":
    sys.exit(harness.main(parser(), SMOKE, scenario))
