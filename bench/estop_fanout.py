"""Benchmark the emergency-stop fan-out against a real hub, next to the bare-gRPC floor.

    .venv/bin/python bench/estop_fanout.py --agents 100 [1000 5000] [--procs P] [--trials K]
                                           [--json] [--timeout S] [--dir DIR] [--keep]

For each N, K trials of: engage a `fleet` stop, wait until all N acknowledged, release
it, wait until every agent's latch is empty. Timed on two sides:

ours   a real hub process (`python -m hub.main`, fresh store per N, [http] off, a temp
       autonomy file) and N simulated agents in P worker processes. Each agent is the
       product's own code, wired as agent/main.py does: `agent.link.HubLink` over its own
       mTLS channel (a private connection) with a node certificate signed by the hub's CA,
       its own `agent.safety.Safety` (cadence loop running) over its own
       `agent.state_db.AgentStateDB` (a real SQLite file, WAL, synchronous=FULL: every
       agent latches durably before it acknowledges), `LinkStatus`, `Telemetry` and
       `SystemClock`. The only addition is `TimedSafety`, which notes the wall time after
       the product's `latch` / `release` returned. The operator is a bootstrap credential
       calling Fleet.EngageEstop / EstopStatus / ReleaseEstop like `edgectl estop`.
floor  bench/_estop_bare.py: a minimal grpc.aio bidi server with the same certificates and
       grpcopts keepalive options, clients on their own channels, heartbeats every second;
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

Correctness per trial: the hub's report lists N nodes, all acknowledged; every worker
holds the stop in N Safety objects and N databases (read back with `AgentStateDB.stops`);
after release none holds any stop, in memory or on disk. Every wait is bounded
(--timeout per phase); every child is stopped and the temp dir removed at the end, also
on Ctrl-C. Loopback only; hub, workers and driver share the machine's cores.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import random
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil
from _estop_bare import raise_nofile, serve_commands
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.config import AgentConfig, AgentSection, LinkSection, SafetySection
from agent.credentials import NodeCredentials
from agent.hub_messages import Handlers, Reply
from agent.link import HubLink, LinkCredentials
from agent.permits import PermitTable
from agent.safety import Safety
from agent.state_db import AgentStateDB, LatchedStop
from agent.status import HubState, LinkStatus
from agent.telemetry import Telemetry
from edgecommon import config as config_loader
from edgecommon import grpcopts, pki
from edgecommon.autonomy_file import SwitchFile
from edgecommon.clock import SystemClock
from edgecommon.daemon import setup_logging
from edgecommon.identity import Identity, Kind
from edgecommon.pb import fleet_pb2, fleet_pb2_grpc
from edgectl.devfleet import free_port
from hub.admin import issue_bootstrap_credential
from hub.config import HubConfig
from hub.credentials import CredentialPaths, load_ca

BENCH_DIR = Path(__file__).resolve().parent
GROUP_SIZE = 500  # nodes per group: FleetStatus answers are capped at 256 KiB
TRUST_DOMAIN = "edge"
RPC_TIMEOUT_S = 10.0
OPERATOR_MAX_MESSAGE = 64 * 2**20  # the bench reads big reports; see the size note
AGENT_RESTART_S = 2.0  # edge-agent.service: Restart=on-failure, RestartSec=2s
STOP_GRACE_S = 10.0
T = TypeVar("T")
log = logging.getLogger("bench.estop")


class BenchError(Exception):
    """A phase failed or did not finish within its bound; the message says how far it got."""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def wait_until(
    check: Callable[[], Awaitable[tuple[T | None, str]]],
    timeout_s: float,
    what: str,
    period_s: float = 0.1,
) -> T:
    """Call `check` every `period_s` until it returns a value; BenchError with its last word."""
    deadline = time.monotonic() + timeout_s
    progress_note = "no answer yet"
    while time.monotonic() < deadline:
        value, progress_note = await check()
        if value is not None:
            return value
        await asyncio.sleep(period_s)
    raise BenchError(f"{what}: not done after {timeout_s:g}s ({progress_note})")


# --- child processes ---------------------------------------------------------------------


@dataclasses.dataclass
class Child:
    """A child process; `piped` ones answer one JSON line per JSON command line."""

    name: str
    process: asyncio.subprocess.Process
    log_file: Path
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    def alive(self) -> bool:
        return self.process.returncode is None

    def cpu_s(self) -> float:
        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system

    async def _line(self, timeout_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        except TimeoutError:
            raise BenchError(f"{self.name} did not answer in {timeout_s:g}s") from None
        if not line:
            raise BenchError(f"{self.name} exited; see {self.log_file}")
        return json.loads(line)

    async def ready(self, timeout_s: float) -> None:
        if not (await self._line(timeout_s)).get("ready"):
            raise BenchError(f"{self.name} did not say it was ready")

    async def ask(self, command: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        """Send one command, return its answer."""
        assert self.process.stdin is not None
        async with self.lock:
            if not self.alive():
                raise BenchError(f"{self.name} exited; see {self.log_file}")
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            await self.process.stdin.drain()
            answer = await self._line(timeout_s)
        if "error" in answer:
            raise BenchError(f"{self.name}: {answer['error']}")
        return answer


class Children:
    """Every process the bench started, so that all of them are stopped whatever happens.

    They run in their own session (Ctrl-C reaches the bench only; it stops them) and in
    the bench's temp dir, not in the project.
    """

    def __init__(self, cwd: Path, py_spy: str = "") -> None:
        self.cwd = cwd
        self.py_spy = py_spy
        self.procs: list[Child] = []
        self.stuck: list[str] = []  # what did not stop in time, for the notes

    async def spawn(self, name: str, argv: list[str], piped: bool = False) -> Child:
        log_file = self.cwd / f"{name}.log"
        with log_file.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if piped else out,
                stderr=out,
                cwd=self.cwd,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                limit=2**20,
            )
        child = Child(name, process, log_file)
        self.procs.append(child)
        return child

    async def stop(self, child: Child, timeout_s: float = STOP_GRACE_S) -> None:
        """Close stdin and SIGTERM; SIGKILL after `timeout_s`."""
        if child.alive():
            if child.process.stdin is not None:
                child.process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), timeout_s)
            except TimeoutError:
                where = await self.dump_stacks(child)
                self.stuck.append(f"{child.name} did not stop in {timeout_s:g}s{where}")
                progress(f"{child.name} did not stop in {timeout_s:g}s: killing it{where}")
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
        if child in self.procs:
            self.procs.remove(child)

    async def dump_stacks(self, child: Child) -> str:
        """With --py-spy: the stuck process's thread stacks, in a file next to its log."""
        if not self.py_spy:
            return ""
        out = self.cwd / f"{child.name}-{child.process.pid}-stacks.txt"
        with out.open("wb") as f:
            dump = await asyncio.create_subprocess_exec(
                self.py_spy, "dump", "--pid", str(child.process.pid), stdout=f, stderr=f
            )
            try:
                await asyncio.wait_for(dump.wait(), 30.0)
            except TimeoutError:
                dump.kill()
                await dump.wait()
        progress(f"py-spy dump of {child.name}:\n{out.read_text()}")
        return f" (stacks: {out})"

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(c, 5.0) for c in list(self.procs)))

    def kill_leftovers(self) -> None:
        """Last resort outside the event loop: SIGKILL whatever is still running."""
        for child in self.procs:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGKILL)


# --- certificates and the hub ------------------------------------------------------------


def node_name(i: int) -> str:
    return f"n{i:05d}"


def node_group(i: int) -> str:
    return f"g{i // GROUP_SIZE:02d}"


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


def sign_node_certs(hub_state: Path, certs: Path, n: int) -> None:
    """Sign N node certificates with the hub's CA directly (enrollment is not measured)."""
    ca_key, ca_cert = load_ca(CredentialPaths.under(hub_state))
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "ca.crt").write_bytes(pki.pem(ca_cert))
    now = dt.datetime.now(dt.UTC)
    for i in range(n):
        name = node_name(i)
        key = pki.generate_key()
        identity = Identity(Kind.NODE, name, node_group(i))
        cert = pki.issue_for_key(
            ca_key, ca_cert, key, identity, TRUST_DOMAIN, now, dt.timedelta(hours=72)
        )
        write_private(certs / f"{name}.key", key_pem(key))
        (certs / f"{name}.crt").write_bytes(pki.pem(cert))


def write_hub_toml(root: Path, heartbeat_s: float) -> Path:
    """hub.toml on free loopback ports, a temp state dir and autonomy file, HTTP off.

    The heartbeat period is the product default (1 s) unless --heartbeat-s says otherwise;
    offline_after_s keeps the default ratio (5 heartbeats).
    """
    autonomy = root / "autonomy.yaml"
    autonomy.write_text("autonomy_enabled: true\n")
    path = root / "hub.toml"
    path.write_text(
        f'[hub]\nstate_dir = "{root / "hub-state"}"\n'
        f'listen = "127.0.0.1:{free_port()}"\nenroll_listen = "127.0.0.1:{free_port()}"\n'
        f'trust_domain = "{TRUST_DOMAIN}"\n'
        f'[autonomy]\nfile = "{autonomy}"\n'
        '[http]\nlisten = ""\n'
        f"[link]\nheartbeat_interval_s = {heartbeat_s}\noffline_after_s = {5 * heartbeat_s}\n"
    )
    return path


class Operator:
    """The bench's operator credential and one channel to the hub's mTLS port."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.stub = fleet_pb2_grpc.FleetStub(channel)

    @classmethod
    async def bootstrap(cls, config: HubConfig) -> "Operator":
        key, cert_pem, ca_pem = await issue_bootstrap_credential(config, "bench")
        creds = grpc.ssl_channel_credentials(ca_pem, key_pem(key), cert_pem)
        options = grpcopts.client_options(
            private_connection=True, max_message_bytes=OPERATOR_MAX_MESSAGE
        )
        return cls(grpc.aio.secure_channel(config.hub.listen, creds, options=options))

    async def close(self) -> None:
        await self.channel.close()

    async def engage(self, reason: str) -> fleet_pb2.EstopReport:
        request = fleet_pb2.EngageEstopRequest(scope="fleet", reason=reason)
        return await self.stub.EngageEstop(request, timeout=RPC_TIMEOUT_S)

    async def release(self, reason: str) -> fleet_pb2.EstopReport:
        request = fleet_pb2.ReleaseEstopRequest(scope="fleet", reason=reason)
        return await self.stub.ReleaseEstop(request, timeout=RPC_TIMEOUT_S)

    async def status(self, stop_id: str = "") -> fleet_pb2.EstopReport:
        request = fleet_pb2.EstopStatusRequest(stop_id=stop_id)
        return await self.stub.EstopStatus(request, timeout=RPC_TIMEOUT_S)

    async def online(self, n: int) -> int:
        """Nodes online in the groups of the first N nodes (FleetStatus per group)."""
        total = 0
        for group in sorted({node_group(i) for i in range(n)}):
            try:
                answer = await self.stub.FleetStatus(
                    fleet_pb2.FleetStatusRequest(group=group), timeout=RPC_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as err:
                if err.code() is grpc.StatusCode.NOT_FOUND:  # no node of it seen yet
                    continue
                raise
            total += answer.online
        return total


@dataclasses.dataclass
class Bench:
    """Everything shared by the runs of one invocation."""

    args: argparse.Namespace
    root: Path
    children: Children
    hub_config_file: Path
    hub_config: HubConfig

    @property
    def hub_state(self) -> Path:
        return self.hub_config.hub.state_dir

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    async def start_hub(self) -> Child:
        argv = [sys.executable, "-m", "hub.main", "--config", str(self.hub_config_file)]
        return await self.children.spawn("hub", argv)

    def wipe_hub_store(self) -> None:
        """A fresh hub database for the next N (the CA and server certificate stay)."""
        for path in self.hub_state.glob("hub.db*"):
            path.unlink()

    async def hub_with_operator(self, hub: Child) -> Operator:
        """Wait until the hub listens, bootstrap the operator, wait until the hub answers it.

        Not earlier: the bootstrap opens the hub's store, and two processes opening a
        fresh store at once race in its migrations (see the report).
        """
        host, _, port = self.hub_config.hub.listen.rpartition(":")

        async def listening() -> tuple[bool | None, str]:
            if not hub.alive():
                raise BenchError(f"hub exited; see {hub.log_file}")
            try:
                _, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                return None, "not listening yet"
            writer.close()
            await writer.wait_closed()
            return True, "listening"

        await wait_until(listening, self.args.timeout, "hub start", period_s=0.02)
        operator = await Operator.bootstrap(self.hub_config)

        async def answers() -> tuple[bool | None, str]:
            if not hub.alive():
                raise BenchError(f"hub exited; see {hub.log_file}")
            try:
                await operator.status()
            except grpc.aio.AioRpcError as err:
                return None, err.code().name
            return True, "ready"

        await wait_until(answers, self.args.timeout, "hub start")
        return operator

    async def start_workers(self, kind: str, n: int, target: str) -> list[Child]:
        """P worker processes ('agents' = product, 'clients' = floor), each with N/P names."""
        names = [node_name(i) for i in range(n)]
        procs = self.args.procs
        workers = []
        for w in range(procs):
            spec = {
                "target": target,
                "certs": str(self.certs),
                "names": names[w::procs],
                "seed": w * 1_000_003 + n,
                "db_dir": str(self.root / f"{kind}-{n}" / f"w{w}"),
                "client_options": grpcopts.client_options(private_connection=True),
                "log_level": self.args.agent_log_level,
                "heartbeat_s": self.args.heartbeat_s,
                "nice": self.args.worker_nice,
            }
            spec_file = self.root / f"{kind}-{n}-{w}.json"
            spec_file.write_text(json.dumps(spec))
            if kind == "agents":
                argv = [sys.executable, str(BENCH_DIR / "estop_fanout.py"), "_agents"]
            else:
                argv = [sys.executable, str(BENCH_DIR / "_estop_bare.py"), "clients"]
            child = await self.children.spawn(f"{kind}-{n}-{w}", [*argv, str(spec_file)], True)
            workers.append(child)
        await asyncio.gather(*(w.ready(self.args.timeout) for w in workers))
        return workers


async def ask_all(workers: list[Child], command: dict[str, Any], timeout_s: float = 60.0) -> Any:
    return await asyncio.gather(*(w.ask(command, timeout_s) for w in workers))


async def all_connected(bench: Bench, workers: list[Child], n: int, what: str) -> None:
    """Start every agent/client (--ramp per second) and wait until all N say they are connected.

    All at once, 5000 agents sharing 2 cores with the hub never settled: handshakes took
    longer than grpc's connect timeout and the retries kept everything saturated.
    """
    await ask_all(workers, {"cmd": "connect", "rate": bench.args.ramp / len(workers)})

    async def check() -> tuple[bool | None, str]:
        answers = await ask_all(workers, {"cmd": "status"})
        connected = sum(a["connected"] for a in answers)
        return (True if connected >= n else None), f"{connected}/{n} connected"

    timeout = bench.args.timeout + n / bench.args.ramp
    await wait_until(check, timeout, what, period_s=0.5)


# --- the product side: a worker process of simulated agents -------------------------------

LATCHED: dict[str, list[float]] = defaultdict(list)  # stop id -> wall times latches finished
RELEASED: dict[str, list[float]] = defaultdict(list)  # stop id -> wall times releases finished
LINKS_ENDED: Counter[str] = Counter()  # why HubLink.run() / Safety.run() ended, in a worker


class TimedSafety(Safety):
    """The product's Safety, unchanged; notes when each latch and release has finished."""

    async def latch(self, stop: LatchedStop) -> LatchedStop:
        new = stop.stop_id not in self.stops
        latched = await super().latch(stop)
        if new:
            LATCHED[stop.stop_id].append(time.time())
        return latched

    async def release(self, stop_id: str, why: str) -> bool:
        released = await super().release(stop_id, why)
        if released:
            RELEASED[stop_id].append(time.time())
        return released


@dataclasses.dataclass
class SimAgent:
    """One simulated agent: the same parts edge-agent wires together in agent/main.py."""

    name: str
    creds: NodeCredentials
    db: AgentStateDB
    safety: TimedSafety
    status: LinkStatus


def describe(exc: BaseException) -> str:
    """An exception in one line, exception groups flattened to their leaves."""
    if isinstance(exc, BaseExceptionGroup):
        return "[" + ", ".join(describe(e) for e in exc.exceptions) + "]"
    return f"{type(exc).__name__}({str(exc)[:120]!r})"


def agent_config(spec: dict[str, Any], switch_file: Path) -> AgentConfig:
    state_dir = Path(spec["db_dir"])
    return AgentConfig(
        agent=AgentSection(state_dir=state_dir, hub=spec["target"]),
        link=LinkSection(heartbeat_interval_s=spec["heartbeat_s"]),  # the hub's answer rules
        safety=SafetySection(node_switch_file=switch_file),
    )


def node_credentials(certs: Path, name: str, ca_cert: x509.Certificate) -> NodeCredentials:
    cert = x509.load_pem_x509_certificate((certs / f"{name}.crt").read_bytes())
    key = (certs / f"{name}.key").read_bytes()
    group = node_group(int(name[1:]))
    return NodeCredentials(Identity(Kind.NODE, name, group), TRUST_DOMAIN, key, cert, [ca_cert])


async def load_agent(
    config: AgentConfig, certs: Path, ca_cert: x509.Certificate, name: str
) -> SimAgent:
    """Open the agent's own database and load its latch, as edge-agent does on start."""
    clock = SystemClock()
    db = AgentStateDB(config.agent.state_dir / f"{name}.db")
    await db.open()
    switch = SwitchFile(config.safety.node_switch_file, True)
    safety = TimedSafety(
        db,
        switch,
        clock,
        config.safety,
        PermitTable(),
        config.link.startup_sync_timeout_s,
        lambda: None,  # a simulated agent leads nothing
    )
    await safety.load()
    status = LinkStatus(clock, config.agent.hub)
    return SimAgent(name, node_credentials(certs, name, ca_cert), db, safety, status)


async def run_link(agent: SimAgent, config: AgentConfig, rng: random.Random) -> None:
    """The agent's real HubLink; if run() ever ends, start it again as systemd would."""
    while True:
        telemetry = Telemetry.start(config.agent.state_dir)
        link = HubLink(
            config,
            LinkCredentials(agent.creds, agent.status, config.renewal.handover_timeout_s),
            agent.status,
            telemetry,
            agent.safety,
            # It runs no lease keeper, journal or revocation list: their messages are dropped.
            Handlers((agent.safety.hub_handlers(), dict.fromkeys(NOT_SIMULATED, drop))),
            (agent.safety.add_to_heartbeat,),
            never_reenrolls,
            rng,
        )
        try:
            await link.run()
            why = "returned"
        except Exception as exc:  # the agent process would exit here
            why = describe(exc)
            log.error("%s: HubLink.run() ended: %s", agent.name, why, exc_info=exc)
        LINKS_ENDED[f"link: {why}"] += 1
        await asyncio.sleep(AGENT_RESTART_S)


NOT_SIMULATED = ("lease_nudge", "replication", "revocations")


async def drop(body: object, reply: Reply) -> None:
    """What a simulated agent does with a message for a part it does not run."""


async def never_reenrolls() -> bool:
    return False


async def run_safety(agent: SimAgent) -> None:
    """The agent's safety cadence (node switch, hub loss); it is meant to run forever."""
    try:
        await agent.safety.run()
    except Exception as exc:
        LINKS_ENDED[f"safety: {describe(exc)}"] += 1
        raise


@dataclasses.dataclass
class AgentPool:
    """The agents of one worker process and the commands the driver sends them."""

    spec: dict[str, Any]
    config: AgentConfig
    agents: list[SimAgent]
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    starter: asyncio.Task[None] | None = None

    async def start(self, rate: float) -> None:
        """Start the agents `rate` per second (connecting is not what is measured)."""
        for i, agent in enumerate(self.agents):
            rng = random.Random(self.spec["seed"] + i)
            self.tasks.append(asyncio.create_task(run_link(agent, self.config, rng)))
            self.tasks.append(asyncio.create_task(run_safety(agent)))
            await asyncio.sleep(1.0 / rate)

    def connect(self, rate: float) -> dict[str, Any]:
        self.starter = asyncio.create_task(self.start(rate))
        return {"ok": True}

    def status(self) -> dict[str, Any]:
        return {
            "connected": sum(a.status.state is HubState.CONNECTED for a in self.agents),
            "connects": sum(a.status.connects for a in self.agents),
            "ended": dict(LINKS_ENDED),
        }

    def latches(self, stop_id: str) -> dict[str, Any]:
        """Who holds `stop_id` in memory, and when latches/releases of it finished."""
        return {
            "holding": sum(stop_id in a.safety.stops for a in self.agents),
            "holding_any": sum(bool(a.safety.stops) for a in self.agents),
            "latched": len(LATCHED[stop_id]),
            "last_latched": max(LATCHED[stop_id], default=0.0),
            "released": len(RELEASED[stop_id]),
            "last_released": max(RELEASED[stop_id], default=0.0),
        }

    async def rows(self, stop_id: str) -> dict[str, Any]:
        """The latch read back from every agent's database (AgentStateDB.stops)."""
        stored = await asyncio.gather(*(a.db.stops() for a in self.agents))
        return {
            "with_stop": sum(any(s.stop_id == stop_id for s in rows) for rows in stored),
            "rows": sum(len(rows) for rows in stored),
        }

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        cmd = command["cmd"]
        if cmd == "connect":
            return self.connect(command["rate"])
        if cmd == "status":
            return self.status()
        if cmd == "latches":
            return self.latches(command["id"])
        if cmd == "rows":
            return await self.rows(command["id"])
        return {"error": f"unknown command {cmd!r}"}


async def agents_main(spec: dict[str, Any]) -> None:
    """A worker process: load its agents, then answer the driver (as in _estop_bare)."""
    db_dir = Path(spec["db_dir"])
    db_dir.mkdir(parents=True, exist_ok=True)
    switch_file = db_dir / "node-autonomy.yaml"
    switch_file.write_text("autonomy_enabled: true\n")
    ca_cert = x509.load_pem_x509_certificate((Path(spec["certs"]) / "ca.crt").read_bytes())
    config = agent_config(spec, switch_file)
    certs = Path(spec["certs"])
    agents = await asyncio.gather(
        *(load_agent(config, certs, ca_cert, name) for name in spec["names"])
    )
    await serve_commands(AgentPool(spec, config, list(agents)).handle)


def run_agents_worker(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    raise_nofile()
    os.nice(spec["nice"])
    setup_logging(spec["log_level"])  # as edge-agent: to stderr, here the worker's log file
    asyncio.run(agents_main(spec))


# --- the product side: the driver's trials -----------------------------------------------


@dataclasses.dataclass
class Poll:
    """What polling EstopStatus cost: RPC times and the answer's size."""

    count: int = 0
    rpc_s: list[float] = dataclasses.field(default_factory=list)
    bytes: int = 0


def acked_nodes(report: fleet_pb2.EstopReport) -> list[fleet_pb2.EstopNode]:
    return [node for node in report.stops[0].nodes if node.state == "acknowledged"]


async def poll_acked(
    operator: Operator, stop_id: str, n: int, t0: float, bench: Bench
) -> tuple[float, fleet_pb2.EstopReport, Poll]:
    """Poll EstopStatus every --poll-ms until N acknowledged; seconds since t0 (perf)."""
    period, poll = bench.args.poll_ms / 1000, Poll()
    deadline = time.monotonic() + bench.args.timeout
    while time.monotonic() < deadline:
        started = time.perf_counter()
        report = await operator.status(stop_id)
        done = time.perf_counter()
        poll.count += 1
        poll.rpc_s.append(done - started)
        poll.bytes = report.ByteSize()
        acked = len(acked_nodes(report))
        if acked >= n:
            return done - t0, report, poll
        await asyncio.sleep(max(0.0, period - (time.perf_counter() - started)))
    raise BenchError(f"stop {stop_id}: {acked}/{n} acknowledged after {bench.args.timeout:g}s")


async def wait_released(bench: Bench, workers: list[Child], stop_id: str, n: int) -> list[dict]:
    """Until every agent released `stop_id` and holds no stop at all (polled every 10 ms)."""

    async def check() -> tuple[list[dict] | None, str]:
        answers = await ask_all(workers, {"cmd": "latches", "id": stop_id})
        released = sum(a["released"] for a in answers)
        holding = sum(a["holding_any"] for a in answers)
        done = released >= n and holding == 0
        return (answers if done else None), f"{released}/{n} released, {holding} still stopped"

    return await wait_until(check, bench.args.timeout, f"release of {stop_id}", period_s=0.01)


def cpu_of(children: list[Child]) -> float:
    return sum(c.cpu_s() for c in children)


@dataclasses.dataclass
class Machine:
    """How busy the machine was over a window, and how much of that was not the bench.

    The bench shares the machine: another workload inflates every figure. `others_pct`
    is the CPU used by processes other than the bench and its children, in % of all cores.
    """

    bench: list[Child]
    wall: float = 0.0
    busy: float = 0.0
    ours: float = 0.0

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def _ours(self) -> float:
        me = psutil.Process().cpu_times()
        return me.user + me.system + cpu_of(self.bench)

    def start(self) -> None:
        self.wall, self.busy, self.ours = time.monotonic(), self._busy(), self._ours()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        busy, ours = self._busy() - self.busy, self._ours() - self.ours
        cores = psutil.cpu_count() or 1
        return {
            "busy_pct": 100 * busy / (wall * cores),
            "others_pct": 100 * max(0.0, busy - ours) / (wall * cores),
            "loadavg_1m": os.getloadavg()[0],
        }


@contextlib.asynccontextmanager
async def profiled(bench: Bench, targets: list[Child], label: str) -> Any:
    """With --profile DIR: py-spy record (collapsed stacks) of `targets` while in the block."""
    if not bench.args.profile:
        yield
        return
    if not bench.args.py_spy:
        raise BenchError("--profile needs --py-spy PATH")
    bench.args.profile.mkdir(parents=True, exist_ok=True)
    recorders = []
    for target in targets:
        out = bench.args.profile / f"{label}-{target.name}.txt"
        # --gil: only the thread holding the GIL (CPU, not the idle aiosqlite threads)
        argv = [bench.args.py_spy, "record", "--format", "raw", "--nonblocking", "--gil"]
        argv += ["--rate", "50", "--output", str(out), "--pid", str(target.process.pid)]
        recorders.append(await bench.children.spawn(f"py-spy-{target.name}", argv))
    try:
        yield
    finally:
        for recorder in recorders:
            with contextlib.suppress(ProcessLookupError):
                recorder.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recorder.process.wait(), 60.0)
            await bench.children.stop(recorder, 5.0)
        progress(f"profiles in {bench.args.profile}")


async def wait_for_quiet(bench: Bench, ours: list[Child], what: str) -> str:
    """Wait (at most --quiet-wait s) until other processes use < --quiet-pct of the cores
    over a 2 s window; a note if they never did."""
    deadline = time.monotonic() + bench.args.quiet_wait
    while True:
        machine = Machine(ours)
        machine.start()
        await asyncio.sleep(2.0)
        others = machine.stop()["others_pct"]
        if others < bench.args.quiet_pct:
            return ""
        if time.monotonic() >= deadline:
            return f"{what}: the machine never got quiet ({others:.0f}% used by others)"
        progress(f"{what}: other processes use {others:.0f}% of the cores; waiting")


async def engage_phase(
    bench: Bench, operator: Operator, hub: Child, workers: list[Child], n: int, k: int
) -> tuple[dict[str, Any], str]:
    """Engage a fleet stop, wait until N acknowledged; the figures and the stop id."""
    hub_cpu0, workers_cpu0 = hub.cpu_s(), cpu_of(workers)
    wall0, t0 = time.time(), time.perf_counter()
    engaged = await operator.engage(f"bench trial {k}")
    engage_s = time.perf_counter() - t0
    stop = engaged.stops[0]
    polled_s, report, poll = await poll_acked(operator, stop.stop_id, n, t0, bench)
    hub_cpu, workers_cpu = hub.cpu_s() - hub_cpu0, cpu_of(workers) - workers_cpu0
    nodes = report.stops[0].nodes
    acked = acked_nodes(report)
    last_acked = max(node.acked_unix for node in acked)
    figures = {
        "engage_s": engage_s,
        "polled_s": polled_s,
        "rpc_plus_latency_s": engage_s + max(node.ack_latency_s for node in acked),
        "hub_clock_s": last_acked - wall0,
        "hub_internal_s": last_acked - stop.engaged_unix,
        "hub_cpu_s": hub_cpu,
        "workers_cpu_s": workers_cpu,
        "polls": poll.count,
        "poll_rpc_p50_s": statistics.median(poll.rpc_s),
        "poll_rpc_max_s": max(poll.rpc_s),
        "status_bytes": poll.bytes,
        "report_nodes": len(nodes),
        "acked": len(acked),
        "_wall0": wall0,
    }
    return figures, stop.stop_id


async def verify_latched(
    workers: list[Child], stop_id: str, n: int, figures: dict[str, Any]
) -> list[str]:
    """Every agent holds the stop in memory and on disk; problems found, if any."""
    latches = await ask_all(workers, {"cmd": "latches", "id": stop_id})
    figures["latched"] = sum(a["holding"] for a in latches)
    figures["latched_s"] = max(a["last_latched"] for a in latches) - figures["_wall0"]
    stored = await ask_all(workers, {"cmd": "rows", "id": stop_id}, 120.0)
    figures["on_disk"] = sum(a["with_stop"] for a in stored)
    problems = []
    if figures["report_nodes"] != n or figures["acked"] != n:
        problems.append(f"hub lists {figures['report_nodes']} nodes, {figures['acked']} acked")
    if figures["latched"] != n or figures["on_disk"] != n:
        problems.append(f"{figures['latched']} hold it, {figures['on_disk']} on disk")
    return problems


async def release_phase(
    bench: Bench, operator: Operator, workers: list[Child], stop_id: str, n: int, k: int
) -> tuple[dict[str, Any], list[str]]:
    """Release the fleet stop, wait until every latch is empty, check the disks too."""
    wall_r, t_r = time.time(), time.perf_counter()
    await operator.release(f"bench trial {k} done")
    release_rpc_s = time.perf_counter() - t_r
    answers = await wait_released(bench, workers, stop_id, n)
    stored = await ask_all(workers, {"cmd": "rows", "id": stop_id}, 120.0)
    figures = {
        "release_rpc_s": release_rpc_s,
        "release_s": max(a["last_released"] for a in answers) - wall_r,
        "released": sum(a["released"] for a in answers),
        "rows_after": sum(a["rows"] for a in stored),
    }
    problems = [] if figures["rows_after"] == 0 else [f"{figures['rows_after']} rows left"]
    return figures, problems


async def ours_trial(
    bench: Bench, operator: Operator, hub: Child, workers: list[Child], n: int, k: int
) -> dict[str, Any]:
    """One trial: engage, all acked, verify, release, all released, verify."""
    connects0 = sum(a["connects"] for a in await ask_all(workers, {"cmd": "status"}))
    figures, stop_id = await engage_phase(bench, operator, hub, workers, n, k)
    problems = await verify_latched(workers, stop_id, n, figures)
    released, more = await release_phase(bench, operator, workers, stop_id, n, k)
    figures |= released
    connects1 = sum(a["connects"] for a in await ask_all(workers, {"cmd": "status"}))
    figures["reconnects"] = connects1 - connects0
    if figures["reconnects"]:
        problems.append(f"{figures['reconnects']} agents reconnected during the trial")
    figures["problems"] = problems + more
    figures["ok"] = not problems and not more
    del figures["_wall0"]
    return figures


async def hub_sees_online(bench: Bench, operator: Operator, workers: list[Child], n: int) -> None:
    """Until FleetStatus shows all N online and every agent says it is connected."""

    async def check() -> tuple[bool | None, str]:
        online = await operator.online(n)
        answers = await ask_all(workers, {"cmd": "status"})
        connected = sum(a["connected"] for a in answers)
        done = online >= n and connected >= n
        return (True if done else None), f"hub: {online}/{n} online, {connected} connected"

    await wait_until(check, bench.args.timeout, "ours: the hub sees all online", period_s=0.5)


async def run_ours(bench: Bench, n: int) -> dict[str, Any]:
    """The real hub and N real HubLinks: K trials."""
    bench.wipe_hub_store()
    hub = await bench.start_hub()
    operator: Operator | None = None
    workers: list[Child] = []
    trials: list[dict[str, Any]] = []
    notes: list[str] = []
    load: dict[str, float] = {}
    try:
        operator = await bench.hub_with_operator(hub)
        workers = await bench.start_workers("agents", n, bench.hub_config.hub.listen)
        started = time.monotonic()
        await all_connected(bench, workers, n, "ours: agents connected")
        await hub_sees_online(bench, operator, workers, n)
        progress(f"ours N={n}: all connected in {time.monotonic() - started:.1f}s")
        connects = sum(a["connects"] for a in await ask_all(workers, {"cmd": "status"}))
        if connects > n:
            notes.append(f"ours N={n}: {connects - n} extra connects while all {n} connected")
        await asyncio.sleep(bench.args.settle_first)
        if quiet := await wait_for_quiet(bench, [hub, *workers], f"ours N={n}"):
            notes.append(quiet)
        machine = Machine([hub, *workers])
        machine.start()
        async with profiled(bench, [hub, workers[0]], f"N{n}"):
            for k in range(bench.args.trials):
                trial = await ours_trial(bench, operator, hub, workers, n, k)
                trials.append(trial)
                progress(
                    f"ours N={n} trial {k + 1}: acked polled {trial['polled_s'] * 1e3:.0f} ms, "
                    f"hub clock {trial['hub_clock_s'] * 1e3:.0f} ms, "
                    f"released {trial['release_s'] * 1e3:.0f} ms"
                    + ("" if trial["ok"] else f" PROBLEMS: {'; '.join(trial['problems'])}")
                )
                await asyncio.sleep(bench.args.settle)
        load = machine.stop()
        ended = (await ask_all(workers, {"cmd": "status"}))[0]["ended"]
        notes += [f"ours: {why} x{count}" for why, count in ended.items()]
    except BenchError as exc:
        notes.append(f"ours N={n}: {exc}")
        progress(f"ours N={n}: {exc}")
    finally:
        for worker in workers:
            await bench.children.stop(worker, 5.0)
        if operator is not None:
            await operator.close()
        await bench.children.stop(hub)
        notes += [f"ours N={n}: {what}" for what in bench.children.stuck]
        bench.children.stuck.clear()
    return {"trials": trials, "notes": notes, "machine": load}


# --- the floor ---------------------------------------------------------------------------


async def floor_broadcasts(
    bench: Bench, server: Child, clients: list[Child], n: int, durable: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """K broadcasts (with or without the durable write), each followed by a release."""
    trials, notes = [], []
    timeout = bench.args.timeout
    for k in range(bench.args.trials):
        message_id = f"{'d' if durable else 'm'}{n}-{k}"
        command = {"cmd": "broadcast", "kind": "E" if durable else "N", "id": message_id}
        engaged = await server.ask({**command, "timeout": timeout}, timeout + 30)
        trial = {"acked_s": engaged["elapsed_s"], "acked": engaged["acked"]}
        if durable:
            rows = await ask_all(clients, {"cmd": "rows", "id": message_id}, 120.0)
            trial["on_disk"] = sum(a["rows"] for a in rows)
            command = {"cmd": "broadcast", "kind": "R", "id": message_id, "timeout": timeout}
            released = await server.ask(command, timeout + 30)
            trial["release_s"] = released["elapsed_s"]
            trial["released"] = released["acked"]
            rows = await ask_all(clients, {"cmd": "rows", "id": message_id}, 120.0)
            trial["rows_after"] = sum(a["rows"] for a in rows)
        trial["ok"] = (
            trial["acked"] == n
            and trial.get("on_disk", n) == n
            and trial.get("released", n) == n
            and trial.get("rows_after", 0) == 0
        )
        if not trial["ok"]:
            notes.append(f"floor N={n} {message_id}: {trial}")
        trials.append(trial)
        acked_ms = f"{trial['acked_s'] * 1e3:.0f}" if trial["acked_s"] is not None else "-"
        progress(f"floor N={n} {message_id}: {trial['acked']}/{n} acked in {acked_ms} ms")
        await asyncio.sleep(bench.args.settle)
    return trials, notes


async def run_floor(bench: Bench, n: int) -> dict[str, Any]:
    """The bare server and N bare clients: K durable trials, then K without the write."""
    pki_dir = bench.hub_state / "pki"
    port = free_port()
    spec = {
        "listen": f"127.0.0.1:{port}",
        "key": str(pki_dir / "hub.key"),
        "cert": str(pki_dir / "hub.crt"),
        "ca": str(pki_dir / "ca.crt"),
        "server_options": grpcopts.server_options(),
    }
    spec_file = bench.root / f"floor-server-{n}.json"
    spec_file.write_text(json.dumps(spec))
    argv = [sys.executable, str(BENCH_DIR / "_estop_bare.py"), "server", str(spec_file)]
    server = await bench.children.spawn(f"floor-server-{n}", argv, piped=True)
    clients: list[Child] = []
    result: dict[str, Any] = {"trials": [], "nodisk": [], "notes": [], "machine": {}}
    try:
        await server.ready(bench.args.timeout)
        clients = await bench.start_workers("clients", n, f"127.0.0.1:{port}")
        started = time.monotonic()
        await all_connected(bench, clients, n, "floor: clients connected")
        registered = (await server.ask({"cmd": "status"}))["registered"]
        if registered != n:
            raise BenchError(f"floor: the server sees {registered}/{n} streams")
        progress(f"floor N={n}: all connected in {time.monotonic() - started:.1f}s")
        await asyncio.sleep(bench.args.settle_first)
        if quiet := await wait_for_quiet(bench, [server, *clients], f"floor N={n}"):
            result["notes"].append(quiet)
        machine = Machine([server, *clients])
        machine.start()
        result["trials"], notes = await floor_broadcasts(bench, server, clients, n, True)
        result["nodisk"], more = await floor_broadcasts(bench, server, clients, n, False)
        result["machine"] = machine.stop()
        result["notes"] += notes + more
        progress(
            f"floor N={n}: acked p50 {median_ms(result['trials'], 'acked_s')} ms, "
            f"without SQLite {median_ms(result['nodisk'], 'acked_s')} ms"
        )
    except BenchError as exc:
        result["notes"].append(f"floor N={n}: {exc}")
        progress(f"floor N={n}: {exc}")
    finally:
        for client in clients:
            await bench.children.stop(client, 5.0)
        await bench.children.stop(server, 5.0)
        result["notes"] += [f"floor N={n}: {what}" for what in bench.children.stuck]
        bench.children.stuck.clear()
    return result


# --- figures -----------------------------------------------------------------------------

ROWS = (  # (label, ours key, floor trials, floor key)
    ("engage RPC", "engage_s", "", ""),
    ("all acked: polled EstopStatus", "polled_s", "trials", "acked_s"),
    ("all acked: engage RPC + max ack_latency", "rpc_plus_latency_s", "trials", "acked_s"),
    ("all acked: hub clock, from t0", "hub_clock_s", "trials", "acked_s"),
    ("all acked: hub clock, from engaged_unix", "hub_internal_s", "trials", "acked_s"),
    ("all latched on disk: agents' clock", "latched_s", "", ""),
    ("release: all latches empty", "release_s", "trials", "release_s"),
    ("floor without the SQLite write", "", "nodisk", "acked_s"),
    ("hub CPU, engage to all acked (+polls)", "hub_cpu_s", "", ""),
    ("EstopStatus RPC while polling, p50", "poll_rpc_p50_s", "", ""),
    ("EstopStatus RPC while polling, max", "poll_rpc_max_s", "", ""),
)


def values(trials: list[dict[str, Any]], key: str) -> list[float]:
    return [t[key] for t in trials if t.get(key) is not None]


def percentile(data: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(data)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(data: list[float]) -> dict[str, float] | None:
    if not data:
        return None
    return {"p50": percentile(data, 0.5), "p99": percentile(data, 0.99), "max": max(data)}


def median_ms(trials: list[dict[str, Any]], key: str) -> str:
    data = values(trials, key)
    return f"{statistics.median(data) * 1e3:.0f}" if data else "-"


def summarize(ours: dict[str, Any], floor: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per table row: ours and floor p50/p99/max (seconds) and the p50 ratio."""
    rows = []
    for label, ours_key, floor_set, floor_key in ROWS:
        ours_s = summary(values(ours["trials"], ours_key)) if ours_key else None
        floor_s = summary(values(floor[floor_set], floor_key)) if floor_set else None
        ratio = ours_s["p50"] / floor_s["p50"] if ours_s and floor_s and floor_s["p50"] else None
        rows.append({"figure": label, "ours": ours_s, "floor": floor_s, "ratio_p50": ratio})
    return rows


def cells(stats: dict[str, float] | None) -> str:
    if stats is None:
        return f"{'-':>8} {'-':>8} {'-':>8}"
    return " ".join(f"{stats[q] * 1e3:8.1f}" for q in ("p50", "p99", "max"))


def table(result: dict[str, Any]) -> str:
    """The human-readable table of one N."""
    ours_ok = sum(t["ok"] for t in result["ours"]["trials"])
    floor_ok = sum(t["ok"] for t in result["floor"]["trials"])
    head = (
        f"N={result['n']}: {len(result['ours']['trials'])} trials ours ({ours_ok} verified), "
        f"{len(result['floor']['trials'])} floor ({floor_ok} verified); "
        f"{result['procs']} worker processes; times in ms"
    )
    lines = [
        head,
        f"{'figure':<42} {'ours p50':>8} {'p99':>8} {'max':>8} | "
        f"{'floor p50':>9} {'p99':>8} {'max':>8} | {'ratio p50':>9}",
    ]
    for row in result["rows"]:
        ratio = f"{row['ratio_p50']:9.2f}" if row["ratio_p50"] is not None else f"{'-':>9}"
        lines.append(f"{row['figure']:<42} {cells(row['ours'])} |  {cells(row['floor'])} | {ratio}")
    sizes = values(result["ours"]["trials"], "status_bytes")
    if sizes:
        lines.append(
            f"EstopStatus answer for the stop: {max(sizes):,} bytes "
            f"(the hub sends at most {grpcopts.MAX_LINK_MESSAGE_BYTES:,})"
        )
    for side in ("ours", "floor"):
        load = result[side]["machine"]
        if load:
            lines.append(
                f"machine during the {side} trials: {load['busy_pct']:.0f}% of all cores busy, "
                f"{load['others_pct']:.0f}% used by processes outside this bench; "
                f"load average {load['loadavg_1m']:.1f}"
            )
    lines += result["notes"]
    return "\n".join(lines)


# --- driver ------------------------------------------------------------------------------


def filesystem_of(path: Path) -> str:
    """'fstype device at mountpoint' of the mount holding `path` (from /proc/mounts)."""
    best = ("?", "?", "/")
    real = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            device, mountpoint, fstype = line.split()[:3]
            inside = real == mountpoint or real.startswith(mountpoint.rstrip("/") + "/")
            if inside and len(mountpoint) >= len(best[2]):
                best = (fstype, device, mountpoint)
    return f"{best[0]} {best[1]} at {best[2]}"


async def prepare(bench: Bench) -> None:
    """First hub start creates the CA; sign the node certificates; stop it again."""
    hub = await bench.start_hub()
    try:
        operator = await bench.hub_with_operator(hub)
        await operator.close()
        started = time.monotonic()
        n = max(bench.args.agents)
        await asyncio.to_thread(sign_node_certs, bench.hub_state, bench.certs, n)
        progress(f"signed {n} node certificates in {time.monotonic() - started:.1f}s")
    finally:
        await bench.children.stop(hub)


async def bench_main(
    args: argparse.Namespace,
    root: Path,
    children: Children,
    checkpoint: Callable[[], object],
    results: list[dict],
) -> None:
    """Prepare, then both sides for each N; `results` grows and `checkpoint` runs per N.

    SIGTERM and SIGHUP cancel it as Ctrl-C does (asyncio's own SIGINT handling): the
    `finally` blocks stop every child inside the running loop.
    """
    main_task = asyncio.current_task()
    assert main_task is not None
    for signum in (signal.SIGTERM, signal.SIGHUP):
        asyncio.get_running_loop().add_signal_handler(signum, main_task.cancel)
    config_file = write_hub_toml(root, args.heartbeat_s)
    config = config_loader.load(HubConfig, config_file, {})
    bench = Bench(args, root, children, config_file, config)
    try:
        await prepare(bench)
        for n in args.agents:
            progress(f"N={n}: ours")
            ours = await run_ours(bench, n)
            progress(f"N={n}: floor")
            floor = await run_floor(bench, n)
            result = {
                "n": n,
                "procs": args.procs,
                "ours": ours,
                "floor": floor,
                "rows": summarize(ours, floor),
                "notes": ours["notes"] + floor["notes"],
            }
            results.append(result)
            checkpoint()
            shutil.rmtree(root / f"agents-{n}", ignore_errors=True)
            shutil.rmtree(root / f"clients-{n}", ignore_errors=True)
            if not args.json:
                print(table(result) + "\n", flush=True)
    finally:
        await children.stop_all()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", required=True, help="N (one or more)")
    parser.add_argument("--procs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--trials", type=int, default=10, help="trials per N (default 10)")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="EstopStatus poll period")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound per phase (s)")
    parser.add_argument("--settle", type=float, default=1.0, help="pause between trials (s)")
    parser.add_argument(
        "--settle-first", type=float, default=3.0, help="pause after all connected (s)"
    )
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=1.0,
        help="agents' heartbeat period, both sides (default 1, the product's); the hub's "
        "offline_after_s is 5 times it",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="nice value of the agent/client worker processes, both sides (default 0): the "
        "simulated agents then leave the CPU to the hub / floor server when it needs it",
    )
    parser.add_argument(
        "--ramp", type=float, default=500.0, help="agents started per second (default 500)"
    )
    parser.add_argument(
        "--quiet-pct",
        type=float,
        default=20.0,
        help="before each side's trials, wait until other processes use less than this "
        "%% of the cores (default 20)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=300.0, help="but wait at most this long (s)"
    )
    parser.add_argument(
        "--agent-log-level", default="info", help="simulated agents' log level (edge-agent: info)"
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("/var/tmp"), help="where the temp dir goes (on disk)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--json-file", type=Path, help="also write the JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--py-spy", default="", metavar="PATH", help="py-spy binary: dump a child that hangs"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="with --py-spy: record the hub and one agent worker during the ours trials "
        "(collapsed stacks, one file each, in DIR)",
    )
    args = parser.parse_args(argv)
    if min(args.agents) < 1 or args.procs < 1 or args.trials < 1:
        parser.error("--agents, --procs and --trials must be at least 1")
    return args


def write_json(args: argparse.Namespace, env: dict[str, Any], results: list[dict]) -> str:
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    document = json.dumps({"env": env, "args": settings, "results": results}, indent=2)
    if args.json_file:
        args.json_file.write_text(document + "\n")
    return document


def main(argv: list[str] | None = None) -> int:
    if sys.argv[1:2] == ["_agents"]:
        run_agents_worker(sys.argv[2])
        return 0
    args = parse_args(argv)
    raise_nofile()  # inherited by the hub; the workers raise their own as well
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="estop-fanout-", dir=args.dir))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    env = {
        "cores": psutil.cpu_count(),
        "rlimit_nofile": soft,
        "grpc": grpc.__version__,
        "state_on": filesystem_of(root),
        "root": str(root),
    }
    progress(
        f"{env['cores']} cores, RLIMIT_NOFILE {soft}, grpcio {env['grpc']}; agents' SQLite "
        f"files under {root} ({env['state_on']})"
    )
    children = Children(root, args.py_spy)
    results: list[dict] = []  # filled N by N, so that an interruption keeps what was done
    try:
        asyncio.run(
            bench_main(args, root, children, lambda: write_json(args, env, results), results)
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; child processes stopped")
        return 130
    finally:
        children.kill_leftovers()
        if args.keep:
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    document = write_json(args, env, results)
    if args.json:
        print(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
