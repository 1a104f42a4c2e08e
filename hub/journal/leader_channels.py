"""The hub's channels to journal leaders: one mTLS channel per group, reused across the
operator appends the hub forwards (`Replication.JournalAppend` → the leader's `Peer.Append`).

Every other connection in the fleet is dialled by an agent and kept open; this is the one
the hub dials. Dialling per append cost a TLS handshake and a connection each time; a
pooled channel costs one per leader. A pooled channel serves an append only while what
its handshake rested on still holds (`replacement`, pure); otherwise it is replaced:

- the group's leader changed, or the leader's peer address did;
- the hub's credentials changed (`TrustStore.version`: a CA rotation, or old CAs retired
  and the server certificate re-issued). grpc client credentials do not reload
  (grpc/grpc#15735), and a leader that no longer trusts the CA of the hub's old
  certificate refuses every call on the old connection (agent/journal/peer.py checks the caller
  per call);
- it is older than `max_age_s` (the hub's `[certs].max_connection_age_s`): the leader's
  certificate is verified at the handshake only, so it is verified again that often;
- a call on it failed in transport (UNAVAILABLE, DEADLINE_EXCEEDED): grpc would hold the
  channel in reconnect backoff and fail the next append at once, where a fresh channel
  tries at once, as dialling per append did.

A replaced channel is closed when its last call ends, never under a call. The pool holds
at most one channel per group (plus replaced ones finishing their calls) and never
outlives the hub: `close()` runs at shutdown, after the server stopped serving the calls
that use it. It never shares a connection with another channel (`peer_options`: a
private subchannel pool) and never decides who leads: it dials what the caller names.
"""

import contextlib
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import grpc

from edgecommon.clock import Clock
from edgecommon.errors import Unreachable
from edgecommon.pb import replication_pb2_grpc
from edgecommon.peerwire import peer_options

log = logging.getLogger("edge-hub.replication")
# Failures after which a channel is not trusted to try again at once (see the docstring).
TRANSPORT_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class CredentialSource(Protocol):
    """The hub's client credentials (hub/pki/trust.py's TrustStore): `version` grows whenever
    they are replaced."""

    @property
    def version(self) -> int: ...

    def channel_credentials(self) -> grpc.ChannelCredentials: ...


class Replaced(enum.StrEnum):
    """Why a pooled channel was closed."""

    LEADER_CHANGED = "leader_changed"
    ADDRESS_CHANGED = "address_changed"
    CREDENTIALS_CHANGED = "credentials_changed"
    AGED = "aged"
    FAILED = "failed"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class Dialled:
    """What a pooled channel's handshake rested on."""

    leader: str
    address: str
    credentials_version: int
    at_mono: float


@dataclass(frozen=True)
class LeaderChannelStatistics:
    open_channels: int  # pooled, plus replaced ones still finishing their calls
    dialled: int
    reused: int
    closed: int


def replacement(
    dialled: Dialled,
    leader: str,
    address: str,
    credentials_version: int,
    now_mono: float,
    max_age_s: float,
) -> Replaced | None:
    """Why a channel dialled as `dialled` must not carry an append to `leader` at `address`
    with the hub's credentials at `credentials_version`, at `now_mono`; None if it may."""
    if dialled.leader != leader:
        return Replaced.LEADER_CHANGED
    if dialled.address != address:
        return Replaced.ADDRESS_CHANGED
    if dialled.credentials_version != credentials_version:
        return Replaced.CREDENTIALS_CHANGED
    if now_mono - dialled.at_mono >= max_age_s:
        return Replaced.AGED
    return None


def _because(why: Replaced, leader: str, address: str) -> str:
    return {
        Replaced.LEADER_CHANGED: f"the leader is now {leader}",
        Replaced.ADDRESS_CHANGED: f"it now serves at {address}",
        Replaced.CREDENTIALS_CHANGED: "the hub's credentials changed",
        Replaced.AGED: "its certificate is verified again on a new connection",
        Replaced.FAILED: "a call on it failed",
        Replaced.SHUTDOWN: "the hub is shutting down",
    }[why]


class _Pooled:
    """One channel and the calls using it right now."""

    def __init__(self, group: str, dialled: Dialled, channel: grpc.aio.Channel) -> None:
        self.group = group
        self.dialled = dialled
        self.channel = channel
        self.stub = replication_pb2_grpc.PeerStub(channel)
        self.calls = 0
        self.replaced: Replaced | None = None


class LeaderChannels:
    def __init__(self, credentials: CredentialSource, clock: Clock, max_age_s: float) -> None:
        self._credentials = credentials
        self._clock = clock
        self._max_age_s = max_age_s
        self._by_group: dict[str, _Pooled] = {}
        self._draining: list[_Pooled] = []  # replaced, closed once their last call ends
        self._shut = False
        self._dialled = 0
        self._reused = 0
        self._closed = 0

    def statistics(self) -> LeaderChannelStatistics:
        return LeaderChannelStatistics(
            open_channels=len(self._by_group) + len(self._draining),
            dialled=self._dialled,
            reused=self._reused,
            closed=self._closed,
        )

    @contextlib.asynccontextmanager
    async def peer(
        self, group: str, leader: str, address: str
    ) -> AsyncIterator[replication_pb2_grpc.PeerStub]:
        """The Peer service of `leader` (the node its certificate must name) at `address`,
        on the group's pooled channel. A call that fails in transport retires the channel."""
        if self._shut:
            raise Unreachable(f"leader {leader} at {address}: the hub is shutting down")
        pooled, idle = self._take(group, leader, address)
        pooled.calls += 1
        try:
            if idle is not None:
                await self._close(idle)
            yield pooled.stub
        except grpc.aio.AioRpcError as err:
            if err.code() in TRANSPORT_FAILURES:
                self._replace(pooled, Replaced.FAILED, leader, address)
            raise
        finally:
            pooled.calls -= 1
            if pooled.replaced is not None and pooled.calls == 0:
                await self._close(pooled)

    def _take(self, group: str, leader: str, address: str) -> tuple[_Pooled, _Pooled | None]:
        """The group's channel, dialled anew if it may not carry this call; and the
        replaced one if no call uses it any more (the caller closes it). Synchronous, so
        concurrent appends to one group never dial twice."""
        version, now = self._credentials.version, self._clock.monotonic()
        current = self._by_group.get(group)
        if current is not None:
            why = replacement(current.dialled, leader, address, version, now, self._max_age_s)
            if why is None:
                self._reused += 1
                return current, None
            self._replace(current, why, leader, address)
        dialled = Dialled(leader, address, version, now)
        channel = grpc.aio.secure_channel(
            address, self._credentials.channel_credentials(), options=peer_options(leader)
        )
        pooled = self._by_group[group] = _Pooled(group, dialled, channel)
        self._dialled += 1
        log.info(
            "dialled journal leader %s of group %s at %s for operator appends; "
            "later appends reuse this channel",
            leader,
            group,
            address,
        )
        idle = current if current is not None and current.calls == 0 else None
        return pooled, idle

    def _replace(self, pooled: _Pooled, why: Replaced, leader: str, address: str) -> None:
        if pooled.replaced is not None:
            return
        pooled.replaced = why
        if self._by_group.get(pooled.group) is pooled:
            del self._by_group[pooled.group]
        self._draining.append(pooled)
        log.info(
            "closing the channel to journal leader %s of group %s at %s: %s",
            pooled.dialled.leader,
            pooled.group,
            pooled.dialled.address,
            _because(why, leader, address),
        )

    async def _close(self, pooled: _Pooled) -> None:
        if pooled not in self._draining:
            return  # closed already (by shutdown, or by another call's finish)
        self._draining.remove(pooled)
        self._closed += 1
        await pooled.channel.close()

    async def close(self) -> None:
        """At shutdown, once no call can use a channel: close every channel now."""
        self._shut = True
        for pooled in list(self._by_group.values()):
            self._replace(pooled, Replaced.SHUTDOWN, pooled.dialled.leader, "")
        for pooled in list(self._draining):
            await self._close(pooled)
