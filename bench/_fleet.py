"""The product's own processes in a bench: hubs, their operator, real agents, node certificates.

A Hub is a real `python -m hub.main` in a fresh directory of its own: hub.toml on free
loopback ports, its state, its operator. A bench that wants a fresh hub makes a new Hub and
never deletes part of one's state (the hub refuses a state directory with part of its state
gone, and rightly). The operator is issued as `edge-hub bootstrap-operator` issues it (role
admin on the fleet), once the hub listens. An Agent is a real `python -m agent.main`,
enrolled with a join token. Simulated nodes get certificates signed by the hub's CA
directly (write_node_certs): enrollment is not what they measure.
"""

import asyncio
import contextlib
import dataclasses
import datetime as dt
import math
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import grpc
from _procs import BenchError, Child, Children, free_port, wait_until
from cryptography import x509

from agent.pki.credentials import NodeCredentials
from edgecommon import config as config_loader
from edgecommon import grpcopts, pki
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
from hub.config import HubConfig
from hub.pki.credentials import CredentialPaths, load_ca

RPC_TIMEOUT_S = 10.0
OPERATOR_MAX_MESSAGE = 64 * 2**20  # fleet-wide reports of thousands of nodes
GROUP_SIZE = 500  # simulated nodes per group: FleetStatus answers are capped at 256 KiB


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
    its state, its operator. A bench that wants a fresh hub makes a new Hub: the
    hub refuses a state directory with part of its state gone, and rightly."""

    children: Children
    timeout_s: float  # bound of each wait
    directory: Path
    config_file: Path
    config: HubConfig
    proc: Child | None = None
    operator_: Operator | None = None

    @classmethod
    def create(
        cls, children: Children, timeout_s: float, name: str, hub_keys: str = "", sections: str = ""
    ) -> "Hub":
        """In children.cwd / name. `hub_keys` go into [hub]; `sections` are further TOML
        tables ([link], [lease], ...)."""
        directory = children.cwd / name
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
        config = config_loader.load(HubConfig, config_file, {})
        return cls(children, timeout_s, directory, config_file, config)

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
        self.proc = await self.children.python("hub", argv, self.directory / "hub.log")
        return self.proc

    async def stop(self) -> float:
        """SIGTERM; seconds until it exited (SIGKILL after edge-hub.service's 20 s)."""
        return await self.children.stop(self.proc) if self.proc is not None else 0.0

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

        await wait_until(check, self.timeout_s, "hub start", period_s=0.02)

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

        await wait_until(check, self.timeout_s, "hub answers the operator")

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

    hub: Hub
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
        agent = cls(hub, name, directory, config_file)
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
        self.proc = await self.hub.children.python(self.name, argv, self.directory / "agent.log")
        return self.proc

    async def stop(self) -> None:
        if self.proc is not None:
            await self.hub.children.stop(self.proc)

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.proc is not None:
            await self.hub.children.kill(self.proc)
            await self.hub.children.stop(self.proc)

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

        return await wait_until(check, self.hub.timeout_s, f"{self.name} connected", 0.05)
