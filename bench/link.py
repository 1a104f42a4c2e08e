"""Benchmark the agent link at fleet scale against a real hub, next to the bare-gRPC floor.

    .venv/bin/python bench/link.py --agents N [N ...] [--procs P] [--repeat K] [--ramp R]
        [--side both|ours|floor] [--window S] [--settle S]  (and harness.py's options)

For each N, K times each:

ours   a real hub process in a fresh directory and N simulated agents (bench/_agents.py)
       over P worker processes, each agent the product's link and safety with its own
       channel, its own mTLS connection and its own node certificate signed by the hub's
       CA (signed here, instead of N enrollments); plus one real edge-agent, enrolled with
       a join token, measured idle.
floor  bench/_floor.py: a minimal grpc.aio bidi server and minimal clients with the same
       certificates, keepalive options, heartbeat period and reconnect backoff shape.

Phases of a run: start the server; start all N agents at once (or R per second with
--ramp) and time until all are registered; a steady window of --window seconds (server
CPU per 1000 heartbeats, server RSS per agent); the idle edge-agent (ours only); then
SIGTERM the server, start it again on the same port and state, and time until all N are
back. With K > 1 each cell is median / p99 / max over the runs. The notes say why link
attempts failed.

Times come from the timestamps each side records (the hub's state_since per node from
Fleet.FleetStatus, the bare server's, the agents' own), so polling only delays detection.
A simulated agent whose link ends is counted and started again after 2 s, as systemd
would restart edge-agent. The hub, the workers and the idle agent share this machine's
cores: at large N the simulated agents' own CPU is part of what limits the result (see the
agent-side CPU row).

To measure a commit while the tree has work in progress:

    git archive HEAD | tar -x -C /tmp/edge-head
    PYTHONPATH=/tmp/edge-head .venv/bin/python bench/link.py --agents 100
"""

import argparse
import asyncio
import collections
import sys
import time

import grpc
import harness
from harness import Agent, BenchError, Child, Hub, Run, Workers, at_least, progress

from edgecommon.pb import fleet_pb2

IDLE_GROUP = "idle"
SMOKE = {
    "agents": [2],
    "procs": 1,
    "repeat": 1,
    "window": 1.0,
    "settle": 0.1,
    "reconnect_max_s": 1.0,
    "timeout": 60.0,
}

FIGURES = [  # key, label, unit
    ("register_s", "all N registered, from start: server view", "s"),
    ("register_agent_s", "all N registered, from start: agent view", "s"),
    ("listen_s", "server listening after restart", "s"),
    ("restart_first_s", "first agent back after restart: server view", "s"),
    ("restart_s", "all N back after restart: server view", "s"),
    ("restart_agent_s", "all N back after restart: agent view", "s"),
    ("link_crashes", "agent link crashes (link or safety ended)", "count"),
    ("fails_register", "failed link attempts during registration", "count"),
    ("fails_restart", "failed link attempts, stop to all back", "count"),
    ("down_s", "server stop time, SIGTERM to exit", "s"),
    ("rss_per_agent_kib", "server RSS per connected agent", "KiB"),
    ("cpu_per_1k_ms", "server CPU per 1000 heartbeats", "ms"),
    ("server_cpu_pct", "server CPU in the steady window", "% core"),
    ("hb_per_s", "heartbeats received per second", "/s"),
    ("worker_cpu_per_1k_ms", "agent-side CPU per 1000 heartbeats", "ms"),
    ("agent_rss_mib", "idle edge-agent RSS", "MiB"),
    ("agent_cpu_pct", "idle edge-agent CPU", "% core"),
    ("other_cpu_pct", "CPU of other processes on the machine", "% core"),
]
PER_RUN = ("register_s", "restart_s")
Figures = dict[str, float]


class Side:
    """What differs between the product and the floor; run_side does the same phases on both."""

    name = ""
    kind = ""  # worker kind: "agents" (the product) or "clients" (the floor's)

    def __init__(self, run: Run, hub: Hub, n: int) -> None:
        self.run, self.hub, self.n = run, hub, n
        self.server: Child | None = None
        self.rss0 = 0  # server RSS before any agent connected

    @property
    def address(self) -> str:
        raise NotImplementedError

    async def start(self) -> Child:
        raise NotImplementedError

    async def stop(self) -> float:
        return await self.run.children.stop(self.server) if self.server else 0.0

    async def ready(self) -> None:
        raise NotImplementedError

    async def registered(self, since: float, what: str) -> tuple[float, float]:
        """Seconds from `since` until the server saw the first and all N agents registered."""
        raise NotImplementedError

    async def messages(self) -> tuple[float, float]:
        """(wall time, heartbeats received so far) as the server counts them."""
        raise NotImplementedError

    async def extras(self) -> tuple[Figures, list[str]]:
        """Figures measured only on this side, while the N agents are connected."""
        return {}, []


class Ours(Side):
    """The real hub; its view comes from Fleet.FleetStatus."""

    name, kind = "ours", "agents"

    @property
    def address(self) -> str:
        return self.hub.listen

    async def start(self) -> Child:
        """The hub, started unless it still runs from its preparation."""
        self.server = self.hub.proc if self.hub.alive() else await self.hub.start()
        assert self.server is not None
        return self.server

    async def ready(self) -> None:
        await self.hub.wait_answering()

    async def registered(self, since: float, what: str) -> tuple[float, float]:
        groups = harness.fleet_groups(self.n)

        async def check() -> tuple[tuple[float, float] | None, str]:
            try:
                view = await self.hub.operator.view(groups)
            except grpc.aio.AioRpcError as err:
                return None, f"hub answers {err.code().name}"
            if view.online >= self.n and view.first_online >= since:
                return (view.first_online - since, view.last_online - since), "done"
            return None, f"{view.online}/{self.n} online"

        return await harness.wait_until(check, self.run.args.timeout, what, period_s=0.5)

    async def messages(self) -> tuple[float, float]:
        view = await self.hub.operator.view(harness.fleet_groups(self.n))
        return view.hub_time, view.heartbeat_seq

    async def extras(self) -> tuple[Figures, list[str]]:
        notes = []
        if problem := await whole_fleet_problem(self.hub):
            notes.append(f"N={self.n} ours: {problem}")
        progress("ours: idle edge-agent")
        return await idle_agent(self.run, self.hub), notes


class Floor(Side):
    """bench/_floor.py's server; its view comes from its status answers."""

    name, kind = "floor", "clients"

    def __init__(self, run: Run, hub: Hub, n: int) -> None:
        super().__init__(run, hub, n)
        self.port = harness.free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Child:
        self.server = await harness.start_floor_server(self.run, self.hub, self.port)
        return self.server

    async def ready(self) -> None:
        if self.server is None:
            raise BenchError("floor server not started")
        await self.server.ask({"cmd": "status"})

    async def registered(self, since: float, what: str) -> tuple[float, float]:
        async def check() -> tuple[tuple[float, float] | None, str]:
            if self.server is None:
                raise BenchError(f"{what}: floor server not started")
            status = await self.server.ask({"cmd": "status"})
            if status["registered"] >= self.n and status["first"] >= since:
                return (status["first"] - since, status["last"] - since), "done"
            return None, f"{status['registered']}/{self.n} registered"

        return await harness.wait_until(check, self.run.args.timeout, what, period_s=0.5)

    async def messages(self) -> tuple[float, float]:
        if self.server is None:
            raise BenchError("floor server not started")
        status = await self.server.ask({"cmd": "status"})
        return status["t"], status["messages"]


async def whole_fleet_problem(hub: Hub) -> str:
    """'' if FleetStatus for the whole fleet (what `edgectl fleet status` asks) works."""
    try:
        async with hub.operator.fresh() as stub:
            await stub.FleetStatus(fleet_pb2.FleetStatusRequest(), timeout=harness.RPC_TIMEOUT_S)
    except grpc.aio.AioRpcError as err:
        return f"FleetStatus for the whole fleet failed: {err.code().name}: {err.details()}"
    return ""


async def idle_agent(run: Run, hub: Hub) -> Figures:
    """One real edge-agent, enrolled with a join token: RSS and CPU% once it settled."""
    agent = await Agent.enroll(hub, "idle", IDLE_GROUP)
    try:

        async def check() -> tuple[bool | None, str]:
            if agent.proc is None or not agent.proc.alive():
                raise BenchError(f"{agent.name} exited; see {agent.directory / 'agent.log'}")
            state = (await hub.operator.view([IDLE_GROUP])).nodes.get(agent.name, "not seen")
            return (True if state == "online" else None), state

        await harness.wait_until(check, run.args.timeout, f"{agent.name} online", period_s=0.5)
        await asyncio.sleep(run.args.settle * 5)
        assert agent.proc is not None
        cpu0, w0 = agent.proc.cpu_s(), time.monotonic()
        await asyncio.sleep(run.args.window)
        cpu1, w1 = agent.proc.cpu_s(), time.monotonic()
        return {
            "agent_rss_mib": agent.proc.rss() / 2**20,
            "agent_cpu_pct": (cpu1 - cpu0) / (w1 - w0) * 100,
        }
    finally:
        await agent.stop()


def failures_note(side: Side, phase: str, delta: collections.Counter[str]) -> str:
    kinds = ", ".join(f"{kind} {count}" for kind, count in delta.most_common())
    return f"N={side.n} {side.name}: failed link attempts {phase}: {kinds or 'none'}"


async def registration(side: Side, pool: Workers) -> tuple[Figures, list[str]]:
    """Start the N agents (at once, or --ramp per second); time until all are registered."""
    t0 = time.time()
    await pool.connect(side.run.args.ramp)
    _, register_s = await side.registered(t0, f"{side.name}: registration")
    agent_s = await pool.all_connected(
        side.n, t0, side.run.args.timeout, f"{side.name}: agent view"
    )
    progress(f"{side.name}: {side.n} registered in {register_s:.2f}s")
    fails = (await pool.status()).fails
    figures = {
        "register_s": register_s,
        "register_agent_s": agent_s,
        "fails_register": fails.total(),
    }
    return figures, [failures_note(side, "during registration", fails)]


async def steady(side: Side, pool: Workers) -> tuple[Figures, list[str]]:
    """Server CPU per 1000 heartbeats while every agent heartbeats once a second; RSS."""
    if side.server is None:
        raise BenchError("no server")
    await asyncio.sleep(side.run.args.settle * 3)
    t_a, m_a = await side.messages()
    server_cpu0, workers_cpu0, w0 = side.server.cpu_s(), pool.cpu_s(), time.monotonic()
    sent0 = await pool.status()
    await asyncio.sleep(side.run.args.window)
    server_cpu1, workers_cpu1, w1 = side.server.cpu_s(), pool.cpu_s(), time.monotonic()
    sent1 = await pool.status()
    t_b, m_b = await side.messages()
    window = w1 - w0
    received = (m_b - m_a) / (t_b - t_a) * window
    sent = (sent1.heartbeats - sent0.heartbeats) / max(sent1.t - sent0.t, 1e-9) * window
    figures = {
        "hb_per_s": received / window,
        "cpu_per_1k_ms": (server_cpu1 - server_cpu0) / received * 1e6,
        "server_cpu_pct": (server_cpu1 - server_cpu0) / window * 100,
        "worker_cpu_per_1k_ms": (workers_cpu1 - workers_cpu0) / sent * 1e6,
        "rss_per_agent_kib": (side.server.rss() - side.rss0) / side.n / 1024,
    }
    return figures, []


async def extras(side: Side, pool: Workers) -> tuple[Figures, list[str]]:
    """What only one side measures (the idle edge-agent, the whole-fleet FleetStatus)."""
    return await side.extras()


async def restart(side: Side, pool: Workers) -> tuple[Figures, list[str]]:
    """SIGTERM the server, start it again on the same port and state; time until all back."""
    timeout, before = side.run.args.timeout, (await pool.status()).fails
    figures = {"down_s": await side.stop()}
    t_start = time.time()
    await side.start()
    figures["listen_s"] = await harness.listening(side.address, t_start, timeout)
    first, last = await side.registered(t_start, f"{side.name}: back after restart")
    figures["restart_first_s"], figures["restart_s"] = first, last
    figures["restart_agent_s"] = await pool.all_connected(
        side.n, t_start, timeout, f"{side.name}: back after restart (agent view)"
    )
    progress(f"{side.name}: all back in {last:.2f}s")
    fails = (await pool.status()).fails - before
    figures["fails_restart"] = fails.total()
    return figures, [failures_note(side, "from stop to all back", fails)]


async def run_side(side: Side) -> tuple[Figures, list[str]]:
    """One run of one side: start, register N, steady window, extras, restart."""
    run, n = side.run, side.n
    figures: Figures = {}
    notes: list[str] = []
    await side.start()
    pool: Workers | None = None
    try:
        await side.ready()
        await asyncio.sleep(run.args.settle)
        assert side.server is not None
        side.rss0 = side.server.rss()
        pool = await harness.simulated_agents(
            run, side.kind, n, side.address, side.hub, reconnect_max_s=run.args.reconnect_max_s
        )
        for phase in (registration, steady, extras, restart):
            more, more_notes = await phase(side, pool)
            figures |= more
            notes += more_notes
    except (BenchError, grpc.aio.AioRpcError) as exc:
        run.report.fail(f"N={n} {side.name}: {exc}")
        if pool is not None:
            notes.append(failures_note(side, "in all, until then", (await pool.status()).fails))
            await pool.dump_tasks()
    finally:
        if pool is not None and all(p.alive() for p in pool.procs):
            ended = (await pool.status()).ended
            figures["link_crashes"] = ended.total()
            notes += [
                f"N={n} {side.name}: an agent's link or safety ended {count} time(s), so the "
                f"agent process would exit (restarted after 2 s, like systemd): {why}"
                for why, count in ended.items()
            ]
        await side.stop()  # first: agents leaving all at once make work
        if pool is not None:
            await pool.stop()
        notes += [f"N={n} {side.name}: {what}" for what in run.children.stuck]
        run.children.stuck.clear()
    return figures, notes


async def prepared_hub(run: Run, n: int, k: int) -> Hub:
    """A fresh hub, its operator, N node certificates signed by its CA; left running."""
    hub = run.hub(f"hub-{n}-{k}")
    await hub.start_with_operator()
    took = await asyncio.to_thread(harness.write_node_certs, hub, harness.fleet_identities(n))
    progress(f"signed {n} node certificates in {took:.1f}s")
    return hub


async def scenario(run: Run) -> None:
    for n in run.args.agents:
        runs: list[dict[str, Figures]] = []
        notes: list[str] = []
        for k in range(run.args.repeat):
            hub = await prepared_hub(run, n, k)
            if run.args.side == "floor":
                await hub.stop()  # its CA and certificates serve the floor
            result: dict[str, Figures] = {"ours": {}, "floor": {}}
            for side in (Ours(run, hub, n), Floor(run, hub, n)):
                if run.args.side not in ("both", side.name):
                    continue
                progress(f"N={n} run {k + 1}/{run.args.repeat}: {side.name}")
                if quiet := await harness.wait_for_quiet(run, f"N={n} {side.name}"):
                    notes.append(quiet)
                window = harness.MachineWindow(run.children)
                result[side.name], side_notes = await run_side(side)
                result[side.name]["other_cpu_pct"] = window.stop().others_pct
                notes += side_notes
            await hub.close()
            runs.append(result)
        section = run.report.section(
            f"N={n} agents, {run.args.procs} worker processes, {run.args.repeat} run(s)"
        )
        for key, label, unit in FIGURES:
            ours = harness.summarize(r["ours"][key] for r in runs if key in r["ours"])
            floor = harness.summarize(r["floor"][key] for r in runs if key in r["floor"])
            section.add(label, unit, ours, floor)
        if run.args.repeat > 1:
            for key in PER_RUN:
                for name in ("ours", "floor"):
                    each = ", ".join(f"{r[name].get(key, float('nan')):.2f}" for r in runs)
                    notes.append(f"per run {key} {name}: {each}")
        section.notes += notes
        run.report.print_section(section)


def parser() -> argparse.ArgumentParser:
    p = harness.options(__doc__ or "")
    p.add_argument("--agents", type=at_least(1), nargs="+", default=[100], help="N (one or more)")
    p.add_argument("--procs", type=at_least(1), default=2, help="worker processes (default 2)")
    p.add_argument("--repeat", type=at_least(1), default=1, help="runs per N (default 1)")
    p.add_argument("--side", choices=("both", "ours", "floor"), default="both")
    p.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        metavar="R",
        help="start the N agents at R per second (default 0: all at once)",
    )
    p.add_argument(
        "--window", type=float, default=10.0, help="steady and idle windows (s, default 10)"
    )
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="settle before the server RSS baseline (s, default 1); 3x before the steady "
        "window, 5x before the idle agent's",
    )
    p.add_argument(
        "--reconnect-max-s",
        type=at_least(0.1, float),
        help="cap of the agents' reconnect backoff, both sides (default: the product's)",
    )
    return p


if __name__ == "__main__":
    sys.exit(harness.main(parser(), SMOKE, scenario))
