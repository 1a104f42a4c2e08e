"""The bench harness: what every script in bench/ shares, so that each script is its scenario.

Scripts import this module only; it is the face of the harness's private modules:

    bench/_procs.py   Children and Child: every process a bench starts, stopped whatever
                      happens (Ctrl-C, SIGTERM, a failed phase); Workers: P piped workers
                      speaking bench/_worker.py's JSON-line protocol; waits; MachineWindow
    bench/_report.py  Summary (median, p99, max), Section (a table: ours beside the floor
                      measured in the same run), Report (the machine, tables, failures)
    bench/_agents.py  simulated agents: the product's link and safety, many per process
    bench/_floor.py   the bare-gRPC floor: servers and clients with no product logic

and adds what involves the product:

    the hub           Hub: a real `python -m hub.main` in a fresh directory of its own (never a
                      directory with part of its state wiped), its operator issued as
                      `edge-hub bootstrap-operator` issues it; Operator: the calls a bench makes
    real agents       Agent: a real `python -m agent.main`, enrolled with a join token
    simulated agents  simulated_agents(): worker processes of bench/_agents.py (the product)
                      or of bench/_floor.py's clients, N nodes with certificates the hub signed
    in-process parts  agent_parts() and audit_log(): the only two places bench/ wires product
                      objects itself (one per side; see that section)
    main()            the options every script has (--smoke, --nice, --json, --keep, ...)

A script is `sys.exit(harness.main(parser, SMOKE, scenario))`: the scenario gets a Run (its
options, a temporary directory, the children, the report) and adds sections to the report.
A phase that failed is reported and makes the exit status 1, so a bench that stopped
measuring the product cannot pass for one that did (tests/integration/test_bench_smoke.py
runs every script with --smoke: the smallest N, one trial, short windows).

The product is imported from wherever Python finds it (the editable install: the working
tree, or PYTHONPATH); child processes run in the bench's temporary directory so that
PYTHONPATH, not the current directory, says which product they run.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
from _procs import (
    BenchError,
    Child,
    Children,
    MachineUse,
    MachineWindow,
    Workers,
    filesystem_of,
    free_port,
    listening,
    progress,
    wait_until,
)
from _report import Report, Section, Summary, one, summarize
from _worker import raise_nofile
from cryptography import x509

from agent.config import AgentConfig, AgentSection, LinkSection, SafetySection
from agent.credentials import NodeCredentials
from agent.journal import JournalStore
from agent.link import HubLink
from agent.permits import PermitLimits, PermitTable
from agent.replication import Leadership, Replication
from agent.safety import Safety
from agent.state_db import AgentStateDB
from agent.status import LinkStatus
from agent.telemetry import Telemetry
from edgecommon import config as config_loader
from edgecommon import grpcopts, pki
from edgecommon.autonomy_file import SwitchFile
from edgecommon.clock import Clock
from edgecommon.daemon import LOG_FORMAT
from edgecommon.identity import Identity, Kind
from edgecommon.pb import (
    agent_pb2,
    agent_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
)
from hub.admin import issue_bootstrap_credential
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog
from hub.config import HubConfig
from hub.credentials import CredentialPaths, load_ca

__all__ = [  # what scripts use from the private modules, through this one
    "BenchError",
    "Child",
    "MachineUse",
    "MachineWindow",
    "Section",
    "Summary",
    "Workers",
    "filesystem_of",
    "listening",
    "one",
    "progress",
    "summarize",
    "wait_until",
]

BENCH_DIR = Path(__file__).resolve().parent
RPC_TIMEOUT_S = 10.0
OPERATOR_MAX_MESSAGE = 64 * 2**20  # fleet-wide reports of thousands of nodes
GROUP_SIZE = 500  # simulated nodes per group: FleetStatus answers are capped at 256 KiB


# --- simulated agents and the floor --------------------------------------------------------


async def simulated_agents(
    run: "Run", kind: str, n: int, target: str, hub: "Hub", **extra: Any
) -> Workers:
    """`kind` "agents" (the product, bench/_agents.py) or "clients" (the floor's), for
    the first N fleet nodes over --procs workers, with the certificates `hub` signed;
    their state under the hub's directory (fresh with the hub). `extra`: spec values."""
    names = [node_name(i) for i in range(n)]
    procs = run.args.procs
    specs = [
        {
            "target": target,
            "certs": str(hub.certs),
            "names": names[w::procs],
            "seed": w * 1_000_003 + n,
            "state_dir": str(hub.directory / kind / f"w{w}"),
            "client_options": grpcopts.client_options(private_connection=True),
            "heartbeat_s": 1.0,
            "reconnect_max_s": None,  # the product's default (the floor copies it)
            "log_level": "warning",
            "durable": False,
            "nice": 0,
        }
        | extra
        for w in range(procs)
    ]
    if kind == "agents":
        argv = [str(BENCH_DIR / "_agents.py")]
    else:
        argv = [str(BENCH_DIR / "_floor.py"), "clients"]
    name = f"{hub.directory.name}-{kind}"
    return await Workers.start(run.children, name, argv, specs, run.args.timeout)


async def start_floor_server(run: "Run", hub: "Hub", port: int) -> Child:
    """bench/_floor.py's stream server on `port`, with the hub's certificate and CA."""
    paths = hub.pki
    spec = {
        "listen": f"127.0.0.1:{port}",
        "key": str(paths.server_key),
        "cert": str(paths.server_cert),
        "ca": str(paths.ca_cert),
        "server_options": grpcopts.server_options(),
    }
    spec_file = run.root / "floor-server.json"
    spec_file.write_text(json.dumps(spec))
    argv = [str(BENCH_DIR / "_floor.py"), "server", str(spec_file)]
    server = await run.children.python("floor-server", argv, piped=True)
    await server.ready(run.args.timeout)
    return server


# --- certificates ------------------------------------------------------------------------


def node_name(i: int) -> str:
    return f"n{i:05d}"


def node_group(i: int) -> str:
    return f"g{i // GROUP_SIZE:02d}"


def fleet_groups(n: int) -> list[str]:
    return sorted({node_group(i) for i in range(n)})


@dataclasses.dataclass(frozen=True)
class NodeCert:
    """A node's key and certificate, signed by a CA directly (an enrollment is not measured)."""

    identity: Identity
    trust_domain: str
    key: pki.PrivateKey
    cert: x509.Certificate
    ca_cert: x509.Certificate

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            pki.pem(self.ca_cert), pki.private_key_bytes(self.key), pki.pem(self.cert)
        )

    def node_credentials(self) -> NodeCredentials:
        return NodeCredentials(
            self.identity,
            self.trust_domain,
            pki.private_key_bytes(self.key),
            self.cert,
            [self.ca_cert],
        )


def issue_node(
    ca: tuple[pki.PrivateKey, x509.Certificate],
    identity: Identity,
    trust_domain: str,
    lifetime_h: float = 72,
) -> NodeCert:
    ca_key, ca_cert = ca
    key = pki.generate_key()
    now = dt.datetime.now(dt.UTC)
    lifetime = dt.timedelta(hours=lifetime_h)
    cert = pki.issue_for_key(ca_key, ca_cert, key, identity, trust_domain, now, lifetime)
    return NodeCert(identity, trust_domain, key, cert, ca_cert)


def write_node_certs(hub: "Hub", identities: Iterable[Identity]) -> float:
    """NAME.key and NAME.crt for each node in hub.certs, signed by the hub's CA, and ca.crt;
    seconds taken."""
    started = time.monotonic()
    ca = load_ca(hub.pki)
    directory = hub.certs
    directory.mkdir(parents=True, exist_ok=True)
    pki.write_certificates(directory / "ca.crt", [ca[1]])
    for identity in identities:
        node = issue_node(ca, identity, hub.config.hub.trust_domain)
        pki.write_private_key(directory / f"{identity.name}.key", node.key)
        pki.write_certificates(directory / f"{identity.name}.crt", [node.cert])
    return time.monotonic() - started


def fleet_identities(n: int) -> list[Identity]:
    return [Identity(Kind.NODE, node_name(i), node_group(i)) for i in range(n)]


# --- the hub and its operator ------------------------------------------------------------


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
    """The bench's operator: the hub's bootstrap credential (role admin), and its calls.

    `fleet` and `replication` share one channel (steady polling measures the hub, not
    handshakes); `fresh()` opens a new one per use, so that polling across a hub restart is
    not left waiting in grpc's reconnect backoff.
    """

    def __init__(self, target: str, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
        self.target = target
        self.creds = grpc.ssl_channel_credentials(ca_pem, key_pem, cert_pem)
        self.options = grpcopts.client_options(
            private_connection=True, max_message_bytes=OPERATOR_MAX_MESSAGE
        )
        self.channel = grpc.aio.secure_channel(target, self.creds, options=self.options)
        self.fleet = fleet_pb2_grpc.FleetStub(self.channel)
        self.replication = replication_pb2_grpc.ReplicationStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    @contextlib.asynccontextmanager
    async def fresh(self) -> AsyncIterator[fleet_pb2_grpc.FleetStub]:
        async with grpc.aio.secure_channel(self.target, self.creds, options=self.options) as ch:
            yield fleet_pb2_grpc.FleetStub(ch)

    async def view(self, groups: list[str]) -> FleetView:
        online, first, last, seq, hub_time, nodes = 0, math.inf, 0.0, 0, 0.0, {}
        async with self.fresh() as stub:
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

    async def join_token(self, node: str, group: str) -> str:
        answer = await self.fleet.CreateJoinToken(
            fleet_pb2.CreateJoinTokenRequest(node_id=node, group=group, ttl_s=600),
            timeout=RPC_TIMEOUT_S,
        )
        return str(answer.token)

    async def quorum(self, group: str) -> replication_pb2.QuorumReport:
        return await self.replication.QuorumStatus(
            replication_pb2.QuorumRequest(group=group), timeout=RPC_TIMEOUT_S
        )


@dataclasses.dataclass
class Hub:
    """A real hub process in a fresh directory of its own: hub.toml on free loopback ports,
    its state, the operator's context. A bench that wants a fresh hub makes a new Hub: the
    hub refuses a state directory with part of its state gone, and rightly."""

    run: "Run"
    directory: Path
    config_file: Path
    config: HubConfig
    proc: Child | None = None
    operator_: Operator | None = None

    @classmethod
    def create(cls, run: "Run", name: str, hub_keys: str = "", sections: str = "") -> "Hub":
        """`hub_keys` go into [hub]; `sections` are further TOML tables ([link], [lease], ...)."""
        directory = run.root / name
        directory.mkdir(parents=True)
        listen, enroll = free_port(), free_port()
        while enroll == listen:
            enroll = free_port()
        switch = directory / "autonomy.yaml"
        switch.write_text("autonomy_enabled: true\n")
        config_file = directory / "hub.toml"
        config_file.write_text(
            f'[hub]\nstate_dir = "{directory / "state"}"\n'
            f'listen = "127.0.0.1:{listen}"\nenroll_listen = "127.0.0.1:{enroll}"\n'
            f"{hub_keys}\n"
            f'[autonomy]\nfile = "{switch}"\n[http]\nlisten = ""\n{sections}'
        )
        return cls(run, directory, config_file, config_loader.load(HubConfig, config_file, {}))

    @property
    def listen(self) -> str:
        return self.config.hub.listen

    @property
    def certs(self) -> Path:
        """Where write_node_certs puts simulated nodes' certificates signed by this hub."""
        return self.directory / "certs"

    @property
    def pki(self) -> CredentialPaths:
        return CredentialPaths.under(self.config.hub.state_dir)

    @property
    def operator(self) -> Operator:
        if self.operator_ is None:
            raise BenchError("no operator before the hub's first start")
        return self.operator_

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    async def start(self) -> Child:
        argv = ["-m", "hub.main", "--config", str(self.config_file)]
        self.proc = await self.run.children.python("hub", argv, self.directory / "hub.log")
        return self.proc

    async def stop(self) -> float:
        """SIGTERM; seconds until it exited (SIGKILL after edge-hub.service's 20 s)."""
        return await self.run.children.stop(self.proc) if self.proc is not None else 0.0

    async def start_with_operator(self) -> Operator:
        """Start; once listening, bootstrap the operator; wait until the hub answers it.

        Not earlier: the bootstrap opens the hub's store, and two processes opening a fresh
        store at once would race in its migrations.
        """
        await self.start()
        await self.wait_listening()
        key, cert_pem, ca_pem = await issue_bootstrap_credential(self.config, "bench")
        self.operator_ = Operator(self.listen, pki.private_key_bytes(key), cert_pem, ca_pem)
        await self.wait_answering()
        return self.operator_

    def _check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"hub exited; see {self.directory / 'hub.log'}")

    async def wait_listening(self) -> None:
        host, _, port = self.listen.rpartition(":")

        async def check() -> tuple[bool | None, str]:
            self._check_alive()
            try:
                _, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                return None, "not listening yet"
            writer.close()
            await writer.wait_closed()
            return True, "listening"

        await wait_until(check, self.run.args.timeout, "hub start", period_s=0.02)

    async def wait_answering(self) -> None:
        operator = self.operator

        async def check() -> tuple[bool | None, str]:
            self._check_alive()
            async with operator.fresh() as stub:
                try:
                    await stub.WhoAmI(fleet_pb2.WhoAmIRequest(), timeout=RPC_TIMEOUT_S)
                except grpc.aio.AioRpcError as err:
                    return None, f"{err.code().name}: {err.details()}"
            return True, "ready"

        await wait_until(check, self.run.args.timeout, "hub answers the operator")

    async def close(self) -> None:
        await self.stop()
        if self.operator_ is not None:
            await self.operator_.close()


# --- real agents -------------------------------------------------------------------------

MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes
QUICK_RECONNECT = "[link]\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n"


@dataclasses.dataclass
class Agent:
    """A real edge-agent process, enrolled with a join token on its first start."""

    run: "Run"
    name: str
    directory: Path
    config_file: Path
    proc: Child | None = None

    @classmethod
    async def enroll(cls, hub: Hub, name: str, group: str, sections: str = "") -> "Agent":
        """Write its agent.toml with a fresh join token, start it; `sections` as in Hub."""
        directory = hub.directory / name
        if len(str(directory / "a.sock")) > MAX_SOCKET_PATH:
            raise BenchError(f"{directory} is too long for a Unix socket path: a shorter --dir")
        token = await hub.operator.join_token(name, group)
        directory.mkdir(parents=True)
        token_file = directory / "join-token"
        pki.atomic_write(token_file, token.encode() + b"\n", 0o600)
        config_file = directory / "agent.toml"
        config_file.write_text(
            f'[agent]\nstate_dir = "{directory / "state"}"\n'
            f'hub = "{hub.listen}"\nenroll_address = "{hub.config.hub.enroll_listen}"\n'
            f'join_token_file = "{token_file}"\nsocket = "{directory / "a.sock"}"\n'
            f'[safety]\nnode_switch_file = "{directory / "autonomy.yaml"}"\n{sections}'
        )
        agent = cls(hub.run, name, directory, config_file)
        await agent.start()
        return agent

    @property
    def socket(self) -> Path:
        return self.directory / "a.sock"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    async def start(self) -> Child:
        argv = ["-m", "agent.main", "--config", str(self.config_file)]
        self.proc = await self.run.children.python(self.name, argv, self.directory / "agent.log")
        return self.proc

    async def stop(self) -> None:
        if self.proc is not None:
            await self.run.children.stop(self.proc)

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.proc is not None:
            await self.run.children.kill(self.proc)
            await self.run.children.stop(self.proc)

    async def wait_connected(self) -> agent_pb2.AgentStatus:
        """Until the agent says (on its local socket) that its hub link is connected."""

        async def check() -> tuple[agent_pb2.AgentStatus | None, str]:
            if self.proc is None or not self.proc.alive():
                raise BenchError(f"{self.name} exited; see {self.directory / 'agent.log'}")
            if not self.socket.exists():
                return None, "no local socket yet"
            async with grpc.aio.insecure_channel(f"unix:{self.socket}") as channel:
                stub = agent_pb2_grpc.AgentLocalStub(channel)
                try:
                    status = await stub.Status(agent_pb2.StatusRequest(), timeout=RPC_TIMEOUT_S)
                except grpc.aio.AioRpcError as err:
                    return None, err.code().name
            return (status if status.hub_state == "connected" else None), status.hub_state

        return await wait_until(check, self.run.args.timeout, f"{self.name} connected", 0.05)


# --- in-process product parts ------------------------------------------------------------
#
# The only two places bench/ builds product objects itself, one per side. edge-agent wires
# the same objects in agent/main.py and edge-hub in hub/server.py; when those build them
# through one assembly, these two functions are what changes, and nothing else in bench/.


@dataclasses.dataclass(frozen=True)
class AgentParts:
    """One agent's parts, wired as agent/main.py wires them; `replication` with a journal."""

    status: LinkStatus
    safety: Safety
    link: HubLink
    replication: Replication | None


def sim_agent_config(
    state_dir: Path, hub: str, heartbeat_s: float, reconnect_max_s: float | None
) -> AgentConfig:
    """A simulated agent's configuration: product defaults, its own directory and hub, the
    hub's heartbeat period (the link follows the hub's answer rules), no switch file; the
    reconnect backoff's cap if given."""
    link = LinkSection(heartbeat_interval_s=heartbeat_s)
    if reconnect_max_s is not None:
        link = dataclasses.replace(link, reconnect_max_s=reconnect_max_s)
    return AgentConfig(
        agent=AgentSection(state_dir=state_dir, hub=hub),
        link=link,
        safety=SafetySection(node_switch_file=state_dir / "no-switch.yaml"),
    )


async def agent_parts(
    config: AgentConfig,
    creds: NodeCredentials,
    db: AgentStateDB,
    clock: Clock,
    rng: random.Random,
    journal: JournalStore | None = None,
    leadership: Leadership | None = None,
) -> AgentParts:
    """The agent side: safety over the agent's own database and its hub link (agent/main.py's
    _serve and connect_to_hub), and, given a journal and a leadership, its replication."""
    status = LinkStatus(clock, config.agent.hub)
    safety = Safety(
        db,
        SwitchFile(config.safety.node_switch_file, config.safety.switch_default),
        clock,
        config.safety,
        PermitTable(
            PermitLimits(config.local.max_permits_per_caller, config.local.max_permits_total)
        ),
        config.link.startup_sync_timeout_s,
    )
    await safety.load()
    replication = None
    if journal is not None and leadership is not None:
        replication = Replication(journal, config.replication, creds.identity, leadership, clock)
    telemetry = Telemetry.start(config.agent.state_dir)
    link = HubLink(config, creds, status, telemetry, safety, rng)
    return AgentParts(status, safety, link, replication)


def audit_log(
    clock: Clock, directory: Path | None = None, pg_url: str = "", schema: str = ""
) -> FileAuditLog | PgAuditLog:
    """The hub side: an audit log backend, as hub/server.py's open_audit builds each one —
    the file log in `directory`, or PostgreSQL at `pg_url` (in `schema`, for a bench)."""
    if directory is not None:
        return FileAuditLog(directory, clock)
    return PgAuditLog(pg_url, clock, schema)


async def wait_for_quiet(run: "Run", what: str) -> str:
    """Wait (at most --quiet-wait s) until other processes use less than --quiet-pct of a
    core over a 1 s window; a note if they never did. --quiet-wait 0: no check at all."""
    if run.args.quiet_wait <= 0:
        return ""
    deadline = time.monotonic() + run.args.quiet_wait
    said = False
    while True:
        window = MachineWindow(run.children)
        await asyncio.sleep(1.0)
        others = window.stop().others_pct
        if others <= run.args.quiet_pct:
            return ""
        if time.monotonic() >= deadline:
            return f"{what}: the machine was busy ({others:.0f}% of a core used by others)"
        if not said:
            progress(f"{what}: other processes use {others:.0f}% of a core; waiting for quiet")
            said = True


# --- the run -----------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What a scenario gets: its options, a temporary directory, the children, the report."""

    args: argparse.Namespace
    root: Path
    children: Children
    report: Report
    printed: set[int] = dataclasses.field(default_factory=set)

    def print_section(self, section: Section) -> None:
        self.report.print_section(section)
        self.printed.add(id(section))


Scenario = Callable[[Run], Awaitable[None]]


def options(doc: str) -> argparse.ArgumentParser:
    """A parser with the options every bench has; the script adds its own."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the smallest run of every phase, to check that the bench works (no figures)",
    )
    parser.add_argument(
        "--nice", type=int, default=10, help="run at this nice level, children too (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--dir", type=Path, default=Path("/var/tmp"), help="where the temp dir goes (on disk)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="bound per phase (s)")
    parser.add_argument(
        "--quiet-pct",
        type=float,
        default=20.0,
        help="before measuring, wait until other processes use less than this %% of a core",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=120.0, help="but wait at most this long (s)"
    )
    parser.add_argument(
        "--py-spy", default="", metavar="PATH", help="py-spy binary: dump a child that hangs"
    )
    return parser


def at_least(least: float, kind: type = int) -> Callable[[str], Any]:
    """An argparse type: a number of `kind`, at least `least`."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}")
        return value

    return parse


def become_nice(level: int) -> None:
    """Run at nice `level` (not `level` more than now): children inherit it."""
    now = os.nice(0)
    if level > now:
        os.nice(level - now)


def main(
    parser: argparse.ArgumentParser,
    smoke: dict[str, Any],
    scenario: Scenario,
    argv: list[str] | None = None,
) -> int:
    """Parse, run the scenario in one event loop, print the report; 1 if a phase failed.

    `smoke`: the option values --smoke sets (the smallest N, one trial, short windows).
    """
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update({"quiet_wait": 0.0, **smoke})
    become_nice(args.nice)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    raise_nofile()  # inherited by every child: one socket (and SQLite files) per agent
    name = Path(sys.argv[0]).stem
    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=args.dir))
    product = Path(sys.modules[HubConfig.__module__].__file__ or "?").parent.parent
    run = Run(args, root, Children(root, args.py_spy), Report(name, args.json, product))
    run.report.start()
    try:
        asyncio.run(_run(scenario, run))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; child processes stopped")
        return 130
    finally:
        run.children.kill_leftovers()
        if args.keep or run.children.dumped:
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    run.report.finish(run.printed)
    return 1 if run.report.failures else 0


async def _run(scenario: Scenario, run: Run) -> None:
    """SIGTERM and SIGHUP cancel it as Ctrl-C does; every child is stopped in the loop."""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    if task is not None:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, task.cancel)
    try:
        await scenario(run)
    except BenchError as exc:
        run.report.fail(str(exc))
    finally:
        await run.children.stop_all()
        run.report.notes += run.children.stuck
