"""The agent's lease keeper against a small in-process Link servicer over real mTLS.

The servicer only records RenewLease calls and answers them; the keeper is the real one,
with its real channel, so what is tested is when calls actually leave the agent.
"""

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import pytest

from agent.config import AgentConfig, AgentSection
from agent.leases.keeper import LeaseKeeper
from agent.pki.credentials import NodeCredentials
from edgecommon import pki
from edgecommon.clock import SystemClock
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2, link_pb2_grpc
from tests.procs import free_port, wait_until

TRUST = "edge"
NOW = dt.datetime.now(dt.UTC)
# Long enough that a renewal at the next interval cannot be mistaken for an immediate one.
INTERVAL_S = 5.0


@dataclass
class FakeLink(link_pb2_grpc.LinkServicer):
    """Answers every renewal "denied"; `during_first` runs while the first one is in flight."""

    during_first: Callable[[], None] = lambda: None
    calls: list[tuple[float, link_pb2.RenewLeaseRequest]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def RenewLease(
        self, request: link_pb2.RenewLeaseRequest, context: grpc.aio.ServicerContext
    ) -> link_pb2.LeaseAnswer:
        self.calls.append((time.monotonic(), request))
        self.called.set()
        if len(self.calls) == 1:
            self.during_first()
            await asyncio.sleep(0.05)
        return link_pb2.LeaseAnswer(
            verdict="denied",
            leader="node-b",
            ttl_s=10.0,
            renew_interval_s=INTERVAL_S,
            renew_deadline_s=1.0,
            margin_s=0.5,
            reason="node-b leads at epoch 3",
        )


@dataclass(frozen=True)
class Pki:
    hub_key: bytes
    hub_cert: bytes
    ca: bytes
    node: NodeCredentials


@pytest.fixture(scope="module")
def certs() -> Pki:
    ca_key, ca = pki.create_ca(TRUST, NOW, dt.timedelta(days=1))
    hub_key = pki.generate_key()
    hub = pki.issue_hub_certificate(
        ca_key, ca, hub_key, TRUST, ["127.0.0.1"], NOW, dt.timedelta(days=1)
    )
    node_key = pki.generate_key()
    identity = Identity(Kind.NODE, "node-a", "site-a")
    node = pki.issue_for_key(ca_key, ca, node_key, identity, TRUST, NOW, dt.timedelta(days=1))
    creds = NodeCredentials(identity, TRUST, pki.private_key_bytes(node_key), node, [ca])
    return Pki(pki.private_key_bytes(hub_key), pki.pem(hub), pki.pem(ca), creds)


async def serve(certs: Pki, port: int, link: FakeLink) -> grpc.aio.Server:
    server = grpc.aio.server()
    link_pb2_grpc.add_LinkServicer_to_server(link, server)
    creds = grpc.ssl_server_credentials(
        [(certs.hub_key, certs.hub_cert)], root_certificates=certs.ca, require_client_auth=True
    )
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    await server.start()
    return server


@pytest.fixture
def keeper(certs: Pki) -> LeaseKeeper:
    """A keeper for a hub on a free port (each test starts the servicer when it wants)."""
    config = AgentConfig(agent=AgentSection(hub=f"127.0.0.1:{free_port()}"))
    return LeaseKeeper(config, certs.node, SystemClock(), lambda why: None)


async def calls_at_least(link: FakeLink, n: int, within_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            while len(link.calls) < n:
                link.called.clear()
                await link.called.wait()


async def test_a_nudge_during_an_in_flight_renewal_is_not_lost(
    certs: Pki, keeper: LeaseKeeper
) -> None:
    """The hub nudges a switchover target when the old leader confirms, whatever the target
    is doing: a nudge that arrives while a renewal is in flight asks for another one at
    once, not at the next interval."""
    link = FakeLink(during_first=keeper.nudge)
    port = int(keeper.config.agent.hub.rpartition(":")[2])
    server = await serve(certs, port, link)
    running = asyncio.create_task(keeper.run())
    try:
        await calls_at_least(link, 2, within_s=INTERVAL_S / 2)
        assert len(link.calls) >= 2, "the nudge was lost: no renewal until the next interval"
        assert link.calls[1][0] - link.calls[0][0] < 1.0
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await server.stop(0)


async def test_a_renewal_after_the_hub_was_unreachable_does_not_sit_out_a_reconnect_backoff(
    certs: Pki, keeper: LeaseKeeper
) -> None:
    """After a renewal that could not reach the hub, the next one (here: asked for by a
    nudge once the hub is back) connects at once instead of failing inside grpc's
    reconnect backoff and waiting for the renewal after it."""
    link = FakeLink()
    port = int(keeper.config.agent.hub.rpartition(":")[2])
    running = asyncio.create_task(keeper.run())
    server = None
    try:
        await asyncio.to_thread(
            wait_until, "a failed renewal", lambda: "UNAVAILABLE" in keeper.reason, 10
        )
        server = await serve(certs, port, link)
        nudged = time.monotonic()
        keeper.nudge()
        await calls_at_least(link, 1, within_s=1.5)
        assert link.calls, "the renewal after the nudge did not reach the hub"
        assert link.calls[0][0] - nudged < 1.0
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        if server is not None:
            await server.stop(0)
