"""Channels from edgectl: to the hub with the operator credential, to the local agent."""

import contextlib
import functools
import grp
import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import grpc

from edgecommon import grpcopts, pki
from edgecommon.cli.context_dir import Context
from edgecommon.errors import CredentialError, PermissionDenied, Unreachable
from edgecommon.pb import (
    agent_pb2_grpc,
    audit_pb2_grpc,
    certs_pb2_grpc,
    fleet_pb2_grpc,
    rbac_pb2_grpc,
    replication_pb2_grpc,
)
from edgecommon.rpc import raise_from_rpc

S = TypeVar("S")  # a generated gRPC stub class


def operator_credentials(context: Context) -> grpc.ChannelCredentials:
    paths = (context.key_path, context.cert_path, context.ca_path)
    if not all(p.exists() for p in paths):
        raise CredentialError(
            f"no operator credential in {context.directory}: run 'edgectl login --token T "
            "--hub HOST:PORT' (or 'edgectl operator bootstrap' on the hub host)"
        )
    pki.load_private_key(context.key_path)
    pki.load_certificate(context.cert_path)
    pki.load_certificates(context.ca_path, "trust bundle")
    return grpc.ssl_channel_credentials(
        root_certificates=context.ca_path.read_bytes(),
        private_key=context.key_path.read_bytes(),
        certificate_chain=context.cert_path.read_bytes(),
    )


@dataclass
class Call:
    """Run unary calls with a deadline and map failures to EdgeErrors."""

    target: str
    timeout_s: float
    metadata: tuple[tuple[str, str], ...] = ()

    async def __call__(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as err:
            raise_from_rpc(err, self.target)

    async def stream(self, method: Any, request: Any) -> AsyncIterator[Any]:
        """A server-streaming call; the deadline covers the whole stream."""
        try:
            async for item in method(request, timeout=self.timeout_s, metadata=self.metadata):
                yield item
        except grpc.aio.AioRpcError as err:
            raise_from_rpc(err, self.target)


def hub_metadata(context: Context) -> tuple[tuple[str, str], ...]:
    """A request id for the audit log, and AUTONOMY_OPERATOR when set."""
    metadata = [("x-request-id", secrets.token_hex(8))]
    if context.claimed_operator:
        metadata.append(("autonomy-operator", context.claimed_operator))
    return tuple(metadata)


@contextlib.asynccontextmanager
async def hub_channel(
    context: Context, address: str, timeout_s: float
) -> AsyncIterator[tuple[grpc.aio.Channel, Call]]:
    creds = operator_credentials(context)
    async with grpc.aio.secure_channel(
        address,
        creds,
        options=grpcopts.client_options(
            private_connection=False, max_message_bytes=grpcopts.MAX_REPORT_BYTES
        ),
    ) as channel:
        yield channel, Call(f"hub {address}", timeout_s, hub_metadata(context))


@contextlib.asynccontextmanager
async def agent_channel(
    socket: Path, label: str, timeout_s: float
) -> AsyncIterator[tuple[grpc.aio.Channel, Call]]:
    """A channel to the local agent's Unix socket (AgentLocal and JournalLocal)."""
    check_socket_access(socket)
    async with grpc.aio.insecure_channel(
        "unix:" + quote(str(socket), safe="/"),  # a URI to grpc-core: '%' must be escaped
        options=[("grpc.max_receive_message_length", grpcopts.MAX_LOCAL_MESSAGE_BYTES)],
    ) as channel:
        yield channel, Call(f"agent {label}", timeout_s)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_socket_access(socket: Path) -> None:
    """Say why the agent's socket cannot be used before gRPC says only 'unavailable': the
    file modes are the agent's first fence, and the fix is a group membership."""
    for place, wanted in [*((d, os.X_OK) for d in reversed(socket.parents)), (socket, os.W_OK)]:
        try:
            st = place.stat()
        except FileNotFoundError:
            raise Unreachable(
                f"agent socket {socket} does not exist: is edge-agent running on this node? "
                "(choose another with --node or --socket)"
            ) from None
        if not os.access(place, wanted):
            group = _group_name(st.st_gid)
            raise PermissionDenied(
                f"cannot use the agent socket {socket}: {place} is group {group}, mode "
                f"{stat.S_IMODE(st.st_mode):o}, and this user is not in group {group}; ask an "
                f"administrator to run 'usermod -aG {group} USER' (then log in again)"
            )


@contextlib.asynccontextmanager
async def hub_stub(
    stub: Callable[[grpc.aio.Channel], S], context: Context, address: str, timeout_s: float
) -> AsyncIterator[tuple[S, Call]]:
    """A stub of one of the hub's services over a channel with the operator credential."""
    async with hub_channel(context, address, timeout_s) as (channel, call):
        yield stub(channel), call


@contextlib.asynccontextmanager
async def agent_stub(
    stub: Callable[[grpc.aio.Channel], S], socket: Path, label: str, timeout_s: float
) -> AsyncIterator[tuple[S, Call]]:
    """A stub of one of the local agent's services over its Unix socket."""
    async with agent_channel(socket, label, timeout_s) as (channel, call):
        yield stub(channel), call


# Each used as `async with fleet(context, address, timeout_s) as (stub, call)`.
fleet = functools.partial(hub_stub, fleet_pb2_grpc.FleetStub)
rbac = functools.partial(hub_stub, rbac_pb2_grpc.RbacStub)
audit = functools.partial(hub_stub, audit_pb2_grpc.AuditStub)
certs = functools.partial(hub_stub, certs_pb2_grpc.CertsStub)
replication = functools.partial(hub_stub, replication_pb2_grpc.ReplicationStub)
local_agent = functools.partial(agent_stub, agent_pb2_grpc.AgentLocalStub)
local_journal = functools.partial(agent_stub, replication_pb2_grpc.JournalLocalStub)
