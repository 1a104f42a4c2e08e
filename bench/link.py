"""Benchmark the agent link at fleet scale against a real hub, next to the bare-gRPC floor.

    .venv/bin/python bench/link.py --agents N [N ...] [--procs P] [--repeat K] [--json]
        [--ramp R] [--side both|ours|floor] [--timeout S] [--keep] [--py-spy PATH]

For each N, K times each:

ours   a real hub process (`python -m hub.main`) and N simulated agents spread over P
       worker processes, each agent a real `agent.link.HubLink` with its own channel,
       its own mTLS connection and its own node certificate signed by the hub's CA
       (signed here, instead of N enrollments); plus one real `python -m agent.main`,
       enrolled with a join token, measured idle.
floor  bench/_bare.py: a minimal grpc.aio bidi server and minimal clients with the same
       certificates, keepalive options, heartbeat period and reconnect backoff shape,
       and no product code.

Phases of a run: start the server; start all N agents at once (or R per second with
--ramp) and time until all are registered; a 10 s steady window (server CPU per 1000
heartbeats, server RSS per agent); the idle edge-agent (ours only); then SIGTERM the
server, start it again on the same port and state, and time until all N are back. The
table gives both sides and ours/floor; with K > 1 each cell is median / p99 / max. The
notes say why link attempts failed, and anything that went wrong.

Times come from the timestamps each side records (the hub's state_since per node from
Fleet.FleetStatus, the bare server's, the agents' own), so polling only delays
detection. HubLink.run() should never end: if it raises, edge-agent would exit and
systemd restart it after 2 s; the bench counts it, logs the traceback in the worker log
and starts a new HubLink after 2 s. Every wait is bounded (--timeout per phase); every
child process is stopped and the temporary directory removed at the end, also on
Ctrl-C (--keep keeps it, with all logs). Loopback only. The hub, the workers and the
idle agent share this machine's cores: at large N the simulated agents' own CPU is
part of what limits the result (see the agent-side CPU row).

The product is imported from wherever Python finds it (the editable install, i.e. the
working tree). To measure a commit while the tree has work in progress:

    git archive HEAD | tar -x -C /tmp/edge-head
    PYTHONPATH=/tmp/edge-head .venv/bin/python bench/link.py --agents 100
"""

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil
from _bare import (
    FAILURES,
    emit,
    failure_kind,
    raise_nofile,
    report,
    start_ramped,
    stdin_reader,
    wait_for_go,
)
from cryptography.hazmat.primitives import serialization

from agent import credentials
from agent.config import AgentConfig, AgentSection
from agent.link import HubLink
from agent.status import HubState, LinkStatus
from agent.telemetry import Telemetry
from edgecommon import config as config_loader
from edgecommon import grpcopts, pki
from edgecommon.clock import SystemClock
from edgecommon.daemon import LOG_FORMAT
from edgecommon.identity import Identity, Kind
from edgecommon.pb import fleet_pb2, fleet_pb2_grpc
from edgectl.devfleet import free_port
from hub.admin import issue_bootstrap_credential
from hub.config import HubConfig
from hub.credentials import CredentialPaths, load_ca

try:  # since the emergency-stop work (31c5f49) HubLink also takes the node's Safety
    from agent.config import SafetySection
    from agent.permits import PermitTable
    from agent.safety import Safety
    from agent.state_db import AgentStateDB
    from edgecommon.autonomy_file import SwitchFile

    LINK_NEEDS_SAFETY = True
except ImportError:  # before it: HubLink(config, creds, status, telemetry, rng)
    LINK_NEEDS_SAFETY = False

try:  # since agent/assemble.py HubLink takes its handler table and heartbeat parts too
    from agent.hub_messages import Handlers, Reply
    from agent.link import LinkCredentials

    LINK_TAKES_HANDLERS = True
except ImportError:  # before it: HubLink(config, creds, status, telemetry, safety, rng)
    LINK_TAKES_HANDLERS = False

BENCH_DIR = Path(__file__).resolve().parent
GROUP_SIZE = 500  # nodes per group: FleetStatus answers are capped at 256 KiB
IDLE_GROUP = "idle"
POLL_S = 0.5
SETTLE_S = 1.0
STEADY_SETTLE_S = 3.0
STEADY_WINDOW_S = 10.0
IDLE_SETTLE_S = 5.0
IDLE_WINDOW_S = 10.0
STOP_TIMEOUT_S = 20.0  # edge-hub.service: TimeoutStopSec=20s, then SIGKILL
AGENT_RESTART_S = 2.0  # edge-agent.service: Restart=on-failure, RestartSec=2s
RPC_TIMEOUT_S = 10.0
QUIET_PCT = 20.0  # other processes' CPU (% of a core) below which a run may start
QUIET_WAIT_S = 120.0
T = TypeVar("T")
log = logging.getLogger("bench.link")
LINKS_ENDED: collections.Counter[str] = collections.Counter()  # in a worker: why links died


class BenchTimeout(Exception):
    """A phase did not finish within its bound; the message says how far it got."""


# --- child processes ---------------------------------------------------------------------


@dataclasses.dataclass
class Proc:
    """A child process; with `piped`, its JSON status lines are followed into `latest`."""

    name: str
    process: asyncio.subprocess.Process
    started: float = 0.0  # psutil create_time: a reused pid is never mistaken for it
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    latest: dict[str, Any] = dataclasses.field(default_factory=dict)
    follower: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.returncode is None

    async def follow(self) -> None:
        if self.process.stdout is None:
            return
        async for line in self.process.stdout:
            message = json.loads(line)
            if message.get("ready"):
                self.ready.set()
            else:
                self.latest = message

    def send(self, line: str) -> None:
        if self.process.stdin is not None and self.alive():
            self.process.stdin.write(line.encode() + b"\n")

    def cpu_s(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss


class Children:
    """Every process the bench started, so that all of them are stopped whatever happens.

    They run in `cwd` (the bench's temp dir), not in the project: `python -m` puts its
    working directory first on sys.path, and PYTHONPATH must be able to point the children
    at another copy of the product (see the module docstring).
    """

    def __init__(self, cwd: Path, py_spy: str = "") -> None:
        self.cwd = cwd
        self.py_spy = py_spy
        self.procs: list[Proc] = []
        self.stuck: list[str] = []  # what did not stop in time, for the report
        self.dumped = False  # py-spy wrote stacks into cwd: keep it

    async def spawn(self, name: str, argv: list[str], log_file: Path, piped: bool = False) -> Proc:
        with log_file.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if piped else out,
                stderr=out,
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops them
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        proc = Proc(name, process, psutil.Process(process.pid).create_time())
        if piped:
            proc.follower = asyncio.create_task(proc.follow(), name=f"follow-{name}")
        self.procs.append(proc)
        return proc

    async def stop(self, proc: Proc, timeout_s: float = STOP_TIMEOUT_S) -> float:
        """SIGTERM (and close stdin), SIGKILL after `timeout_s`; seconds until it exited."""
        started = time.monotonic()
        if proc.alive():
            if proc.process.stdin is not None:
                proc.process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.process.wait(), timeout_s)
            except TimeoutError:
                where = await self.dump_stacks(proc)
                self.stuck.append(f"{proc.name} did not stop in {timeout_s:.0f}s{where}")
                log.warning("%s did not stop in %.0fs: killing it", proc.name, timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                await proc.process.wait()
        if proc.follower is not None:
            proc.follower.cancel()
        if proc in self.procs:
            self.procs.remove(proc)
        return time.monotonic() - started

    async def dump_stacks(self, proc: Proc) -> str:
        """With --py-spy: the stuck process's thread stacks, in a file next to its log."""
        if not self.py_spy:
            return ""
        out = self.cwd / f"{proc.name}-{proc.pid}-stacks.txt"
        with out.open("wb") as f:
            dump = await asyncio.create_subprocess_exec(
                self.py_spy, "dump", "--locals", "--pid", str(proc.pid), stdout=f, stderr=f
            )
            try:
                await asyncio.wait_for(dump.wait(), 30.0)
            except TimeoutError:
                dump.kill()
                await dump.wait()
        self.dumped = True
        return f" (py-spy stacks: {out})"

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(p, 5.0) for p in list(self.procs)))

    def kill_leftovers(self) -> None:
        """Last resort outside the event loop: SIGKILL whatever of ours still runs."""
        for proc in self.procs:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if abs(psutil.Process(proc.pid).create_time() - proc.started) < 0.01:
                    os.kill(proc.pid, signal.SIGKILL)


async def wait_until(
    check: Callable[[], Awaitable[tuple[T | None, str]]], timeout_s: float, what: str
) -> T:
    """Call `check` every POLL_S until it returns a value; BenchTimeout with its last word."""
    deadline = time.monotonic() + timeout_s
    progress = "no answer yet"
    while time.monotonic() < deadline:
        value, progress = await check()
        if value is not None:
            return value
        await asyncio.sleep(POLL_S)
    raise BenchTimeout(f"{what}: not done after {timeout_s:g}s ({progress})")


# --- certificates ------------------------------------------------------------------------


def node_name(i: int) -> str:
    return f"n{i:05d}"


def node_group(i: int) -> str:
    return f"g{i // GROUP_SIZE:02d}"


def groups_for(n: int) -> list[str]:
    return sorted({node_group(i) for i in range(n)})


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def key_pem(key: pki.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_node_certs(hub_state: Path, certs: Path, n: int, trust_domain: str) -> float:
    """Sign N node certificates with the hub's CA (instead of N enrollments); seconds taken."""
    started = time.monotonic()
    ca_key, ca_cert = load_ca(CredentialPaths.under(hub_state))
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "ca.crt").write_bytes(pki.pem(ca_cert))
    now = dt.datetime.now(dt.UTC)
    for i in range(n):
        name = node_name(i)
        if (certs / f"{name}.crt").exists():
            continue
        key = pki.generate_key()
        identity = Identity(Kind.NODE, name, node_group(i))
        cert = pki.issue_for_key(
            ca_key, ca_cert, key, identity, trust_domain, now, dt.timedelta(hours=72)
        )
        write_private(certs / f"{name}.key", key_pem(key))
        (certs / f"{name}.crt").write_bytes(pki.pem(cert))
    return time.monotonic() - started


# --- the hub, as an operator sees it -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FleetView:
    """What Fleet.FleetStatus says about some groups at `hub_time` (wall clock)."""

    online: int
    first_online: float  # earliest state_since of an online node
    last_online: float  # latest state_since of an online node
    heartbeat_seq: int  # sum of the last heartbeat's seq over connected nodes
    hub_time: float
    nodes: dict[str, str]  # node id -> state


class Operator:
    """The bench's operator credential and the Fleet calls it makes."""

    def __init__(self, target: str, key: bytes, cert: bytes, ca: bytes) -> None:
        self.target = target
        self.creds = grpc.ssl_channel_credentials(ca, key, cert)

    @classmethod
    async def bootstrap(cls, config: HubConfig) -> "Operator":
        key, cert_pem, ca_pem = await issue_bootstrap_credential(config, "bench")
        return cls(config.hub.listen, key_pem(key), cert_pem, ca_pem)

    @contextlib.asynccontextmanager
    async def fleet(self) -> Any:
        # A fresh channel per use: a hub restart must not leave us waiting on grpc's backoff.
        options = grpcopts.client_options(private_connection=True)
        async with grpc.aio.secure_channel(self.target, self.creds, options=options) as channel:
            yield fleet_pb2_grpc.FleetStub(channel)

    async def view(self, groups: list[str]) -> FleetView:
        online, first, last, seq, hub_time, nodes = 0, math.inf, 0.0, 0, 0.0, {}
        async with self.fleet() as stub:
            for group in groups:
                try:
                    answer = await stub.FleetStatus(
                        fleet_pb2.FleetStatusRequest(group=group), timeout=RPC_TIMEOUT_S
                    )
                except grpc.aio.AioRpcError as err:
                    if err.code() is grpc.StatusCode.NOT_FOUND:  # no node of it seen yet
                        continue
                    raise
                online += answer.online
                hub_time = max(hub_time, answer.hub_time_unix)
                for node in answer.nodes:
                    nodes[node.node_id] = node.state
                    if node.state == "online":
                        first = min(first, node.state_since_unix)
                        last = max(last, node.state_since_unix)
                        seq += node.metrics.heartbeat_seq
        return FleetView(online, first, last, seq, hub_time, nodes)

    async def whole_fleet_problem(self) -> str:
        """'' if FleetStatus for the whole fleet (what `edgectl fleet status` asks) works."""
        try:
            async with self.fleet() as stub:
                await stub.FleetStatus(fleet_pb2.FleetStatusRequest(), timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            return f"FleetStatus for the whole fleet failed: {err.code().name}: {err.details()}"
        return ""

    async def join_token(self, node: str, group: str) -> str:
        async with self.fleet() as stub:
            answer = await stub.CreateJoinToken(
                fleet_pb2.CreateJoinTokenRequest(node_id=node, group=group, ttl_s=600),
                timeout=RPC_TIMEOUT_S,
            )
        return answer.token


async def hub_registered(
    operator: Operator, groups: list[str], n: int, since: float, timeout_s: float, what: str
) -> tuple[float, float]:
    """Seconds from `since` until the hub saw the first and all `n` nodes of `groups` online."""

    async def check() -> tuple[tuple[float, float] | None, str]:
        try:
            view = await operator.view(groups)
        except grpc.aio.AioRpcError as err:
            return None, f"hub answers {err.code().name}"
        if view.online >= n and view.first_online >= since:
            return (view.first_online - since, view.last_online - since), "done"
        return None, f"{view.online}/{n} online"

    return await wait_until(check, timeout_s, what)


# --- the workers: N simulated agents in P processes -------------------------------------


class Pool:
    """P worker processes of one kind ('agents' = product HubLinks, 'clients' = bare)."""

    def __init__(self, children: Children, procs: list[Proc], n: int, server: Proc) -> None:
        self.children = children
        self.procs = procs
        self.n = n
        self.server = server  # the server they talk to (replaced when it is restarted)

    @classmethod
    async def start(cls, bench: "Bench", kind: str, target: str, n: int, server: Proc) -> "Pool":
        names = [node_name(i) for i in range(n)]
        chunks = [names[w :: bench.args.procs] for w in range(bench.args.procs)]
        procs = []
        for w, chunk in enumerate(chunks):
            spec = {
                "target": target,
                "certs": str(bench.certs),
                "names": chunk,
                "seed": w * 1_000_003 + n,
                "state_dir": str(bench.root),
                "log": str(bench.root / f"{kind}-{w}.log"),
                "client_options": grpcopts.client_options(private_connection=True),
            }
            spec_file = bench.root / f"{kind}-{w}.json"
            spec_file.write_text(json.dumps(spec))
            argv = worker_argv(kind, spec_file)
            log_file = bench.root / f"{kind}-{w}.stderr"
            procs.append(await bench.children.spawn(f"{kind}-{w}", argv, log_file, piped=True))
        pool = cls(bench.children, procs, n, server)
        ready = asyncio.gather(*(p.ready.wait() for p in procs))
        try:
            await asyncio.wait_for(ready, bench.args.timeout)
        except TimeoutError:
            raise BenchTimeout(f"{kind} workers not ready after {bench.args.timeout:g}s") from None
        return pool

    def go(self, rate_per_s: float) -> None:
        """Start the agents: all at once (0) or `rate_per_s` per second in total."""
        for proc in self.procs:
            proc.send(f"go {rate_per_s / len(self.procs)}")

    def total(self, key: str) -> float:
        return sum(p.latest.get(key, 0) for p in self.procs)

    def sample(self, key: str) -> tuple[float, float]:
        """(time, sum of `key`) over the workers' latest status lines."""
        return max(p.latest.get("t", 0.0) for p in self.procs), self.total(key)

    def cpu_s(self) -> float:
        return sum(p.cpu_s() for p in self.procs)

    def failures(self) -> collections.Counter[str]:
        """Failed link attempts by kind, over all workers, so far."""
        total: collections.Counter[str] = collections.Counter()
        for proc in self.procs:
            total.update(proc.latest.get("fails", {}))
        return total

    def links_ended(self) -> collections.Counter[str]:
        """Why simulated agents' HubLink.run() ended, over all workers (should be empty)."""
        ended: collections.Counter[str] = collections.Counter()
        for proc in self.procs:
            ended.update(proc.latest.get("ended", {}))
        return ended

    async def all_connected(self, since: float, timeout_s: float, what: str) -> float:
        """Seconds from `since` until every agent said it was connected (the agents' view)."""

        async def check() -> tuple[float | None, str]:
            dead = [p.name for p in self.procs if not p.alive()]
            if dead:
                raise BenchTimeout(f"{what}: worker {', '.join(dead)} exited")
            last = max(p.latest.get("last", 0.0) for p in self.procs)
            connected = int(self.total("c"))
            if connected >= self.n and last >= since:
                return last - since, "done"
            return None, f"{connected}/{self.n} connected"

        return await wait_until(check, timeout_s, what)

    async def dump_tasks(self) -> None:
        """Ask the workers to log where their tasks wait (see dump_tasks); give them a moment."""
        for proc in self.procs:
            if proc.alive():
                proc.process.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1.0)

    async def stop(self) -> None:
        await asyncio.gather(*(self.children.stop(p, 10.0) for p in self.procs))


def worker_argv(kind: str, spec_file: Path) -> list[str]:
    if kind == "agents":
        return [sys.executable, str(BENCH_DIR / "link.py"), "_agents", str(spec_file)]
    return [sys.executable, str(BENCH_DIR / "_bare.py"), "clients", str(spec_file)]


@dataclasses.dataclass
class SimAgent:
    """One simulated agent in a worker: its name, its certificate, its current link status."""

    name: str
    creds: credentials.NodeCredentials
    status: LinkStatus
    db: Any = None  # its own AgentStateDB (durable e-stop latch), where HubLink needs one


def agents_status(agents: list[SimAgent]) -> dict[str, Any]:
    up = [a.status.since_unix for a in agents if a.status.state is HubState.CONNECTED]
    return {
        "t": time.time(),
        "c": len(up),
        "last": max(up, default=0.0),
        "n": sum(a.status.connects for a in agents),
        "hb": sum(a.status.heartbeats_sent for a in agents),
        "ended": dict(LINKS_ENDED),
        "fails": dict(FAILURES),
    }


class FailureCounter(logging.Handler):
    """Counts the agent's 'link to hub down: <why>' warnings by kind (see _bare.FAILURE_KINDS)."""

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("link to hub down") and record.args:
            FAILURES[failure_kind(str(record.args[0]))] += 1


async def supervise(agent: SimAgent, config: AgentConfig, rng: random.Random) -> None:
    """Run the agent's real HubLink; if run() ever ends, do what systemd would do.

    HubLink.run() is meant to run forever. In edge-agent an exception out of it ends the
    process, and systemd starts it again after RestartSec (edge-agent.service: 2 s), with
    fresh state. Here: count and log why it ended, wait AGENT_RESTART_S, start a new one.
    """
    while True:
        link = await new_link(agent, config, rng)
        try:
            await link.run()
            why = "returned"
        except Exception as exc:  # see the docstring: the agent process would die here
            why = describe(exc)
            log.error("%s: HubLink.run() ended: %s", agent.name, why, exc_info=exc)
        LINKS_ENDED[why] += 1
        agent.status = LinkStatus(SystemClock(), config.agent.hub)  # a new process
        await asyncio.sleep(AGENT_RESTART_S)


def describe(exc: BaseException) -> str:
    """An exception in one line, exception groups flattened to their leaves."""
    if isinstance(exc, BaseExceptionGroup):
        return "[" + ", ".join(describe(e) for e in exc.exceptions) + "]"
    return f"{type(exc).__name__}({str(exc)[:120]!r})"


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
    """On SIGUSR1 (the driver sends it when a phase times out): where every task waits."""
    chains = collections.Counter(await_chain(t) for t in asyncio.all_tasks())
    for chain, count in chains.most_common():
        log.warning("%d tasks at %s", count, chain)
    down = [a for a in agents if a.status.state is not HubState.CONNECTED]
    for agent in down[:20]:
        status = agent.status
        log.warning(
            "%s is %s since %.3f: %s",
            agent.name,
            status.state,
            status.since_unix,
            status.last_error,
        )
    log.warning("%d of %d agents not connected", len(down), len(agents))


async def new_link(agent: SimAgent, config: AgentConfig, rng: random.Random) -> HubLink:
    """A HubLink as edge-agent builds one: with a fresh Safety over the agent's own database.

    The Safety's cadence loop (switch file, hub-loss timer) is not run: it is not link code.
    """
    telemetry = Telemetry.start(config.agent.state_dir)
    if not LINK_NEEDS_SAFETY:
        return HubLink(config, agent.creds, agent.status, telemetry, rng)  # type: ignore[call-arg]
    switch = SwitchFile(config.safety.node_switch_file, config.safety.switch_default)
    if not LINK_TAKES_HANDLERS:
        safety = Safety(  # type: ignore[call-arg]
            agent.db,
            switch,
            SystemClock(),
            config.safety,
            PermitTable(),
            config.link.startup_sync_timeout_s,
        )
        await safety.load()
        return HubLink(config, agent.creds, agent.status, telemetry, safety, rng)  # type: ignore[call-arg]
    safety = Safety(
        agent.db,
        switch,
        SystemClock(),
        config.safety,
        PermitTable(),
        config.link.startup_sync_timeout_s,
        lambda: None,  # a simulated agent leads nothing
    )
    await safety.load()
    return HubLink(
        config,
        LinkCredentials(agent.creds, agent.status, config.renewal.handover_timeout_s),
        agent.status,
        telemetry,
        safety,
        # It runs no lease keeper, journal or revocation list: their messages are dropped.
        Handlers((safety.hub_handlers(), dict.fromkeys(NOT_SIMULATED, drop))),
        (safety.add_to_heartbeat,),
        never_reenrolls,
        rng,
    )


NOT_SIMULATED = ("lease_nudge", "replication", "revocations")


async def drop(body: object, reply: "Reply") -> None:
    """What a simulated agent does with a message for a part it does not run."""


async def never_reenrolls() -> bool:
    return False


def agent_config(spec: dict[str, Any]) -> AgentConfig:
    state_dir = Path(spec["state_dir"])
    sections: dict[str, Any] = {"agent": AgentSection(state_dir=state_dir, hub=spec["target"])}
    if LINK_NEEDS_SAFETY:  # no switch file: the node switch takes its default
        sections["safety"] = SafetySection(node_switch_file=state_dir / "no-switch.yaml")
    return AgentConfig(**sections)


async def load_agents(spec: dict[str, Any]) -> list[SimAgent]:
    """Each simulated agent's credentials (and state database), loaded before the start."""
    certs, state_dir = Path(spec["certs"]), Path(spec["state_dir"])
    agents = [
        SimAgent(
            name,
            credentials.load(
                credentials.CredentialPaths(
                    certs / f"{name}.key", certs / f"{name}.crt", certs / "ca.crt"
                )
            ),
            LinkStatus(SystemClock(), spec["target"]),
        )
        for name in spec["names"]
    ]
    if LINK_NEEDS_SAFETY:
        (state_dir / "agents").mkdir(exist_ok=True)
        for agent in agents:
            agent.db = AgentStateDB(state_dir / "agents" / f"{agent.name}.db")
        await asyncio.gather(*(agent.db.open() for agent in agents))
    return agents


async def agents_main(spec: dict[str, Any]) -> None:
    """A worker process: one real HubLink per name, each with its own channel and certificate."""
    config = agent_config(spec)
    agents = await load_agents(spec)
    commands = await stdin_reader()
    emit({"ready": True})
    rate = await wait_for_go(commands)
    if rate is None:
        return
    reporter = asyncio.create_task(report(lambda: agents_status(agents)))
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks, agents)
    coros = [supervise(a, config, random.Random(spec["seed"] + i)) for i, a in enumerate(agents)]
    tasks = await start_ramped(coros, rate, [f"agent-{a.name}" for a in agents])
    await commands.readline()  # "stop" or EOF
    reporter.cancel()
    sys.stdout.flush()
    del tasks
    os._exit(0)  # thousands of live channels make an orderly exit slow


def run_worker(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    raise_nofile()
    logging.basicConfig(filename=spec["log"], level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("edge-agent.link").addHandler(FailureCounter())
    asyncio.run(agents_main(spec))


# --- one run -----------------------------------------------------------------------------


@dataclasses.dataclass
class Bench:
    """Everything shared by the runs of one invocation."""

    args: argparse.Namespace
    root: Path
    children: Children
    hub_config_file: Path
    hub_config: HubConfig
    certs: Path
    bare_port: int
    operator_: Operator | None = None
    idle_agents: int = 0

    @property
    def operator(self) -> Operator:
        if self.operator_ is None:
            raise RuntimeError("no operator credential before the first hub start")
        return self.operator_

    @property
    def hub_state(self) -> Path:
        return self.hub_config.hub.state_dir

    async def start_hub(self) -> Proc:
        argv = [sys.executable, "-m", "hub.main", "--config", str(self.hub_config_file)]
        return await self.children.spawn("hub", argv, self.root / "hub.log")

    async def start_bare_server(self) -> Proc:
        pki_dir = self.hub_state / "pki"
        spec = {
            "listen": f"127.0.0.1:{self.bare_port}",
            "key": str(pki_dir / "hub.key"),
            "cert": str(pki_dir / "hub.crt"),
            "ca": str(pki_dir / "ca.crt"),
            "server_options": grpcopts.server_options(),
        }
        spec_file = self.root / "bare-server.json"
        spec_file.write_text(json.dumps(spec))
        argv = [sys.executable, str(BENCH_DIR / "_bare.py"), "server", str(spec_file)]
        return await self.children.spawn("bare-server", argv, self.root / "bare.log", piped=True)

    def wipe_state(self) -> None:
        """A fresh hub database (the CA stays) and fresh simulated-agent databases."""
        for path in self.hub_state.glob("hub.db*"):
            path.unlink()
        shutil.rmtree(self.root / "agents", ignore_errors=True)


async def hub_ready(bench: Bench, hub: Proc) -> None:
    operator = bench.operator

    async def check() -> tuple[bool | None, str]:
        if not hub.alive():
            raise BenchTimeout(f"hub exited; see {bench.root / 'hub.log'}")
        try:
            await operator.view([IDLE_GROUP])
        except grpc.aio.AioRpcError as err:
            return None, err.code().name
        return True, "ready"

    await wait_until(check, bench.args.timeout, "hub start")


async def steady_window(
    server: Proc, pool: Pool, messages: Callable[[], Awaitable[tuple[float, float]]]
) -> dict[str, float]:
    """Server CPU per 1000 heartbeats while every agent heartbeats once a second."""
    await asyncio.sleep(STEADY_SETTLE_S)
    t_a, m_a = await messages()
    server_cpu0, workers_cpu0, w0 = server.cpu_s(), pool.cpu_s(), time.monotonic()
    hb0 = pool.sample("hb")
    await asyncio.sleep(STEADY_WINDOW_S)
    server_cpu1, workers_cpu1, w1 = server.cpu_s(), pool.cpu_s(), time.monotonic()
    hb1 = pool.sample("hb")
    t_b, m_b = await messages()
    window = w1 - w0
    received = (m_b - m_a) / (t_b - t_a) * window
    sent = (hb1[1] - hb0[1]) / max(hb1[0] - hb0[0], 1e-9) * window
    return {
        "hb_per_s": received / window,
        "cpu_per_1k_ms": (server_cpu1 - server_cpu0) / received * 1e6,
        "server_cpu_pct": (server_cpu1 - server_cpu0) / window * 100,
        "worker_cpu_per_1k_ms": (workers_cpu1 - workers_cpu0) / sent * 1e6,
    }


def write_agent_toml(bench: Bench, directory: Path, token: str) -> Path:
    directory.mkdir(parents=True)
    token_file = directory / "join-token"
    write_private(token_file, token.encode() + b"\n")
    hub = bench.hub_config.hub
    config = directory / "agent.toml"
    config.write_text(
        "[agent]\n"
        f'state_dir = "{directory / "state"}"\n'
        f'hub = "{hub.listen}"\nenroll_address = "{hub.enroll_listen}"\n'
        f'join_token_file = "{token_file}"\n'
        f'socket = "{directory / "a.sock"}"\n'
    )
    return config


async def idle_agent(bench: Bench) -> dict[str, float]:
    """One real edge-agent, enrolled with a join token: RSS and CPU% once it settled."""
    bench.idle_agents += 1
    node = f"idle-{bench.idle_agents}"
    token = await bench.operator.join_token(node, IDLE_GROUP)
    directory = bench.root / node
    config = write_agent_toml(bench, directory, token)
    argv = [sys.executable, "-m", "agent.main", "--config", str(config)]
    agent = await bench.children.spawn(node, argv, directory / "agent.log")
    try:

        async def check() -> tuple[bool | None, str]:
            if not agent.alive():
                raise BenchTimeout(f"{node} exited; see {directory / 'agent.log'}")
            view = await bench.operator.view([IDLE_GROUP])
            state = view.nodes.get(node, "not seen")
            return (True if state == "online" else None), state

        await wait_until(check, bench.args.timeout, f"{node} online")
        await asyncio.sleep(IDLE_SETTLE_S)
        cpu0, w0 = agent.cpu_s(), time.monotonic()
        await asyncio.sleep(IDLE_WINDOW_S)
        cpu1, w1 = agent.cpu_s(), time.monotonic()
        return {
            "agent_rss_mib": agent.rss() / 2**20,
            "agent_cpu_pct": (cpu1 - cpu0) / (w1 - w0) * 100,
        }
    finally:
        await bench.children.stop(agent)


class Side:
    """What differs between the product and the floor; run_side does the same phases on both."""

    name = ""
    workers = ""  # worker kind: "agents" (HubLink) or "clients" (bare)

    def __init__(self, bench: Bench, n: int) -> None:
        self.bench, self.n = bench, n
        self.rss0 = 0  # server RSS before any agent connected

    @property
    def address(self) -> str:
        raise NotImplementedError

    async def start(self) -> Proc:
        raise NotImplementedError

    async def ready(self, server: Proc) -> None:
        raise NotImplementedError

    async def registered(self, server: Proc, since: float, what: str) -> tuple[float, float]:
        """Seconds from `since` until the server saw the first and all N agents registered."""
        raise NotImplementedError

    async def messages(self, server: Proc) -> tuple[float, float]:
        """(wall time, heartbeats received so far) as the server counts them."""
        raise NotImplementedError

    async def extras(self) -> tuple[dict[str, float], list[str]]:
        """Figures measured only on this side, while the N agents are connected."""
        return {}, []


class Ours(Side):
    """The real hub process; the hub's view comes from Fleet.FleetStatus."""

    name, workers = "ours", "agents"

    @property
    def address(self) -> str:
        return self.bench.hub_config.hub.listen

    async def start(self) -> Proc:
        return await self.bench.start_hub()

    async def ready(self, server: Proc) -> None:
        await hub_ready(self.bench, server)

    async def registered(self, server: Proc, since: float, what: str) -> tuple[float, float]:
        groups, timeout = groups_for(self.n), self.bench.args.timeout
        return await hub_registered(self.bench.operator, groups, self.n, since, timeout, what)

    async def messages(self, server: Proc) -> tuple[float, float]:
        view = await self.bench.operator.view(groups_for(self.n))
        return view.hub_time, view.heartbeat_seq

    async def extras(self) -> tuple[dict[str, float], list[str]]:
        problem = await self.bench.operator.whole_fleet_problem()
        notes = [f"N={self.n} ours: {problem}"] if problem else []
        progress("ours: idle edge-agent")
        return await idle_agent(self.bench), notes


class Floor(Side):
    """The bare server of _bare.py; its view comes from its status lines."""

    name, workers = "floor", "clients"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.bench.bare_port}"

    async def start(self) -> Proc:
        return await self.bench.start_bare_server()

    async def ready(self, server: Proc) -> None:
        async def check() -> tuple[bool | None, str]:
            if not server.alive():
                raise BenchTimeout(f"bare server exited; see {self.bench.root / 'bare.log'}")
            return (True if server.latest else None), "no status yet"

        await wait_until(check, self.bench.args.timeout, "bare server start")

    async def registered(self, server: Proc, since: float, what: str) -> tuple[float, float]:
        async def check() -> tuple[tuple[float, float] | None, str]:
            if not server.alive():
                raise BenchTimeout(f"{what}: bare server exited")
            status = server.latest
            if status.get("reg", 0) >= self.n and status.get("first", 0.0) >= since:
                return (status["first"] - since, status["last"] - since), "done"
            return None, f"{status.get('reg', 0)}/{self.n} registered"

        return await wait_until(check, self.bench.args.timeout, what)

    async def messages(self, server: Proc) -> tuple[float, float]:
        return server.latest["t"], server.latest["msgs"]


def failures_note(n: int, side: str, phase: str, delta: collections.Counter[str]) -> str:
    kinds = ", ".join(f"{kind} {count}" for kind, count in delta.most_common())
    return f"N={n} {side}: failed link attempts {phase}: {kinds or 'none'}"


async def registration(side: Side, pool: Pool) -> tuple[dict[str, float], list[str]]:
    """Start the N agents (at once, or --ramp per second); time until all are registered."""
    t0 = time.time()
    pool.go(side.bench.args.ramp)
    _, register_s = await side.registered(pool.server, t0, f"{side.name}: registration")
    agent_s = await pool.all_connected(t0, side.bench.args.timeout, f"{side.name}: agent view")
    progress(f"{side.name}: {side.n} registered in {register_s:.2f}s")
    fails = pool.failures()
    figures = {
        "register_s": register_s,
        "register_agent_s": agent_s,
        "fails_register": fails.total(),
    }
    return figures, [failures_note(side.n, side.name, "during registration", fails)]


async def restart(side: Side, pool: Pool) -> tuple[dict[str, float], list[str]]:
    """SIGTERM the server, start it again on the same port and state; time until all back."""
    timeout, before = side.bench.args.timeout, pool.failures()
    figures = {"down_s": await side.bench.children.stop(pool.server)}
    t_start = time.time()
    pool.server = await side.start()
    figures["listen_s"] = await listening(side.address, t_start, timeout)
    first, last = await side.registered(pool.server, t_start, f"{side.name}: back after restart")
    figures["restart_first_s"], figures["restart_s"] = first, last
    figures["restart_agent_s"] = await pool.all_connected(
        t_start, timeout, f"{side.name}: back after restart (agent view)"
    )
    progress(f"{side.name}: all back in {last:.2f}s")
    fails = pool.failures() - before
    figures["fails_restart"] = fails.total()
    return figures, [failures_note(side.n, side.name, "from stop to all back", fails)]


async def run_side(side: Side) -> tuple[dict[str, float], list[str]]:
    """One run of one side: start, register N, steady window, extras, restart."""
    bench, n = side.bench, side.n
    figures: dict[str, float] = {}
    notes: list[str] = []
    bench.wipe_state()
    server = await side.start()
    pool: Pool | None = None
    try:
        await side.ready(server)
        await asyncio.sleep(SETTLE_S)
        side.rss0 = server.rss()
        pool = await Pool.start(bench, side.workers, side.address, n, server)
        for phase in (registration, steady, extras, restart):
            more, more_notes = await phase(side, pool)
            figures |= more
            notes += more_notes
    except BenchTimeout as exc:
        notes.append(f"N={n} {side.name}: {exc}")
        progress(f"{side.name}: {exc}")
        if pool is not None:
            notes.append(failures_note(n, side.name, "in all, until then", pool.failures()))
            await pool.dump_tasks()
    finally:
        if pool is not None:
            server = pool.server
            figures["link_crashes"] = pool.links_ended().total()
            notes += [
                f"N={n} {side.name}: HubLink.run() raised {count} time(s), so the agent "
                f"process would exit (the bench restarts the link after {AGENT_RESTART_S:g}s, "
                f"like systemd): {why}"
                for why, count in pool.links_ended().items()
            ]
        await bench.children.stop(server)  # first: agents leaving all at once make work
        if pool is not None:
            await pool.stop()
        notes += [f"N={n} {side.name}: {what}" for what in bench.children.stuck]
        bench.children.stuck.clear()
    return figures, notes


async def steady(side: Side, pool: Pool) -> tuple[dict[str, float], list[str]]:
    """The steady window, then the server's RSS per connected agent."""
    figures = await steady_window(pool.server, pool, lambda: side.messages(pool.server))
    figures["rss_per_agent_kib"] = (pool.server.rss() - side.rss0) / side.n / 1024
    return figures, []


async def extras(side: Side, pool: Pool) -> tuple[dict[str, float], list[str]]:
    """What only one side measures (the idle edge-agent, the whole-fleet FleetStatus)."""
    return await side.extras()


async def listening(address: str, since: float, timeout_s: float) -> float:
    """Seconds from `since` until `address` accepts TCP connections (probed every 10 ms)."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            await asyncio.sleep(0.01)
            continue
        took = time.time() - since
        writer.close()
        return took
    raise BenchTimeout(f"{address} not listening after {timeout_s:g}s")


# --- report ------------------------------------------------------------------------------

FIGURES = [
    ("register_s", "all N registered, from start: server view (s)"),
    ("register_agent_s", "all N registered, from start: agent view (s)"),
    ("listen_s", "server listening after restart (s)"),
    ("restart_first_s", "first agent back after restart: server view (s)"),
    ("restart_s", "all N back after restart: server view (s)"),
    ("restart_agent_s", "all N back after restart: agent view (s)"),
    ("link_crashes", "agent link crashes (HubLink.run() raised)"),
    ("fails_register", "failed link attempts during registration"),
    ("fails_restart", "failed link attempts, stop to all back"),
    ("down_s", "server stop time, SIGTERM to exit (s)"),
    ("rss_per_agent_kib", "server RSS per connected agent (KiB)"),
    ("cpu_per_1k_ms", "server CPU per 1000 heartbeats (ms)"),
    ("server_cpu_pct", "server CPU in the steady window (% of a core)"),
    ("hb_per_s", "heartbeats received per second"),
    ("worker_cpu_per_1k_ms", "agent-side CPU per 1000 heartbeats (ms)"),
    ("agent_rss_mib", "idle edge-agent RSS (MiB)"),
    ("agent_cpu_pct", "idle edge-agent CPU (% of a core)"),
    ("other_cpu_pct", "CPU of other processes on the machine (% of a core)"),
]
PER_RUN = ("register_s", "restart_s")


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "p99": nearest_rank(values, 0.99),
        "max": max(values),
    }


def summary_of(runs: list[dict[str, Any]], side: str) -> dict[str, Any]:
    return {key: summarize([r[side][key] for r in runs if key in r[side]]) for key, _ in FIGURES}


def cell(stats: dict[str, float] | None, repeat: int) -> str:
    if stats is None:
        return "-"
    values = [stats["median"]] if repeat == 1 else [stats["median"], stats["p99"], stats["max"]]
    return " / ".join(number(v) for v in values)


def number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def ratio(ours: dict[str, float] | None, floor: dict[str, float] | None) -> str:
    if ours is None or floor is None or floor["median"] == 0:
        return "-"
    return f"{ours['median'] / floor['median']:.2f}x"


def table(result: dict[str, Any], repeat: int) -> str:
    what = "median / p99 / max" if repeat > 1 else "one run"
    head = f"N={result['n']} agents, {result['procs']} worker processes, {repeat} run(s): {what}"
    rows = [("figure", "ours", "floor", "ours/floor")]
    for key, label in FIGURES:
        ours, floor = result["summary"]["ours"][key], result["summary"]["floor"][key]
        rows.append((label, cell(ours, repeat), cell(floor, repeat), ratio(ours, floor)))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = [head, ""]
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(
                v.ljust(w) if c == 0 else v.rjust(w)
                for c, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if repeat > 1:
        for key in PER_RUN:
            for side in ("ours", "floor"):
                values = ", ".join(f"{r[side].get(key, float('nan')):.2f}" for r in result["runs"])
                lines.append(f"per run {key} {side}: {values}")
    lines.extend(f"note: {note}" for note in result["notes"])
    return "\n".join(lines)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- main --------------------------------------------------------------------------------


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall, CPU seconds the machine was busy, CPU seconds of the bench and its children).

    Children count once reaped; run_side leaves none running, so two snapshots around it
    bracket all of a run's own CPU.
    """
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.monotonic(), busy, me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


async def wait_quiet(n: int, side: str) -> list[str]:
    """Before a run (nothing of ours running): wait, bounded, for other load to go away."""
    deadline, said = time.monotonic() + QUIET_WAIT_S, False
    while True:
        before = cpu_snapshot()
        await asyncio.sleep(1.0)
        busy = other_cpu_pct(before, cpu_snapshot())
        if busy <= QUIET_PCT:
            return []
        if time.monotonic() > deadline:
            return [f"N={n} {side}: the machine was busy ({busy:.0f}% of a core) at the start"]
        if not said:
            progress(f"other processes use {busy:.0f}% of a core: waiting for quiet")
            said = True


def other_cpu_pct(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """CPU used by processes that are not the bench's, in % of a core, between snapshots."""
    wall, busy, ours = (a - b for a, b in zip(after, before, strict=True))
    return max(0.0, busy - ours) / wall * 100


def write_hub_toml(root: Path) -> Path:
    listen, enroll = free_port(), free_port()
    while enroll == listen:
        enroll = free_port()
    path = root / "hub.toml"
    path.write_text(
        f'[hub]\nstate_dir = "{root / "hub-state"}"\n'
        f'listen = "127.0.0.1:{listen}"\nenroll_listen = "127.0.0.1:{enroll}"\n'
    )
    return path


async def prepare(bench: Bench, max_n: int) -> None:
    """First hub start creates the CA; sign the node certificates; stop it again."""
    hub = await bench.start_hub()
    try:
        ca = CredentialPaths.under(bench.hub_state)

        async def created() -> tuple[bool | None, str]:
            if not hub.alive():
                raise BenchTimeout(f"hub exited; see {bench.root / 'hub.log'}")
            return (True if ca.server_cert.exists() else None), "no CA yet"

        await wait_until(created, bench.args.timeout, "hub CA")
        bench.operator_ = await Operator.bootstrap(bench.hub_config)
        await hub_ready(bench, hub)
        took = make_node_certs(
            bench.hub_state, bench.certs, max_n, bench.hub_config.hub.trust_domain
        )
        progress(f"signed {max_n} node certificates in {took:.1f}s")
    finally:
        await bench.children.stop(hub)


async def bench_main(args: argparse.Namespace, root: Path, children: Children) -> list[dict]:
    config_file = write_hub_toml(root)
    config = config_loader.load(HubConfig, config_file, {})
    bench = Bench(args, root, children, config_file, config, root / "certs", free_port())
    main_task, loop = asyncio.current_task(), asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGHUP):  # stop cleanly, as on Ctrl-C
        loop.add_signal_handler(signum, main_task.cancel)  # type: ignore[union-attr]
    try:
        await prepare(bench, max(args.agents))
        results = []
        for n in args.agents:
            runs, notes = [], []
            for k in range(args.repeat):
                run: dict[str, dict[str, float]] = {"ours": {}, "floor": {}}
                for side in (Ours(bench, n), Floor(bench, n)):
                    if args.side in ("both", side.name):
                        progress(f"N={n} run {k + 1}/{args.repeat}: {side.name}")
                        notes += await wait_quiet(n, side.name)
                        before = cpu_snapshot()
                        run[side.name], side_notes = await run_side(side)
                        run[side.name]["other_cpu_pct"] = other_cpu_pct(before, cpu_snapshot())
                        notes += side_notes
                runs.append(run)
            summary = {"ours": summary_of(runs, "ours"), "floor": summary_of(runs, "floor")}
            result = {"n": n, "procs": args.procs, "runs": runs, "summary": summary}
            result["notes"] = notes
            results.append(result)
            if not args.json:
                print(table(result, args.repeat) + "\n", flush=True)
        return results
    finally:
        await children.stop_all()


def product_dir() -> str:
    return str(Path(sys.modules[HubLink.__module__].__file__ or "?").parent.parent)


def product_version() -> str:
    """The product's git commit (+ 'dirty' with uncommitted changes), if it is a checkout."""
    git = ["git", "-C", product_dir()]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True
        )
    except OSError:
        return "unknown"
    if commit.returncode != 0:
        return "not a git checkout"
    return commit.stdout.decode().strip() + (" + uncommitted changes" if dirty.stdout else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", required=True, help="N (one or more)")
    parser.add_argument("--procs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N (default 1)")
    parser.add_argument(
        "--side", choices=("both", "ours", "floor"), default="both", help="what to run"
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        metavar="R",
        help="start the N agents at R per second (default 0: all at once)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="bound per phase (s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--py-spy", default="", metavar="PATH", help="py-spy binary: dump a child that hangs"
    )
    args = parser.parse_args(argv)
    if min(args.agents) < 1 or args.procs < 1 or args.repeat < 1:
        parser.error("--agents, --procs and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    if sys.argv[1:2] == ["_agents"]:
        run_worker(sys.argv[2])
        return 0
    args = parse_args(argv)
    raise_nofile()  # inherited by the hub, the workers and the bare server
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    meta = {
        "product": product_dir(),
        "version": product_version(),
        "cores": psutil.cpu_count(),
        "rlimit_nofile": soft,
        "args": vars(args),
    }
    progress(
        f"product {meta['product']} ({meta['version']}); {meta['cores']} cores; "
        f"RLIMIT_NOFILE {soft}"
    )
    root = Path(tempfile.mkdtemp(prefix="lb-", dir="/tmp"))
    children = Children(root, args.py_spy)
    try:
        results = asyncio.run(bench_main(args, root, children))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; child processes stopped")
        return 130
    finally:
        children.kill_leftovers()
        if args.keep or children.dumped:
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
