"""The local socket's relay and gate in-process, over real Unix sockets and a real gRPC
server: what they rely on from grpcio, and what they refuse."""

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest

from agent.local.auth import AccessPolicy, LocalCaller, RoleGroups
from agent.local.gate import LocalGate
from agent.local.relay import CallerRegistry, LocalRelay, peer_caller, private_dir_for
from tests.procs import short_tmpdir

PACKAGE = "autonomyops.edge.v1"
POLICY = AccessPolicy(
    os.geteuid(),
    "agent",
    RoleGroups((), frozenset()),
    RoleGroups((), frozenset()),
    RoleGroups((), frozenset()),
)


class Served:
    """A relay in front of a gRPC server with the local gate and two test methods:
    AgentLocal/Status (mapped) echoes the peer address, AgentLocal/NotMapped is not."""

    def __init__(self, root: Path, max_per_caller: int = 32) -> None:
        self.callers = CallerRegistry()
        self.closed: list[LocalCaller] = []
        self.relay = LocalRelay(
            root / "agent.sock",
            0o660,
            self.callers,
            max_per_caller=max_per_caller,
            exempt=lambda _: False,
            on_closed=self.closed.append,
        )
        self.server: grpc.aio.Server | None = None

    async def start(self) -> "Served":
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return context.peer().encode() + b"|" + request

        handlers = {
            name: grpc.unary_unary_rpc_method_handler(echo) for name in ("Status", "NotMapped")
        }
        self.relay.prepare()
        self.server = grpc.aio.server(
            interceptors=[LocalGate(self.callers, POLICY)],
            options=[("grpc.max_receive_message_length", 8 << 20)],
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(f"{PACKAGE}.AgentLocal", handlers),)
        )
        self.server.add_insecure_port(self.relay.grpc_target)
        await self.server.start()
        await self.relay.start()
        return self

    async def stop(self) -> None:
        await self.relay.stop_accepting()
        assert self.server is not None
        await self.server.stop(0)
        await self.relay.close()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    root = short_tmpdir()
    s = await Served(root).start()
    try:
        yield s
    finally:
        await s.stop()
        shutil.rmtree(root, ignore_errors=True)


def channel(path: Path) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        "unix:" + quote(str(path), safe="/"),
        options=[
            ("grpc.use_local_subchannel_pool", 1),  # one connection per channel
            ("grpc.max_receive_message_length", 8 << 20),
        ],
    )


async def status(ch: grpc.aio.Channel, body: bytes = b"") -> bytes:
    return bytes(await ch.unary_unary(f"/{PACKAGE}.AgentLocal/Status")(body, timeout=5))


async def test_grpc_reports_the_relays_bound_client_path_as_the_peer(served: Served) -> None:
    """The fact the design rests on (grpcio gives no peer credentials on a Unix socket,
    but does report the peer's bound address): re-checked here for the grpcio in use."""
    async with channel(served.relay.public) as ch:
        peer = (await status(ch)).split(b"|")[0].decode()
        caller = served.callers.of(peer)
        assert peer.startswith(f"unix:{private_dir_for(served.relay.public)}/c")
        assert caller is not None
        assert (caller.uid, caller.gid, caller.pid) == (os.geteuid(), os.getegid(), os.getpid())
        assert caller.groups == frozenset(os.getgroups())
        assert await status(ch) == (peer + "|").encode()  # same connection, same peer
    async with channel(served.relay.public) as ch:
        other = (await status(ch)).split(b"|")[0].decode()
    assert other != peer


@pytest.mark.parametrize("name", ["with space", "pct%41", "ünï"])
async def test_a_socket_directory_with_any_name_still_identifies_callers(name: str) -> None:
    """grpc-core percent-encodes the peer path; the registry must still find the caller."""
    root = short_tmpdir() / name
    root.mkdir()
    served = await Served(root).start()
    try:
        async with channel(served.relay.public) as ch:
            peer = (await status(ch)).split(b"|")[0].decode()
        assert peer.startswith("unix:")
    finally:
        await served.stop()
        shutil.rmtree(root.parent, ignore_errors=True)


async def test_an_rpc_missing_from_the_permission_table_is_refused(served: Served) -> None:
    async with channel(served.relay.public) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ch.unary_unary(f"/{PACKAGE}.AgentLocal/NotMapped")(b"", timeout=5)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "NotMapped has no local permission mapping" in (caught.value.details() or "")


async def test_a_call_on_the_private_socket_itself_gets_no_identity(served: Served) -> None:
    async with channel(served.relay.grpc_path) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await status(ch)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "unidentified local caller" in (caught.value.details() or "")


async def test_the_private_directory_is_the_agents_alone(served: Served) -> None:
    st = private_dir_for(served.relay.public).stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(served.relay.public.stat().st_mode) == 0o660


async def test_large_messages_cross_the_relay_intact_both_ways(served: Served) -> None:
    body = os.urandom(6 << 20)
    async with channel(served.relay.public) as ch:
        answers = await asyncio.gather(*(status(ch, body) for _ in range(3)))
    assert all(a.endswith(body) for a in answers)


async def test_a_closed_connection_is_forgotten_and_reported_once(served: Served) -> None:
    async with channel(served.relay.public) as ch:
        peer = (await status(ch)).split(b"|")[0].decode()
    await wait_for(lambda: served.callers.of(peer) is None)
    assert len(served.closed) == 1
    assert not Path(peer.removeprefix("unix:")).exists()


async def test_connections_beyond_the_per_caller_cap_are_closed() -> None:
    root = short_tmpdir()
    served = await Served(root, max_per_caller=2).start()
    try:
        first, second, third = (channel(served.relay.public) for _ in range(3))
        await status(first)
        await status(second)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await status(third)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert served.relay.stats.refused >= 1
        await first.close()
        await wait_for(lambda: len(served.callers) == 1)
        fourth = channel(served.relay.public)
        await status(fourth)
        for ch in (second, third, fourth):
            await ch.close()
    finally:
        await served.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not private_dir_for(served.relay.public).exists()


async def wait_for(check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.skipif(os.geteuid() != 0, reason="setting another process's groups needs root")
@pytest.mark.parametrize(("count", "seen"), [(3, 3), (300, None)])
def test_a_callers_groups_come_from_the_kernel_or_else_the_group_database(
    count: int, seen: int | None
) -> None:
    """Up to 256 supplementary groups come from SO_PEERGROUPS as the caller had them; a
    caller in more (beyond Python's getsockopt buffer) gets its uid's groups from the
    user database instead of being refused."""
    root = short_tmpdir()
    path = root / "s.sock"
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            server.listen()
            code = (
                f"import os, socket, sys; os.setgroups(range(50000, 50000 + {count})); "
                f"s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); sys.stdin.read()"
            )
            child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
            try:
                conn, _ = server.accept()
                with conn:
                    caller = peer_caller(conn, 1)
            finally:
                child.communicate(b"", timeout=30)
        assert caller.pid == child.pid
        if seen is not None:
            assert caller.groups == frozenset(range(50000, 50000 + count))
        else:
            assert caller.groups == frozenset(os.getgrouplist("root", 0))
    finally:
        shutil.rmtree(root, ignore_errors=True)
