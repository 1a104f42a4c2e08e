"""The Peer service every agent serves (mutual TLS, fleet certificates) and its client side.

Callers are identified from the TLS session only (`auth_context`), per call: members of
this node's group may pull, ask for hashes and take snapshots; operators may append on
the leader (edgectl journal append --group). A replica reaches the leader by the address
the hub gave it and checks that the certificate there belongs to the node the hub named.

The TLS handshake checks a certificate once, when the connection opens; so expiry, issuer
and the hub's revoked serials (agent/pki/revocations.py) are checked again on every call, and
a revocation ends the calls in flight with the revoked certificate (a long poll, a
snapshot) at once. grpc offers no way to close one client's connection from the server:
it stays open, and every call on it is refused.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import grpc
from cryptography import x509

from agent.journal.replication import Replication, append_result, entry_pb
from agent.pki.credentials import NodeCredentials, channel_credentials
from agent.pki.revocations import RevokedSerials
from edgecommon import grpcopts, pki
from edgecommon.boundary import RequestBoundary
from edgecommon.clock import Clock
from edgecommon.errors import PermissionDenied, Unauthenticated
from edgecommon.identity import Identity, Kind
from edgecommon.pb import replication_pb2, replication_pb2_grpc
from edgecommon.peerwire import MAX_PEER_MESSAGE_BYTES, ON_BEHALF_OF, peer_options
from edgecommon.rpc import handle_errors, handle_stream_errors

log = logging.getLogger("edge-agent.peer")
SNAPSHOT_CHUNK = 2000
MAX_WAIT_S = 5.0


@functools.lru_cache(maxsize=256)
def _parse(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def peer_identity(
    context: grpc.aio.ServicerContext,
    creds: NodeCredentials,
    wall: float,
    revoked: RevokedSerials,
) -> tuple[Identity, str]:
    """The caller's identity and certificate serial from its TLS session; expiry, issuer
    and revocation checked on every call."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        raise Unauthenticated("no client certificate: the Peer service needs a fleet credential")
    cert = _parse(pems[0])
    serial = pki.serial_hex(cert)
    if cert.not_valid_after_utc.timestamp() <= wall:
        raise Unauthenticated(f"client certificate {serial} has expired")
    if serial in revoked:
        raise CertificateRevoked(serial)
    if all(cert.issuer != ca.subject for ca in creds.bundle):
        raise Unauthenticated("client certificate is not from this fleet's CA")
    identity = pki.identity_of(cert, creds.trust_domain)
    if identity is None:
        raise Unauthenticated("client certificate does not carry a fleet identity")
    return identity, serial


class CertificateRevoked(Unauthenticated):
    """The caller's certificate is on the hub's revoked list."""

    def __init__(self, serial: str) -> None:
        super().__init__(
            f"client certificate {serial} was revoked by the hub; that node must re-enroll "
            "with a new join token"
        )


@dataclass(frozen=True)
class PeerStatistics:
    refused_revoked: int  # calls refused: the caller's certificate is revoked
    ended_by_revocation: int  # calls in flight ended when their certificate was revoked
    revoked_serials: int  # on the hub's list this node holds


class ServedCertificate:
    """This node's certificate as its Peer service presents it, with the CAs it accepts
    callers from. A renewal (or a new trust bundle) replaces it: grpc's dynamic server
    credentials serve it from the next handshake, and open connections stay up (the old
    certificate is still valid). Its own object because the server's port is bound with it
    before the journal (which reports that port) and so the service exist."""

    def __init__(self, creds: NodeCredentials) -> None:
        self.creds = creds

    def adopt(self, creds: NodeCredentials) -> None:
        self.creds = creds

    def server_credentials(self) -> grpc.ServerCredentials:
        served = [self.creds]

        def configuration(creds: NodeCredentials) -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration(
                [(creds.key_pem, creds.cert_pem)], root_certificates=creds.bundle_pem
            )

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if served[0] is self.creds:
                return None
            served[0] = self.creds
            return configuration(self.creds)

        return grpc.dynamic_ssl_server_credentials(
            configuration(self.creds), fetch, require_client_authentication=True
        )


class PeerService(replication_pb2_grpc.PeerServicer):
    def __init__(self, rep: Replication, served: ServedCertificate, clock: Clock) -> None:
        self.rep = rep
        self.served = served
        self.clock = clock
        self.refused_revoked = 0
        self.ended_by_revocation = 0
        # Set (and replaced) whenever serials are revoked: calls in flight re-check theirs.
        self._revocation = asyncio.Event()
        rep.revoked.listeners.append(self._revoked)

    def statistics(self) -> PeerStatistics:
        return PeerStatistics(self.refused_revoked, self.ended_by_revocation, len(self.rep.revoked))

    def _revoked(self, serials: frozenset[str]) -> None:
        self._revocation.set()
        self._revocation = asyncio.Event()

    def _still_valid(self, serial: str) -> None:
        """For a call in flight: its certificate was not revoked since it began."""
        if serial in self.rep.revoked:
            self.ended_by_revocation += 1
            raise CertificateRevoked(serial)

    async def _unless_revoked(self, serial: str, work: Awaitable[None]) -> None:
        """Wait for `work` (a long poll), ended early if `serial` is revoked meanwhile."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                revocation = asyncio.ensure_future(self._revocation.wait())
                try:
                    await asyncio.wait((task, revocation), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    revocation.cancel()
                if task.done():
                    task.result()
                    return
                self._still_valid(serial)
        finally:
            task.cancel()

    @property
    def creds(self) -> NodeCredentials:
        return self.served.creds

    def _identity(self, context: grpc.aio.ServicerContext) -> tuple[Identity, str]:
        try:
            return peer_identity(context, self.creds, self.clock.wall(), self.rep.revoked)
        except CertificateRevoked:
            self.refused_revoked += 1
            raise

    def _member(self, context: grpc.aio.ServicerContext) -> tuple[Identity, str]:
        who, serial = self._identity(context)
        group = self.creds.identity.group
        if who.kind is not Kind.NODE or who.group != group:
            raise PermissionDenied(f"{who} is not a member of group {group}")
        return who, serial

    @handle_errors
    async def Pull(
        self, request: replication_pb2.PullRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.PullResponse:
        who, serial = self._member(context)
        rep, store = self.rep, self.rep.store
        if not rep.leading():
            return replication_pb2.PullResponse(
                status="not_leader",
                detail=str(rep.not_leader()),
                leader_last_index=store.last.index,
            )
        ours = await store.hash_at(request.after_index)
        if ours is None or ours != request.after_hash:
            return replication_pb2.PullResponse(
                status="diverged",
                leader_last_index=store.last.index,
                epoch=rep.leadership.epoch,
                detail=f"{who.name}'s entry {request.after_index} is not the leader's",
            )
        ack = rep.note_pull(who.name, request.after_index, serial, request.stream_token)
        answer = replication_pb2.PullResponse(
            status="ok",
            epoch=rep.leadership.epoch,
            stream_token=ack.token,
            acknowledged_index=ack.index,
        )
        if ack.connected:
            # Only a claim that counts is answered with entries: the replica that claimed
            # more pulls again from acknowledged_index (agent/journal/replica.py).
            rep.pull_open(who.name, True)
            try:
                wait = store.wait_beyond(request.after_index, min(request.wait_s, MAX_WAIT_S))
                await self._unless_revoked(serial, wait)
            finally:
                rep.pull_open(who.name, False)
            self._still_valid(serial)
            entries = await store.entries_after(
                request.after_index,
                max(1, min(request.max_entries or 1000, 10_000)),
                max(65536, min(request.max_bytes or 1 << 20, MAX_PEER_MESSAGE_BYTES // 2)),
            )
            answer.entries.extend(entry_pb(e) for e in entries)
            rep.sent(ack.token, request.after_index, entries[-1].index if entries else 0)
        answer.leader_last_index = store.last.index
        answer.commit_index = rep.commit_index
        return answer

    @handle_errors
    async def EntryHash(
        self, request: replication_pb2.EntryHashRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.EntryHashResponse:
        self._member(context)
        found = await self.rep.store.hash_at(request.index)
        return replication_pb2.EntryHashResponse(
            found=found is not None, hash=found or b"", last_index=self.rep.store.last.index
        )

    @handle_stream_errors
    async def Snapshot(
        self, request: replication_pb2.SnapshotRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[replication_pb2.SnapshotChunk]:
        _, serial = self._member(context)
        store = self.rep.store
        end = store.last.index
        async for batch in store.snapshot(SNAPSHOT_CHUNK):
            self._still_valid(serial)  # revoked while the snapshot streams: it ends here
            yield replication_pb2.SnapshotChunk(
                entries=[entry_pb(e) for e in batch], last_index=end
            )

    @handle_errors
    async def Append(
        self, request: replication_pb2.AppendRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.AppendResult:
        who, _ = self._identity(context)
        if who.kind is not Kind.HUB:
            raise PermissionDenied(
                f"{who} may not append over the Peer service: operators append through the hub "
                "(edgectl journal append --group G), which checks RBAC and audits"
            )
        operator = dict(context.invocation_metadata() or ()).get(ON_BEHALF_OF, "?")
        outcome = await self.rep.append(request.key, request.value)
        log.info(
            "entry %d appended for operator %s (through the hub)", outcome.entry.index, operator
        )
        return append_result(outcome, self.rep.me.name)


def bind_peer_server(listen: str, served: ServedCertificate) -> tuple[grpc.aio.Server, int]:
    """A Peer server bound to `listen`, not started, and its port: known before the journal
    that reports it is built (add the service, then start the server)."""
    server = grpc.aio.server(
        interceptors=[RequestBoundary(log)],
        options=grpcopts.server_options(max_message_bytes=MAX_PEER_MESSAGE_BYTES),
    )
    try:
        port = server.add_secure_port(listen, served.server_credentials())
    except RuntimeError as exc:  # grpc's word for an address in use or not on this host
        raise OSError(f"cannot listen on the Peer address {listen}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {listen} for the Peer service")
    return server, port


async def start_peer_server(
    rep: Replication, creds: NodeCredentials, clock: Clock, listen: str
) -> tuple[grpc.aio.Server, int, PeerService]:
    """Bind, serve and start at once, for a journal whose own address does not matter (it
    reports to no hub): tests and benches."""
    served = ServedCertificate(creds)
    server, port = bind_peer_server(listen, served)
    service = PeerService(rep, served, clock)
    replication_pb2_grpc.add_PeerServicer_to_server(service, server)
    await server.start()
    return server, port, service


@contextlib.asynccontextmanager
async def peer_channel(
    creds: NodeCredentials, address: str, node: str
) -> AsyncIterator[replication_pb2_grpc.PeerStub]:
    async with grpc.aio.secure_channel(
        address, channel_credentials(creds), options=peer_options(node)
    ) as channel:
        yield replication_pb2_grpc.PeerStub(channel)
