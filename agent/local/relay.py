"""The local socket: the agent accepts each connection itself, asks the kernel who is on
the other end, and relays the bytes to its gRPC server on a private socket.

Why a relay: grpcio tells a handler nothing about a Unix-socket peer. `context.peer()` is
"unix:" and the auth context says only "insecure" (or "local" with local credentials); no
uid, no pid (grpc/grpc#28755, #15511). What grpc-core does report is the peer's *bound*
address. So for every accepted connection the relay reads SO_PEERCRED (uid, gid, pid) and
SO_PEERGROUPS (the supplementary groups the caller had at connect), binds its own client
socket to a fresh path in a private directory, registers path -> caller, and connects to
the gRPC server's socket in that directory. A handler finds its caller by looking its
`context.peer()` up in CallerRegistry.

Why nobody can pose as another caller: the private directory is mode 0700 and owned by
the agent's user, so only that user and root can reach the gRPC socket or bind a path
there, and both are node operators anyway. A path is registered before its connection
carries a byte, stays bound (so cannot be taken by anyone else) while the connection
lives, and is forgotten when it closes. A peer address the registry does not know gets
no caller, and the gate refuses it.

Cost: one extra hop through this process for every byte, via asyncio protocols (no
copies beyond the socket buffers, no per-message parsing) with flow control both ways.

This module must never parse or alter what it relays.
"""

import asyncio
import contextlib
import errno
import logging
import os
import platform
import pwd
import shutil
import socket
import stat
import struct
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, unquote

from agent.local.auth import LocalCaller
from edgecommon.errors import ConfigError

log = logging.getLogger("edge-agent.local")

GRPC_SOCKET = "grpc.sock"
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid
# SO_PEERGROUPS (Linux 4.13) is 59 in asm-generic/socket.h, which these architectures use;
# others number it differently, and Python has no constant for it: there the groups come
# from the group database instead.
_SO_PEERGROUPS = 59
_GENERIC_SOCKET_ABI = {"x86_64", "i686", "aarch64", "armv7l", "armv6l", "riscv64"}


def private_dir_for(public: Path) -> Path:
    """Where the gRPC socket and the relay's client sockets live: beside the public one."""
    return public.parent / f".{public.name}.d"


@lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _supplementary_groups(sock: socket.socket, uid: int, gid: int) -> frozenset[int]:
    """The groups the peer had when it connected (SO_PEERGROUPS); without that socket
    option, or for a caller in more groups than Python's getsockopt buffer holds (1024
    bytes: 256 groups), the groups the user database gives the uid."""
    if sys.platform == "linux" and platform.machine() in _GENERIC_SOCKET_ABI:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 1024)
            return frozenset(struct.unpack(f"{len(raw) // 4}I", raw))
        except OSError as exc:
            # ENOPROTOOPT: a kernel before 4.13; ERANGE: more groups than fit.
            if exc.errno not in (errno.ENOPROTOOPT, errno.ERANGE):
                raise
    name = user_name(uid)
    if name.startswith("uid "):
        return frozenset()
    return frozenset(os.getgrouplist(name, gid))


def peer_caller(sock: socket.socket, connection: int) -> LocalCaller:
    """Who is at the other end of an accepted Unix connection, as the kernel recorded it."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    groups = _supplementary_groups(sock, uid, gid)
    return LocalCaller(uid, gid, pid, groups, user_name(uid), connection)


class CallerRegistry:
    """Open relayed connections, by the path the relay bound for each."""

    def __init__(self) -> None:
        self._by_path: dict[str, LocalCaller] = {}
        self._open_by_uid: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self._by_path)

    def add(self, path: str, caller: LocalCaller) -> None:
        self._by_path[path] = caller
        self._open_by_uid[caller.uid] += 1

    def remove(self, path: str) -> None:
        caller = self._by_path.pop(path, None)
        if caller is not None:
            self._open_by_uid[caller.uid] -= 1
            if not self._open_by_uid[caller.uid]:
                del self._open_by_uid[caller.uid]

    def of(self, peer: str) -> LocalCaller | None:
        """The caller behind gRPC's peer address ("unix:" and the path, which grpc-core
        percent-encodes: a socket directory with a space in its name shows as %20)."""
        if not peer.startswith("unix:"):
            return None
        path = peer.removeprefix("unix:")
        return self._by_path.get(path) or self._by_path.get(unquote(path))

    def open_for(self, uid: int) -> int:
        return self._open_by_uid[uid]

    def users(self) -> int:
        """Local users with an open connection."""
        return len(self._open_by_uid)


@dataclass
class RelayCounts:
    """Counted as connections come and go, since the agent started."""

    accepted: int = 0
    refused: int = 0  # over [local].max_connections_per_caller, or unreadable credentials
    closed: int = 0


@dataclass(frozen=True)
class RelayStatistics:
    accepted: int  # local connections relayed since the agent started
    refused: int  # over [local].max_connections_per_caller, or unreadable credentials
    closed: int
    open: int  # relayed connections open now
    connecting: int  # accepted, private side not connected yet
    callers: int  # local users with an open connection


class _Half(asyncio.Protocol):
    """One side of a relayed connection: what arrives here is written to the other side."""

    def __init__(self, pair: "_Pair") -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.other: _Half | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)

    def eof_received(self) -> bool:
        return False  # HTTP/2 never half-closes: the end of one side ends the pair

    def pause_writing(self) -> None:
        # Our outgoing buffer is full: stop reading what would be written into it.
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.close()


class _Pair:
    """A public connection and the private one it is relayed to."""

    def __init__(self, relay: "LocalRelay", caller: LocalCaller, path: str) -> None:
        self.relay = relay
        self.caller = caller
        self.path = path
        self.public = _Half(self)
        self.private = _Half(self)
        self.public.other, self.private.other = self.private, self.public
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for half in (self.public, self.private):
            if half.transport is not None:
                half.transport.close()
        self.relay._forget(self)


class LocalRelay:
    def __init__(
        self,
        public: Path,
        mode: int,
        callers: CallerRegistry,
        *,
        max_per_caller: int,
        exempt: Callable[[LocalCaller], bool],
        on_closed: Callable[[LocalCaller], None],
    ) -> None:
        self.public = public
        self.mode = mode
        self.private = private_dir_for(public)
        self.callers = callers
        self.max_per_caller = max_per_caller
        self.exempt = exempt
        self.on_closed = on_closed
        self.stats = RelayCounts()
        self._pairs: set[_Pair] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._next = 0
        self._server: asyncio.AbstractServer | None = None
        self._refusals_logged: set[int] = set()

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            accepted=self.stats.accepted,
            refused=self.stats.refused,
            closed=self.stats.closed,
            open=len(self._pairs),
            connecting=len(self._connecting),
            callers=self.callers.users(),
        )

    @property
    def grpc_path(self) -> Path:
        return self.private / GRPC_SOCKET

    @property
    def grpc_target(self) -> str:
        """The gRPC server's address: grpc-core reads it as a URI, so '%' must be escaped."""
        return "unix:" + quote(str(self.grpc_path), safe="/")

    def prepare(self) -> None:
        """Make the private directory afresh (0700, ours): call before the gRPC server binds."""
        if self.private.is_symlink():
            raise ConfigError([f"{self.private} is a symbolic link; remove it"])
        if self.private.exists():
            shutil.rmtree(self.private)  # sockets of a previous run
        self.private.mkdir(mode=0o700)
        self.private.chmod(0o700)  # no setgid bit inherited from the socket directory
        st = self.private.lstat()
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) != 0o700:
            raise ConfigError([f"{self.private} is not a private directory of this user"])

    async def start(self) -> None:
        self.public.unlink(missing_ok=True)  # a socket left by a previous run
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._accept, str(self.public), backlog=128)
        self.public.chmod(self.mode)

    def _accept(self) -> asyncio.Protocol:
        return _Acceptor(self)

    def _admit(self, transport: asyncio.Transport) -> None:
        """A new public connection: identify it, then relay it (or refuse it)."""
        self._next += 1
        sock = transport.get_extra_info("socket")
        try:
            caller = peer_caller(sock, self._next)
        except OSError as exc:
            log.warning("local connection refused: cannot read its credentials: %s", exc)
            self.stats.refused += 1
            transport.abort()
            return
        if not self.exempt(caller) and self.callers.open_for(caller.uid) >= self.max_per_caller:
            self.stats.refused += 1
            if caller.uid not in self._refusals_logged:  # once per user until it drops below
                self._refusals_logged.add(caller.uid)
                log.warning(
                    "local connections from %s refused: it has %d open, the most "
                    "[local].max_connections_per_caller allows",
                    caller,
                    self.max_per_caller,
                )
            transport.abort()
            return
        self.stats.accepted += 1
        pair = _Pair(self, caller, str(self.private / f"c{self._next:x}"))
        pair.public.connection_made(transport)
        transport.set_protocol(pair.public)
        transport.pause_reading()  # nothing moves until the private side is connected
        self._pairs.add(pair)
        self.callers.add(pair.path, caller)
        task = asyncio.get_running_loop().create_task(self._connect(pair))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, pair: _Pair) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind(pair.path)
            await loop.sock_connect(sock, str(self.grpc_path))
            await loop.create_unix_connection(lambda: pair.private, sock=sock)
        except OSError as exc:
            sock.close()
            log.warning("local connection from %s dropped: %s", pair.caller, exc)
            pair.close()
            return
        except asyncio.CancelledError:
            sock.close()
            pair.close()
            raise
        if pair.closed:  # the caller went away while we connected
            pair.private.transport.close()  # type: ignore[union-attr]
            return
        pair.public.transport.resume_reading()  # type: ignore[union-attr]

    def _forget(self, pair: _Pair) -> None:
        self._pairs.discard(pair)
        self.callers.remove(pair.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pair.path)
        self.stats.closed += 1
        if self.callers.open_for(pair.caller.uid) < self.max_per_caller:
            self._refusals_logged.discard(pair.caller.uid)
        self.on_closed(pair.caller)

    async def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.public.unlink(missing_ok=True)

    async def close(self) -> None:
        """Stop accepting, end every relayed connection, remove the private directory."""
        await self.stop_accepting()
        for task in list(self._connecting):
            task.cancel()
        for pair in list(self._pairs):
            pair.close()
        await asyncio.sleep(0)  # let the transports finish closing
        shutil.rmtree(self.private, ignore_errors=True)


class _Acceptor(asyncio.Protocol):
    """The protocol a public connection starts with; it hands the transport to a _Pair."""

    def __init__(self, relay: LocalRelay) -> None:
        self.relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.relay._admit(transport)  # type: ignore[arg-type]
