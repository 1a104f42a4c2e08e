"""The hub's pooled channels to journal leaders (hub/journal/leader_channels.py) against real Peer
servers over mutual TLS on loopback, each behind a TCP proxy that counts the connections
the hub really opens. Journals are real SQLite files; only the pool's clock is injected."""

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from agent.config import ReplicationSection
from agent.journal.peer import PeerService, start_peer_server
from agent.journal.replication import Replication
from agent.journal.store import JournalStore
from agent.pki.credentials import NodeCredentials
from agent.pki.revocations import RevokedSerials
from edgecommon import pki
from edgecommon.clock import SystemClock
from edgecommon.errors import Unreachable
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2, replication_pb2, replication_pb2_grpc
from edgecommon.peerwire import ON_BEHALF_OF, peer_options
from hub.journal.leader_channels import LeaderChannels, LeaderChannelStatistics
from hub.pki.credentials import HubCredentials
from hub.pki.trust import TrustStore
from tests.integration.test_peer import Lead, creds, open_store
from tests.tcpproxy import TcpProxy

TD = "edge"
MAX_AGE_S = 3600.0
CA = tuple[pki.PrivateKey, x509.Certificate]


class SteppedClock:
    """Monotonic time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return time.time()


def new_ca(age_s: float = 0.0) -> CA:
    """A CA made `age_s` ago (CAs are named after the second they were made in: two made
    in one second would be one issuer to a name check)."""
    made = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)
    return pki.create_ca(TD, made, dt.timedelta(days=1))


def hub_credentials(ca: CA) -> HubCredentials:
    """The hub's credentials as hub/pki/credentials.py makes them: a server certificate from
    `ca`, trusting `ca` only."""
    ca_key, ca_cert = ca
    key = pki.generate_key()
    cert = pki.issue_hub_certificate(
        ca_key, ca_cert, key, TD, ["127.0.0.1"], dt.datetime.now(dt.UTC), dt.timedelta(days=1)
    )
    return HubCredentials(ca_key, ca_cert, pki.private_key_bytes(key), cert, TD, (ca_cert,))


@dataclass
class Leader:
    name: str
    store: JournalStore
    service: PeerService
    proxy: TcpProxy

    @property
    def address(self) -> str:
        return self.proxy.address


@contextlib.asynccontextmanager
async def leader(ca: CA, name: str, directory: Path) -> AsyncIterator[Leader]:
    """A node leading group g (async mode) serving Peer behind a counting proxy."""
    node = creds(ca, Identity(Kind.NODE, name, "g"))
    store = await open_store(directory / f"{name}.db")
    rep = Replication(
        store, ReplicationSection(), node.identity, Lead(True), SystemClock(), RevokedSerials(), ""
    )
    rep.set_plan(link_pb2.ReplicationPlan(group="g", leader=name, epoch=1, min_sync=0))
    server, port, service = await start_peer_server(rep, node, SystemClock(), "127.0.0.1:0")
    proxy = TcpProxy("127.0.0.1", port).start()
    try:
        yield Leader(name, store, service, proxy)
    finally:
        proxy.stop()
        await server.stop(None)
        await store.close()


async def append(
    pool: LeaderChannels, to: Leader, value: str, group: str = "g"
) -> replication_pb2.AppendResult:
    async with pool.peer(group, to.name, to.address) as stub:
        result: replication_pb2.AppendResult = await stub.Append(
            replication_pb2.AppendRequest(key="k", value=value.encode()),
            timeout=5,
            metadata=((ON_BEHALF_OF, "alice"),),
        )
        return result


@pytest.fixture
def ca() -> CA:
    return new_ca(age_s=60)


@pytest.fixture
def trust(ca: CA) -> TrustStore:
    return TrustStore(hub_credentials(ca))


async def test_many_appends_to_one_leader_use_one_connection(
    ca: CA, trust: TrustStore, tmp_path: Path
) -> None:
    pool = LeaderChannels(trust, SteppedClock(), MAX_AGE_S)
    async with leader(ca, "n1", tmp_path) as n1:
        for i in range(20):
            assert (await append(pool, n1, f"one by one {i}")).index == i + 1
        # Appends arriving together on a pool with no channel yet dial once, not once each.
        fresh = LeaderChannels(trust, SteppedClock(), MAX_AGE_S)
        together = await asyncio.gather(*(append(fresh, n1, f"together {i}") for i in range(20)))
        assert sorted(r.index for r in together) == list(range(21, 41))
        assert n1.store.last.index == 40
        assert n1.proxy.accepted == 2  # one per pool
        await pool.close()
        await fresh.close()
    for used in (pool, fresh):
        assert used.statistics() == LeaderChannelStatistics(
            open_channels=0, dialled=1, reused=19, closed=1
        )


async def test_a_new_leader_gets_the_next_append_and_the_old_channel_closes_after_its_call(
    ca: CA, trust: TrustStore, tmp_path: Path
) -> None:
    pool = LeaderChannels(trust, SteppedClock(), MAX_AGE_S)
    async with leader(ca, "n1", tmp_path) as n1, leader(ca, "n2", tmp_path) as n2:
        assert (await append(pool, n1, "on n1")).leader == "n1"
        async with pool.peer("g", n1.name, n1.address) as on_old:
            # The leader changes while a call still holds the old channel.
            moved = await append(pool, n2, "on n2")
            assert moved.leader == "n2"
            assert pool.statistics().open_channels == 2
            late = await on_old.Append(
                replication_pb2.AppendRequest(key="k", value=b"late"),
                timeout=5,
                metadata=((ON_BEHALF_OF, "alice"),),
            )
            assert late.leader == "n1"
        assert pool.statistics() == LeaderChannelStatistics(
            open_channels=1, dialled=2, reused=1, closed=1
        )
        assert (await append(pool, n2, "again on n2")).index == 2
        assert (n1.store.last.index, n2.store.last.index) == (2, 2)
        assert (n1.proxy.accepted, n2.proxy.accepted) == (1, 1)
        await pool.close()


async def test_replaced_hub_credentials_are_used_from_the_next_append(
    ca: CA, trust: TrustStore, tmp_path: Path
) -> None:
    """A CA rollover whose old CA is retired: the hub's certificate is re-issued by the new
    CA and the leader stops trusting the old one. A connection made with the old
    certificate is refused on every call; the pool dials again with the new one."""
    pool = LeaderChannels(trust, SteppedClock(), MAX_AGE_S)
    async with leader(ca, "n1", tmp_path) as n1:
        assert (await append(pool, n1, "before")).index == 1
        old = trust.channel_credentials()
        async with grpc.aio.secure_channel(n1.address, old, options=peer_options("n1")) as kept:
            await kept.channel_ready()
            rolled = new_ca()
            trust.replace(hub_credentials(rolled))
            n1.service.served.adopt(renewed(n1.service.creds, rolled))
            done = await append(pool, n1, "after the rollover")
            assert done.index == 2
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await replication_pb2_grpc.PeerStub(kept).Append(
                    replication_pb2.AppendRequest(key="k", value=b"stale"), timeout=5
                )
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "not from this fleet's CA" in (refused.value.details() or "")
        assert pool.statistics() == LeaderChannelStatistics(
            open_channels=1, dialled=2, reused=0, closed=1
        )
        await pool.close()


def renewed(current: NodeCredentials, ca: CA) -> NodeCredentials:
    """`current`'s identity with a certificate from `ca`, trusting `ca` only."""
    fresh = creds(ca, current.identity)
    return NodeCredentials(fresh.identity, TD, fresh.key_pem, fresh.cert, [ca[1]])


async def test_a_failed_call_retires_the_channel_and_the_next_append_dials_at_once(
    ca: CA, trust: TrustStore, tmp_path: Path
) -> None:
    """grpc holds a channel whose connection attempt failed in reconnect backoff (a second
    at least) and fails every call meanwhile at once; a channel dialled anew tries at once,
    as dialling per append did."""
    pool = LeaderChannels(trust, SteppedClock(), MAX_AGE_S)
    async with leader(ca, "n1", tmp_path) as n1:
        assert (await append(pool, n1, "before")).index == 1
        n1.proxy.cut()
        # The first fails on the dropped connection, the second in connecting.
        for attempt in ("dropped", "refused"):
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                await append(pool, n1, attempt)
            assert cut.value.code() is grpc.StatusCode.UNAVAILABLE
            assert pool.statistics().open_channels == 0
        n1.proxy.heal()
        assert (await append(pool, n1, "healed")).index == 2
        assert pool.statistics() == LeaderChannelStatistics(
            open_channels=1, dialled=3, reused=1, closed=2
        )
        await pool.close()


async def test_a_channel_older_than_the_connection_age_is_dialled_again(
    ca: CA, trust: TrustStore, tmp_path: Path
) -> None:
    clock = SteppedClock()
    pool = LeaderChannels(trust, clock, MAX_AGE_S)
    async with leader(ca, "n1", tmp_path) as n1:
        await append(pool, n1, "first")
        clock.now += MAX_AGE_S - 1
        await append(pool, n1, "still young")
        assert n1.proxy.accepted == 1
        clock.now += 1
        await append(pool, n1, "aged")
        assert n1.proxy.accepted == 2
        assert pool.statistics() == LeaderChannelStatistics(
            open_channels=1, dialled=2, reused=1, closed=1
        )
        await pool.close()


async def test_close_closes_every_channel_and_later_appends_are_refused(
    ca: CA, trust: TrustStore, tmp_path: Path
) -> None:
    pool = LeaderChannels(trust, SteppedClock(), MAX_AGE_S)
    async with leader(ca, "n1", tmp_path) as n1, leader(ca, "n2", tmp_path) as n2:
        await append(pool, n1, "g", group="g")
        await append(pool, n2, "h", group="h")
        assert pool.statistics().open_channels == 2  # one per group
        await pool.close()
        assert pool.statistics() == LeaderChannelStatistics(
            open_channels=0, dialled=2, reused=0, closed=2
        )
        with pytest.raises(Unreachable, match="shutting down"):
            await append(pool, n1, "after")
        assert n1.store.last.index == 1
