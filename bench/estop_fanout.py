"""Benchmark the emergency-stop fan-out against a real hub, next to the bare-gRPC floor.

    .venv/bin/python bench/estop_fanout.py --agents 100 [1000 5000] [--procs P] [--trials K]
        [--poll-ms MS] [--ramp R] [--heartbeat-s S] [--worker-nice N] [--profile DIR]
        (and harness.py's options)

For each N, K trials of: engage a `fleet` stop, wait until all N acknowledged, release it,
wait until every agent's latch is empty. Timed on two sides:

ours   a real hub process (a fresh directory per N, HTTP off, a temp autonomy file) and N
       simulated agents (bench/_agents.py) in P worker processes: each the product's link
       over its own mTLS channel with a node certificate signed by the hub's CA, and its
       safety (cadence loop running) over its own state database (a real SQLite file, WAL,
       synchronous=FULL: every agent latches durably before it acknowledges). The operator
       calls Fleet.EngageEstop / EstopStatus / ReleaseEstop like `edgectl estop`.
floor  bench/_floor.py: a minimal grpc.aio bidi server with the same certificates and
       keepalive options, clients on their own channels, heartbeats every --heartbeat-s;
       the server puts a small message on all N streams, each client writes one row to its
       own SQLite file (WAL, synchronous=FULL, one autocommit statement) and acks on the
       stream. Also run without the SQLite write (the FIELD-NOTES figure).

Figures per trial (t0 = wall/perf time right before EngageEstop is sent):
  engage RPC           the EngageEstop round trip
  acked, polled        t0 until an EstopStatus answer shows N acknowledged (polled every
                       --poll-ms; includes the poll period and the RPC)
  acked, RPC+latency   engage RPC + max per-node `ack_latency_s` the hub reports (its time
                       from queueing the stop for a stream to reading the ack; an upper
                       bound: the RPC time after the queueing is counted twice)
  acked, hub clock     max `acked_unix` - t0 (one machine, one clock)
  acked, hub internal  max `acked_unix` - `engaged_unix` (from the hub starting the engage:
                       the closest match to the floor, which starts at its broadcast)
  latched, agents      last agent's latch committed - t0 (agents' clock)
  release, agents      ReleaseEstop sent until the last agent's latch is empty
The floor's figure is the server's time from the first put to the N-th ack.

Correctness per trial: the hub's report lists N nodes, all acknowledged; every worker holds
the stop in memory and in its databases (read back with `AgentStateDB.stops`); after release
none holds any stop, in memory or on disk. A trial that fails these checks fails the run.
"""

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import harness
from harness import BenchError, Child, Hub, Run, Workers, at_least, progress

from edgecommon import grpcopts
from edgecommon.pb import fleet_pb2

SMOKE = {
    "agents": [2],
    "procs": 1,
    "trials": 1,
    "settle": 0.0,
    "settle_first": 0.0,
    "timeout": 60.0,
}
ROWS = (  # (label, ours key, floor trials, floor key)
    ("engage RPC", "engage_s", "", ""),
    ("all acked: polled EstopStatus", "polled_s", "durable", "acked_s"),
    ("all acked: engage RPC + max ack_latency", "rpc_plus_latency_s", "durable", "acked_s"),
    ("all acked: hub clock, from t0", "hub_clock_s", "durable", "acked_s"),
    ("all acked: hub clock, from engaged_unix", "hub_internal_s", "durable", "acked_s"),
    ("all latched on disk: agents' clock", "latched_s", "", ""),
    ("release: all latches empty", "release_s", "durable", "release_s"),
    ("floor without the SQLite write", "", "nodisk", "acked_s"),
    ("hub CPU, engage to all acked (+polls)", "hub_cpu_s", "", ""),
    ("EstopStatus RPC while polling, median", "poll_rpc_median_s", "", ""),
    ("EstopStatus RPC while polling, max", "poll_rpc_max_s", "", ""),
)
Trial = dict[str, Any]


def acked_nodes(report: fleet_pb2.EstopReport) -> list[fleet_pb2.EstopNode]:
    return [node for node in report.stops[0].nodes if node.state == "acknowledged"]


@dataclasses.dataclass
class Ours:
    """The real hub, its operator and N simulated agents, for the trials of one N."""

    run: Run
    hub: Hub
    workers: Workers
    n: int

    async def status(self, stop_id: str) -> fleet_pb2.EstopReport:
        request = fleet_pb2.EstopStatusRequest(stop_id=stop_id)
        return await self.hub.operator.fleet.EstopStatus(request, timeout=harness.RPC_TIMEOUT_S)

    async def poll_acked(self, stop_id: str, t0: float) -> tuple[float, Trial, Any]:
        """Poll EstopStatus every --poll-ms until N acknowledged; seconds since t0 (perf)."""
        period, rpc_s, size, acked = self.run.args.poll_ms / 1000, [], 0, 0
        deadline = time.monotonic() + self.run.args.timeout
        while time.monotonic() < deadline:
            started = time.perf_counter()
            report = await self.status(stop_id)
            done = time.perf_counter()
            rpc_s.append(done - started)
            size = report.ByteSize()
            acked = len(acked_nodes(report))
            if acked >= self.n:
                polls = {
                    "polls": len(rpc_s),
                    "poll_rpc_median_s": statistics.median(rpc_s),
                    "poll_rpc_max_s": max(rpc_s),
                    "status_bytes": size,
                }
                return done - t0, polls, report
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - started)))
        raise BenchError(f"stop {stop_id}: {acked}/{self.n} acknowledged after the timeout")

    async def engage(self, k: int) -> tuple[Trial, str]:
        """Engage a fleet stop, wait until N acknowledged; the figures and the stop id."""
        hub = self.hub.proc
        if hub is None:
            raise BenchError("the hub is not running")
        hub_cpu0 = hub.cpu_s()
        wall0, t0 = time.time(), time.perf_counter()
        request = fleet_pb2.EngageEstopRequest(scope="fleet", reason=f"bench trial {k}")
        engaged = await self.hub.operator.fleet.EngageEstop(request, timeout=harness.RPC_TIMEOUT_S)
        engage_s = time.perf_counter() - t0
        stop = engaged.stops[0]
        polled_s, figures, report = await self.poll_acked(stop.stop_id, t0)
        acked = acked_nodes(report)
        last_acked = max(node.acked_unix for node in acked)
        figures |= {
            "engage_s": engage_s,
            "polled_s": polled_s,
            "rpc_plus_latency_s": engage_s + max(node.ack_latency_s for node in acked),
            "hub_clock_s": last_acked - wall0,
            "hub_internal_s": last_acked - stop.engaged_unix,
            "hub_cpu_s": hub.cpu_s() - hub_cpu0,
            "report_nodes": len(report.stops[0].nodes),
            "acked": len(acked),
            "wall0": wall0,
        }
        return figures, stop.stop_id

    async def verify_latched(self, stop_id: str, figures: Trial) -> list[str]:
        """Every agent holds the stop in memory and on disk; problems found, if any."""
        latches = await self.workers.ask_all({"cmd": "latches", "id": stop_id})
        figures["latched"] = sum(a["holding"] for a in latches)
        figures["latched_s"] = max(a["last_latched"] for a in latches) - figures["wall0"]
        stored = await self.workers.ask_all({"cmd": "rows", "id": stop_id}, 120.0)
        figures["on_disk"] = sum(a["with_stop"] for a in stored)
        problems = []
        if figures["report_nodes"] != self.n or figures["acked"] != self.n:
            problems.append(f"hub lists {figures['report_nodes']} nodes, {figures['acked']} acked")
        if figures["latched"] != self.n or figures["on_disk"] != self.n:
            problems.append(f"{figures['latched']} hold it, {figures['on_disk']} on disk")
        return problems

    async def release(self, stop_id: str, k: int) -> tuple[Trial, list[str]]:
        """Release the fleet stop, wait until every latch is empty, check the disks too."""
        wall_r = time.time()
        request = fleet_pb2.ReleaseEstopRequest(scope="fleet", reason=f"bench trial {k} done")
        await self.hub.operator.fleet.ReleaseEstop(request, timeout=harness.RPC_TIMEOUT_S)

        async def check() -> tuple[list[Any] | None, str]:
            answers = await self.workers.ask_all({"cmd": "latches", "id": stop_id})
            released = sum(a["released"] for a in answers)
            holding = sum(a["holding_any"] for a in answers)
            done = released >= self.n and holding == 0
            return (answers if done else None), f"{released}/{self.n} released, {holding} held"

        what = f"release of {stop_id}"
        answers = await harness.wait_until(check, self.run.args.timeout, what, period_s=0.01)
        stored = await self.workers.ask_all({"cmd": "rows", "id": stop_id}, 120.0)
        figures = {
            "release_s": max(a["last_released"] for a in answers) - wall_r,
            "released": sum(a["released"] for a in answers),
            "rows_after": sum(a["rows"] for a in stored),
        }
        problems = [] if figures["rows_after"] == 0 else [f"{figures['rows_after']} rows left"]
        return figures, problems

    async def trial(self, k: int) -> Trial:
        """One trial: engage, all acked, verify, release, all released, verify."""
        connects0 = (await self.workers.status()).connects
        figures, stop_id = await self.engage(k)
        problems = await self.verify_latched(stop_id, figures)
        released, more = await self.release(stop_id, k)
        figures |= released
        figures["reconnects"] = (await self.workers.status()).connects - connects0
        if figures["reconnects"]:
            problems.append(f"{figures['reconnects']} agents reconnected during the trial")
        figures["problems"] = problems + more
        return figures

    async def all_online(self) -> None:
        """Until FleetStatus shows all N online and every agent says it is connected."""
        groups = harness.fleet_groups(self.n)

        async def check() -> tuple[bool | None, str]:
            online = (await self.hub.operator.view(groups)).online
            connected = (await self.workers.status()).connected
            done = online >= self.n and connected >= self.n
            return (True if done else None), f"hub: {online}/{self.n} online, {connected} up"

        what = "ours: the hub sees all online"
        await harness.wait_until(check, self.run.args.timeout, what, period_s=0.5)


def worker_spec(run: Run) -> dict[str, Any]:
    args = run.args
    return {"heartbeat_s": args.heartbeat_s, "nice": args.worker_nice, "durable": True}


async def connect_all(run: Run, workers: Workers, n: int, what: str) -> None:
    """Start every agent/client (--ramp per second) and wait until all N are connected.

    All at once, 5000 agents sharing 2 cores with the hub never settled: handshakes took
    longer than grpc's connect timeout and the retries kept everything saturated.
    """
    started = time.monotonic()
    await workers.connect(run.args.ramp)
    await workers.all_connected(n, 0.0, run.args.timeout + n / run.args.ramp, what)
    progress(f"{what} in {time.monotonic() - started:.1f}s")


async def run_ours(run: Run, hub: Hub, n: int) -> list[Trial]:
    """The hub and N simulated agents: K trials."""
    spec = worker_spec(run) | {"log_level": run.args.agent_log_level}
    workers = await harness.simulated_agents(run, "agents", n, hub.listen, hub, **spec)
    trials: list[Trial] = []
    try:
        ours = Ours(run, hub, workers, n)
        await connect_all(run, workers, n, "agents connected")
        await ours.all_online()
        if (connects := (await workers.status()).connects) > n:
            run.report.note(f"ours N={n}: {connects - n} extra connects while all connected")
        await asyncio.sleep(run.args.settle_first)
        if quiet := await harness.wait_for_quiet(run, f"ours N={n}"):
            run.report.note(quiet)
        window = harness.MachineWindow(run.children)
        assert hub.proc is not None
        profile = run.args.profile / f"N{n}" if run.args.profile else None
        async with run.children.profiled([hub.proc, workers.procs[0]], profile):
            for k in range(run.args.trials):
                trial = await ours.trial(k)
                trials.append(trial)
                progress(
                    f"ours N={n} trial {k + 1}: acked polled {trial['polled_s'] * 1e3:.0f} ms, "
                    f"hub clock {trial['hub_clock_s'] * 1e3:.0f} ms, "
                    f"released {trial['release_s'] * 1e3:.0f} ms"
                )
                if trial["problems"]:
                    run.report.fail(f"ours N={n} trial {k + 1}: {'; '.join(trial['problems'])}")
                await asyncio.sleep(run.args.settle)
        machine_note(run, "ours", n, window.stop())
        ended = (await workers.status()).ended
        if ended:
            run.report.fail(f"ours N={n}: agents' link or safety ended: {dict(ended)}")
    finally:
        await workers.stop()
    return trials


async def floor_broadcasts(
    run: Run, server: Child, clients: Workers, n: int, durable: bool
) -> list[Trial]:
    """K broadcasts (with or without the durable write), each followed by a release."""
    trials, timeout = [], run.args.timeout
    for k in range(run.args.trials):
        message_id = f"{'d' if durable else 'm'}{n}-{k}"
        command = {"cmd": "broadcast", "kind": "E" if durable else "N", "id": message_id}
        engaged = await server.ask({**command, "timeout": timeout}, timeout + 30)
        trial: Trial = {"acked_s": engaged["elapsed_s"], "acked": engaged["acked"]}
        problems = [] if trial["acked"] == n else [f"{trial['acked']}/{n} acked"]
        if durable:
            rows = await clients.ask_all({"cmd": "rows", "id": message_id}, 120.0)
            if (on_disk := sum(a["rows"] for a in rows)) != n:
                problems.append(f"{on_disk}/{n} rows on disk")
            command = {"cmd": "broadcast", "kind": "R", "id": message_id, "timeout": timeout}
            released = await server.ask(command, timeout + 30)
            trial["release_s"] = released["elapsed_s"]
            rows = await clients.ask_all({"cmd": "rows", "id": message_id}, 120.0)
            if released["acked"] != n or sum(a["rows"] for a in rows):
                problems.append(f"{released['acked']}/{n} released")
        if problems:
            run.report.fail(f"floor N={n} {message_id}: {'; '.join(problems)}")
        trials.append(trial)
        acked_ms = f"{trial['acked_s'] * 1e3:.0f}" if trial["acked_s"] is not None else "-"
        progress(f"floor N={n} {message_id}: {trial['acked']}/{n} acked in {acked_ms} ms")
        await asyncio.sleep(run.args.settle)
    return trials


async def run_floor(run: Run, hub: Hub, n: int) -> dict[str, list[Trial]]:
    """The bare server and N bare clients: K durable trials, then K without the write."""
    port = harness.free_port()
    server = await harness.start_floor_server(run, hub, port)
    address = f"127.0.0.1:{port}"
    clients = await harness.simulated_agents(run, "clients", n, address, hub, **worker_spec(run))
    try:
        await connect_all(run, clients, n, "clients connected")
        if (registered := (await server.ask({"cmd": "status"}))["registered"]) != n:
            raise BenchError(f"floor: the server sees {registered}/{n} streams")
        await asyncio.sleep(run.args.settle_first)
        if quiet := await harness.wait_for_quiet(run, f"floor N={n}"):
            run.report.note(quiet)
        window = harness.MachineWindow(run.children)
        durable = await floor_broadcasts(run, server, clients, n, True)
        nodisk = await floor_broadcasts(run, server, clients, n, False)
        machine_note(run, "floor", n, window.stop())
    finally:
        await clients.stop()
        await run.children.stop(server, 5.0)
    return {"durable": durable, "nodisk": nodisk}


def machine_note(run: Run, side: str, n: int, use: harness.MachineUse) -> None:
    run.report.note(
        f"N={n}: during the {side} trials the machine was {use.busy_pct:.0f}% of a core busy, "
        f"{use.others_pct:.0f}% used by processes outside this bench; load average "
        f"{use.load_1m:.1f}"
    )


def add_rows(run: Run, n: int, ours: list[Trial], floor: dict[str, list[Trial]]) -> None:
    title = (
        f"N={n}: {len(ours)} trials ours, {len(floor.get('durable', []))} floor; "
        f"{run.args.procs} worker processes"
    )
    section = run.report.section(title)
    for label, ours_key, floor_set, floor_key in ROWS:
        mine = harness.summarize((t[ours_key] for t in ours), 1e3) if ours_key else None
        bare = floor.get(floor_set, []) if floor_set else []
        section.add(label, "ms", mine, harness.summarize((t[floor_key] for t in bare), 1e3))
    if sizes := [t["status_bytes"] for t in ours]:
        section.notes.append(
            f"EstopStatus answer for the stop: {max(sizes):,} bytes "
            f"(the hub sends at most {grpcopts.MAX_LINK_MESSAGE_BYTES:,})"
        )
    run.report.print_section(section)


async def scenario(run: Run) -> None:
    run.report.note(f"agents' SQLite files on {harness.filesystem_of(run.root)}")
    for n in run.args.agents:
        hub = run.hub(
            f"hub-{n}",
            sections=f"[link]\nheartbeat_interval_s = {run.args.heartbeat_s}\n"
            f"offline_after_s = {5 * run.args.heartbeat_s}\n",
        )
        ours: list[Trial] = []
        floor: dict[str, list[Trial]] = {}
        try:
            await hub.start_with_operator()
            took = await asyncio.to_thread(
                harness.write_node_certs, hub, harness.fleet_identities(n)
            )
            progress(f"signed {n} node certificates in {took:.1f}s")
            progress(f"N={n}: ours")
            ours = await run_ours(run, hub, n)
        except (BenchError, grpc.aio.AioRpcError) as exc:
            run.report.fail(f"ours N={n}: {exc}")
        finally:
            await hub.close()
        try:
            progress(f"N={n}: floor")
            floor = await run_floor(run, hub, n)
        except BenchError as exc:
            run.report.fail(f"floor N={n}: {exc}")
        add_rows(run, n, ours, floor)


def parser() -> argparse.ArgumentParser:
    p = harness.options(__doc__ or "")
    p.add_argument("--agents", type=at_least(1), nargs="+", default=[100], help="N (one or more)")
    p.add_argument("--procs", type=at_least(1), default=2, help="worker processes (default 2)")
    p.add_argument("--trials", type=at_least(1), default=10, help="trials per N (default 10)")
    p.add_argument("--poll-ms", type=float, default=10.0, help="EstopStatus poll period")
    p.add_argument("--settle", type=float, default=1.0, help="pause between trials (s)")
    p.add_argument("--settle-first", type=float, default=3.0, help="pause after all connected")
    p.add_argument(
        "--heartbeat-s",
        type=float,
        default=1.0,
        help="agents' heartbeat period, both sides (default 1, the product's); the hub's "
        "offline_after_s is 5 times it",
    )
    p.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="nice increment of the agent/client worker processes, both sides (default 0): "
        "the simulated agents then leave the CPU to the hub / floor server when it needs it",
    )
    p.add_argument(
        "--ramp", type=at_least(1, float), default=500.0, help="agents started per second"
    )
    p.add_argument(
        "--agent-log-level", default="info", help="simulated agents' log level (edge-agent: info)"
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="with --py-spy: record the hub and one agent worker during the ours trials "
        "(collapsed stacks, one file each, in DIR)",
    )
    return p


if __name__ == "__main__":
    sys.exit(harness.main(parser(), SMOKE, scenario))
