"""The bare-gRPC floor for bench/link.py: a minimal server and minimal clients, no product code.

    python bench/_bare.py server SPEC.json    one grpc.aio server, one bidi method
    python bench/_bare.py clients SPEC.json   many clients, each with its own channel

Both speak raw bytes on `/bench.Link/Connect` (no protobuf): the client sends a register
message, waits for the answer, then sends a heartbeat of about the product's size every
second while reading; the server answers the register, counts messages and keeps
one reader task per stream (the product hub's shape). mTLS uses the same CA and
certificates as the product run; the keepalive options come in the spec (the driver
copies the product's), so the two runs differ only in the code on top of grpc.

Status goes to stdout as one JSON line every STATUS_EVERY_S; the driver reads it. The
clients exit when their stdin closes; the server ends every stream and stops on SIGTERM.
"""

import asyncio
import json
import os
import random
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

METHOD = "/bench.Link/Connect"
STATUS_EVERY_S = 0.2
REGISTER_TIMEOUT_S = 10.0
STREAM_DEADLINE_S = 7200.0
STOP_GRACE_S = 5.0
HEARTBEAT_S = 1.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 30.0
# About the size of the product's serialized Heartbeat (seq, version, 4 floats, rss).
HEARTBEAT_BODY = b"H" + bytes(47)


# Why a link attempt failed, from the words grpc (or the product) uses, first match wins.
FAILURE_KINDS = (
    ("Connection refused", "connection refused"),
    ("before receiving SETTINGS", "connect timeout (no HTTP/2 SETTINGS in time)"),
    ("connect() timed out", "TCP connect timed out"),
    ("Connection timed out", "TCP connect timed out"),
    ("Handshake", "TLS handshake failed"),
    ("handshaker shutdown", "handshake cut short (connect timeout)"),
    ("ping timeout", "keepalive ping timeout"),
    ("Internal error from Core", "INTERNAL from grpc core"),
    ("RPC already finished", "write on a finished RPC"),
    ("ended the stream", "stream ended by the server"),
    ("StreamEnded", "stream ended by the server"),
    ("back off", "told to back off"),
    ("registration in time", "no registration answer in time"),
    ("no register message within", "server timed out waiting for register"),
    ("CANCELLED", "stream cancelled"),
    ("Broken pipe", "broken pipe"),
    ("TimeoutError", "no registration answer in time"),
)
FAILURES: Counter[str] = Counter()


def failure_kind(text: str) -> str:
    for words, kind in FAILURE_KINDS:
        if words in text:
            return kind
    return "other: " + text[-100:].replace("\n", " ")


def raise_nofile() -> None:
    """Soft file-descriptor limit up to the hard one: one socket per agent."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def emit(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def options(spec: dict, key: str) -> list[tuple[str, int | str]]:
    return [(name, value) for name, value in spec[key]]


# --- server ------------------------------------------------------------------------------


@dataclass
class ServerState:
    """What the floor server knows: open registered streams and messages received."""

    registered: int = 0
    messages: int = 0
    first_register_wall: float = 0.0
    last_register_wall: float = 0.0
    sessions: set[asyncio.Future] = field(default_factory=set)

    async def connect(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        try:
            first = await asyncio.wait_for(context.read(), REGISTER_TIMEOUT_S)
        except TimeoutError:
            return
        if first is grpc.aio.EOF or not first.startswith(b"R"):
            return
        self.messages += 1
        done = asyncio.get_running_loop().create_future()
        self.sessions.add(done)
        self.registered += 1
        self.last_register_wall = time.time()
        self.first_register_wall = self.first_register_wall or self.last_register_wall
        reader = asyncio.create_task(self._read(context, done))
        try:
            await context.write(b"OK")
            await done
        finally:
            reader.cancel()
            self.sessions.discard(done)
            self.registered -= 1

    async def _read(self, context: grpc.aio.ServicerContext, done: asyncio.Future) -> None:
        try:
            while await context.read() is not grpc.aio.EOF:
                self.messages += 1
        except Exception:  # a broken stream ends the session, whatever broke it
            pass
        if not done.done():
            done.set_result(None)

    def close_all(self) -> None:
        for done in list(self.sessions):
            if not done.done():
                done.set_result(None)

    def status(self) -> dict:
        return {
            "t": time.time(),
            "reg": self.registered,
            "msgs": self.messages,
            "first": self.first_register_wall,
            "last": self.last_register_wall,
        }


async def report(status: object) -> None:
    while True:
        emit(status())  # type: ignore[operator]
        await asyncio.sleep(STATUS_EVERY_S)


async def serve(spec: dict) -> None:
    state = ServerState()
    server = grpc.aio.server(options=options(spec, "server_options"))
    handler = grpc.stream_stream_rpc_method_handler(state.connect)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Link", {"Connect": handler}),)
    )
    creds = grpc.ssl_server_credentials(
        [(Path(spec["key"]).read_bytes(), Path(spec["cert"]).read_bytes())],
        root_certificates=Path(spec["ca"]).read_bytes(),
        require_client_auth=True,
    )
    if server.add_secure_port(spec["listen"], creds) == 0:
        raise OSError(f"cannot listen on {spec['listen']}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    reporter = asyncio.create_task(report(state.status))
    await stop.wait()
    state.close_all()
    await server.stop(STOP_GRACE_S)
    reporter.cancel()


# --- clients -----------------------------------------------------------------------------


@dataclass
class Client:
    """One simulated bare agent: its files, its state, its counters."""

    name: str
    key: bytes
    cert: bytes
    connected: bool = False
    since_wall: float = 0.0
    connects: int = 0
    heartbeats: int = 0


class StreamEnded(Exception):
    pass


async def heartbeats(call: grpc.aio.StreamStreamCall, client: Client) -> None:
    while True:
        await call.write(HEARTBEAT_BODY)
        client.heartbeats += 1
        await asyncio.sleep(HEARTBEAT_S)


async def receive(call: grpc.aio.StreamStreamCall) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass
    raise StreamEnded


async def attempt(spec: dict, ca: bytes, client: Client) -> None:
    creds = grpc.ssl_channel_credentials(ca, client.key, client.cert)
    async with grpc.aio.secure_channel(
        spec["target"], creds, options=options(spec, "client_options")
    ) as channel:
        call = channel.stream_stream(METHOD)(timeout=STREAM_DEADLINE_S)
        try:
            await call.write(b"R" + client.name.encode())
            first = await asyncio.wait_for(call.read(), REGISTER_TIMEOUT_S)
            if first is grpc.aio.EOF:
                raise StreamEnded
            client.connected, client.since_wall = True, time.time()
            client.connects += 1
            async with asyncio.TaskGroup() as tg:
                tg.create_task(heartbeats(call, client))
                tg.create_task(receive(call))
        finally:
            client.connected = False
            call.cancel()


async def run_client(spec: dict, ca: bytes, client: Client, rng: random.Random) -> None:
    """Connect forever with the product's backoff shape: uniform(0, min(cap, 0.5 * 2**n))."""
    n = 0
    while True:
        before = client.connects
        try:
            await attempt(spec, ca, client)
        except Exception as exc:  # any failure means: back off and retry, as the agent does
            FAILURES[failure_kind(flatten(exc))] += 1
        if client.connects > before:
            n = 0
        await asyncio.sleep(rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_INITIAL_S * 2**n)))
        n += 1


def flatten(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " | ".join(flatten(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def client_status(clients: list[Client]) -> dict:
    up = [c.since_wall for c in clients if c.connected]
    return {
        "t": time.time(),
        "c": len(up),
        "last": max(up, default=0.0),
        "n": sum(c.connects for c in clients),
        "hb": sum(c.heartbeats for c in clients),
        "fails": dict(FAILURES),
    }


async def wait_for_go(commands: asyncio.StreamReader) -> float | None:
    """Wait for 'go [RATE]' from the driver: None if it went away, else starts per second
    (0: all at once)."""
    words = (await commands.readline()).split()
    if not words or words[0] != b"go":
        return None
    return float(words[1]) if len(words) > 1 else 0.0


async def start_ramped(
    coros: list[Coroutine[Any, Any, None]], rate_per_s: float, names: list[str]
) -> list[asyncio.Task[None]]:
    """Start the coroutines as tasks, all at once or `rate_per_s` per second."""
    tasks, started = [], time.monotonic()
    for i, (coro, name) in enumerate(zip(coros, names, strict=True)):
        if rate_per_s > 0 and (delay := started + i / rate_per_s - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(coro, name=name))
    return tasks


async def stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def clients_main(spec: dict) -> None:
    certs = Path(spec["certs"])
    ca = (certs / "ca.crt").read_bytes()
    clients = [
        Client(n, (certs / f"{n}.key").read_bytes(), (certs / f"{n}.crt").read_bytes())
        for n in spec["names"]
    ]
    commands = await stdin_reader()
    emit({"ready": True})
    rate = await wait_for_go(commands)
    if rate is None:
        return
    reporter = asyncio.create_task(report(lambda: client_status(clients)))
    coros = [
        run_client(spec, ca, c, random.Random(spec["seed"] + i)) for i, c in enumerate(clients)
    ]
    tasks = await start_ramped(coros, rate, [c.name for c in clients])
    await commands.readline()  # "stop" or EOF: the driver is done with us
    # Thousands of live channels make an orderly shutdown slow: just leave.
    del tasks, reporter
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    role, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    raise_nofile()
    if role == "server":
        asyncio.run(serve(spec))
    elif role == "clients":
        asyncio.run(clients_main(spec))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
