"""Simulated agents: one worker process holding many agents, each the product's own code.

    python bench/_agents.py SPEC.json

Each agent has its own state directory, as an enrolled edge-agent's: its node certificate
(signed by the hub's CA instead of an enrollment) and its SQLite state database (the durable
e-stop latch, WAL, synchronous=FULL). It runs the safety and hub link edge-agent runs,
built by the product's assembly (harness.simulated_agent_parts: agent.assemble's
build_local and build_link); the link has its own channel and mTLS connection. What
edge-agent has beyond that (local API, lease keeper, journal, renewal) is not run.

If an agent's link or safety loop ever ends, edge-agent would exit and systemd start it
again after RestartSec (2 s): the worker counts why, waits as long, and builds the agent's
parts anew from its state directory. Failed link attempts are counted by kind from the
link's own "link to hub down" warnings. The latch's durable commits and releases are timed
on the agents' clock (TimedStateDB).

Commands (bench/_worker.py's protocol): connect {rate}, status, latches {id}, rows {id}.
SIGUSR1 logs where every task waits (the driver sends it when a phase times out).
"""

import asyncio
import collections
import dataclasses
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import harness
from _worker import (
    Command,
    describe,
    failure_kind,
    load_spec,
    raise_nofile,
    serve_commands,
    start_ramped,
)

from agent.config import AgentConfig
from agent.link.status import HubState, LinkStatus
from agent.pki import credentials
from agent.state_db import AGENT_DB, AgentStateDB, LatchedStop
from edgecommon.clock import SystemClock
from edgecommon.daemon import setup_logging

AGENT_RESTART_S = 2.0  # edge-agent.service: Restart=on-failure, RestartSec=2s
log = logging.getLogger("bench.agents")


@dataclasses.dataclass
class StopTimes:
    """Wall times at which this worker's agents made a stop durable or removed it."""

    latched: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    released: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )


class TimedStateDB(AgentStateDB):
    """The product's state database, unchanged; notes when each latch and unlatch committed."""

    def __init__(self, path: Path, times: StopTimes) -> None:
        super().__init__(path)
        self.times = times

    async def latch(self, stop: LatchedStop) -> None:
        await super().latch(stop)
        self.times.latched[stop.stop_id].append(time.time())

    async def unlatch(self, stop_id: str) -> bool:
        removed = await super().unlatch(stop_id)
        if removed:
            self.times.released[stop_id].append(time.time())
        return removed


class FailureCounter(logging.Handler):
    """Counts the link's 'link to hub down: <why>' warnings by kind (_worker.FAILURE_KINDS)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.fails: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("link to hub down") and record.args:
            self.fails[failure_kind(str(record.args[0]))] += 1


@dataclasses.dataclass
class SimAgent:
    """One simulated agent: its name, configuration, database and current product parts."""

    name: str
    config: AgentConfig
    db: TimedStateDB
    parts: harness.SimulatedParts | None = None
    earlier_connects: int = 0  # connects of the parts a restart replaced

    @property
    def status(self) -> LinkStatus | None:
        return self.parts.local.status if self.parts else None

    @property
    def connected_since(self) -> float | None:
        status = self.status
        if status is None or status.state is not HubState.CONNECTED:
            return None
        return status.since_unix

    @property
    def connects(self) -> int:
        return self.earlier_connects + (self.status.connects if self.status is not None else 0)


@dataclasses.dataclass
class AgentPool:
    """The agents of one worker process and the commands the driver sends them."""

    spec: dict[str, Any]
    agents: list[SimAgent]
    times: StopTimes
    failures: FailureCounter
    ended: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    starter: asyncio.Task[list[asyncio.Task[None]]] | None = None

    async def supervise(self, agent: SimAgent, rng: random.Random) -> None:
        """Run the agent's link and safety loop; if either ends, do what systemd would do."""
        while True:
            if agent.status is not None:
                agent.earlier_connects += agent.status.connects
            agent.parts = await harness.simulated_agent_parts(
                agent.config, agent.db, SystemClock(), rng
            )
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(agent.parts.link.run())
                    tg.create_task(agent.parts.local.safety.run())
                why = "returned"
            except Exception as exc:  # see the docstring: the agent process would die here
                why = describe(exc)
                log.error("%s: link or safety ended: %s", agent.name, why, exc_info=exc)
            self.ended[why] += 1
            await asyncio.sleep(AGENT_RESTART_S)

    def status(self) -> Command:
        heartbeats = sum(a.status.heartbeats_sent for a in self.agents if a.status is not None)
        up = [since for a in self.agents if (since := a.connected_since) is not None]
        return {
            "t": time.time(),
            "connected": len(up),
            "last": max(up, default=0.0),
            "connects": sum(a.connects for a in self.agents),
            "heartbeats": heartbeats,
            "fails": dict(self.failures.fails),
            "ended": dict(self.ended),
        }

    def latches(self, stop_id: str) -> Command:
        """Who holds `stop_id` in memory, and when latches/releases of it were durable."""
        held = [a.parts.local.safety.stops for a in self.agents if a.parts]
        return {
            "holding": sum(stop_id in stops for stops in held),
            "holding_any": sum(bool(stops) for stops in held),
            "latched": len(self.times.latched[stop_id]),
            "last_latched": max(self.times.latched[stop_id], default=0.0),
            "released": len(self.times.released[stop_id]),
            "last_released": max(self.times.released[stop_id], default=0.0),
        }

    async def rows(self, stop_id: str) -> Command:
        """The latch read back from every agent's database (AgentStateDB.stops)."""
        stored = await asyncio.gather(*(a.db.stops() for a in self.agents))
        return {
            "with_stop": sum(any(s.stop_id == stop_id for s in rows) for rows in stored),
            "rows": sum(len(rows) for rows in stored),
        }

    async def handle(self, command: Command) -> Command:
        cmd = command["cmd"]
        if cmd == "connect":
            coros = [
                self.supervise(a, random.Random(self.spec["seed"] + i))
                for i, a in enumerate(self.agents)
            ]
            names = [f"agent-{a.name}" for a in self.agents]
            self.starter = asyncio.create_task(start_ramped(coros, command["rate"], names))
            return {"ok": True}
        if cmd == "status":
            return self.status()
        if cmd == "latches":
            return self.latches(command["id"])
        if cmd == "rows":
            return await self.rows(command["id"])
        return {"error": f"unknown command {cmd!r}"}


def await_chain(task: asyncio.Task[Any]) -> str:
    """Where a task is suspended: file:line of each coroutine down its await chain."""
    parts, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None)
        if frame is not None:
            parts.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None)
    return " > ".join(parts) or repr(task.get_coro())


def dump_tasks(agents: list[SimAgent]) -> None:
    """On SIGUSR1: where every task waits, and the first agents that are not connected."""
    chains = collections.Counter(await_chain(t) for t in asyncio.all_tasks())
    for chain, count in chains.most_common():
        log.warning("%d tasks at %s", count, chain)
    down = [a for a in agents if a.connected_since is None]
    for agent in down[:20]:
        status = agent.status
        if status is not None:
            log.warning(
                "%s is %s since %.3f: %s",
                agent.name,
                status.state,
                status.since_unix,
                status.last_error,
            )
    log.warning("%d of %d agents not connected", len(down), len(agents))


def enrolled_state_dir(state_dir: Path, certs: Path, name: str) -> None:
    """`state_dir` as enrollment leaves it: the node's key, certificate and CA bundle (from
    `certs`, where write_node_certs put them), hard-linked (the key keeps its mode 600)."""
    paths = credentials.CredentialPaths.under(state_dir)
    paths.key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for source, target in (
        (certs / f"{name}.key", paths.key),
        (certs / f"{name}.crt", paths.cert),
        (certs / "ca.crt", paths.bundle),
    ):
        target.unlink(missing_ok=True)
        os.link(source, target)


async def load_agent(spec: dict[str, Any], name: str, times: StopTimes) -> SimAgent:
    """The agent's own state directory, enrolled, and its database opened as edge-agent
    does on start (its credentials are read there each time its parts are built)."""
    state_dir = Path(spec["state_dir"]) / name
    enrolled_state_dir(state_dir, Path(spec["certs"]), name)
    config = harness.sim_agent_config(
        state_dir, spec["target"], spec["heartbeat_s"], spec["reconnect_max_s"]
    )
    db = TimedStateDB(state_dir / AGENT_DB, times)
    await db.open()
    return SimAgent(name, config, db)


async def agents_main(spec: dict[str, Any], failures: FailureCounter) -> None:
    times = StopTimes()
    agents = await asyncio.gather(*(load_agent(spec, name, times) for name in spec["names"]))
    pool = AgentPool(spec, list(agents), times, failures)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks, pool.agents)
    await serve_commands(pool.handle)
    sys.stdout.flush()
    os._exit(0)  # thousands of live channels make an orderly exit slow


def main() -> None:
    spec = load_spec(sys.argv[1])
    raise_nofile()
    os.nice(spec.get("nice", 0))
    setup_logging(spec["log_level"])  # as edge-agent: to stderr, here the worker's log file
    failures = FailureCounter()
    logging.getLogger("edge-agent.link").addHandler(failures)
    asyncio.run(agents_main(spec, failures))


if __name__ == "__main__":
    main()
