"""The bare-gRPC floor for bench/estop_fanout.py: grpc.aio and aiosqlite only, no product code.

    python bench/_estop_bare.py server SPEC.json    one grpc.aio server, one bidi method
    python bench/_estop_bare.py clients SPEC.json   many clients, each on its own channel

Raw bytes on `/bench.Estop/Connect` (no protobuf). A client opens its stream, sends
`R<name>`, waits for the answer, then sends a heartbeat of about the product's size every
spec["heartbeat_s"] from its single writer task (the agent's shape) while it reads. The
server keeps one reader task and one outbox per stream (the hub's shape).

A broadcast puts one small message on every stream's outbox:
    E<id>  latch: INSERT a row into the client's own SQLite file (WAL, synchronous=FULL,
           autocommit: one statement, one durable commit), then ack `A<id>`
    R<id>  release: DELETE that row, then ack
    N<id>  latch without the durable write: ack at once
and the server times it from the first put to the N-th ack read.

Both roles talk to the driver in JSON lines: `{"ready": true}` once, then exactly one
answer line per command line read from stdin. EOF on stdin or `{"cmd": "exit"}` ends them.
"""

import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import grpc

METHOD = "/bench.Estop/Connect"
REGISTER_TIMEOUT_S = 10.0
STREAM_DEADLINE_S = 7200.0
HEARTBEAT_S = 1.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 30.0
# About the size of the product's serialized Heartbeat (seq, version, 4 floats, rss).
HEARTBEAT_BODY = b"H" + bytes(47)
SCHEMA = "CREATE TABLE IF NOT EXISTS latch (id TEXT PRIMARY KEY)"


def raise_nofile() -> None:
    """Soft file-descriptor limit up to the hard one: a socket and 3 SQLite files per client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def options(spec: dict[str, Any], key: str) -> list[tuple[str, int | str]]:
    return [(name, value) for name, value in spec[key]]


async def stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve_commands(handle: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
    """Answer the driver's commands one at a time until EOF or `exit`."""
    commands = await stdin_reader()
    emit({"ready": True})
    while line := await commands.readline():
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        emit(await handle(command))
    sys.stdout.flush()
    os._exit(0)  # thousands of live channels make an orderly exit slow


# --- server ------------------------------------------------------------------------------


@dataclass
class Broadcast:
    """One broadcast in flight: which id, how many acks are expected, when they came."""

    message_id: bytes
    expected: int
    acked: int = 0
    last_ack: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def ack(self) -> None:
        self.acked += 1
        self.last_ack = time.perf_counter()
        if self.acked >= self.expected:
            self.done.set()


@dataclass
class FloorServer:
    """Open streams (name -> outbox), heartbeats counted, the broadcast being timed."""

    sessions: dict[str, asyncio.Queue[bytes | None]] = field(default_factory=dict)
    heartbeats: int = 0
    current: Broadcast | None = None

    async def connect(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        try:
            first = await asyncio.wait_for(context.read(), REGISTER_TIMEOUT_S)
        except TimeoutError:
            return
        if first is grpc.aio.EOF or not first.startswith(b"R"):
            return
        name = first[1:].decode()
        outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        previous = self.sessions.get(name)
        if previous is not None:
            previous.put_nowait(None)
        self.sessions[name] = outbox
        reader = asyncio.create_task(self._read(context, outbox))
        try:
            await context.write(b"OK")
            while (message := await outbox.get()) is not None:
                await context.write(message)
        finally:
            reader.cancel()
            if self.sessions.get(name) is outbox:
                del self.sessions[name]

    async def _read(self, context: grpc.aio.ServicerContext, outbox: asyncio.Queue) -> None:
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                if message.startswith(b"H"):
                    self.heartbeats += 1
                elif message.startswith(b"A"):
                    current = self.current
                    if current is not None and message[1:] == current.message_id:
                        current.ack()
        except Exception:  # a broken stream ends the session, whatever broke it
            pass
        outbox.put_nowait(None)

    async def broadcast(self, kind: str, message_id: str, timeout_s: float) -> dict[str, Any]:
        """Put `kind+id` on every outbox; seconds from the first put to the last ack."""
        current = Broadcast(message_id.encode(), len(self.sessions))
        self.current = current
        message = kind.encode() + current.message_id
        wall0, t0 = time.time(), time.perf_counter()
        for outbox in list(self.sessions.values()):
            outbox.put_nowait(message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(current.done.wait(), timeout_s)
        self.current = None
        return {
            "sent": current.expected,
            "acked": current.acked,
            "elapsed_s": current.last_ack - t0 if current.acked else None,
            "t0": wall0,
        }

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        if command["cmd"] == "status":
            return {"registered": len(self.sessions), "heartbeats": self.heartbeats}
        if command["cmd"] == "broadcast":
            return await self.broadcast(command["kind"], command["id"], command["timeout"])
        return {"error": f"unknown command {command['cmd']!r}"}


async def serve(spec: dict[str, Any]) -> None:
    state = FloorServer()
    server = grpc.aio.server(options=options(spec, "server_options"))
    handler = grpc.stream_stream_rpc_method_handler(state.connect)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Estop", {"Connect": handler}),)
    )
    creds = grpc.ssl_server_credentials(
        [(Path(spec["key"]).read_bytes(), Path(spec["cert"]).read_bytes())],
        root_certificates=Path(spec["ca"]).read_bytes(),
        require_client_auth=True,
    )
    if server.add_secure_port(spec["listen"], creds) == 0:
        raise OSError(f"cannot listen on {spec['listen']}")
    await server.start()
    await serve_commands(state.handle)


# --- clients -----------------------------------------------------------------------------


@dataclass
class Client:
    """One simulated bare agent: its certificate, its own SQLite latch, its link state."""

    name: str
    key: bytes
    cert: bytes
    db: aiosqlite.Connection
    connected: bool = False
    connects: int = 0


async def open_db(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
        await db.execute(f"PRAGMA {pragma}")
    await db.execute(SCHEMA)
    return db


async def apply(client: Client, message: bytes, outbox: asyncio.Queue[bytes]) -> None:
    """Do the latch work a message asks for, then queue its ack."""
    kind, message_id = message[:1], message[1:].decode()
    if kind == b"E":
        await client.db.execute("INSERT OR IGNORE INTO latch VALUES (?)", (message_id,))
    elif kind == b"R":
        await client.db.execute("DELETE FROM latch WHERE id = ?", (message_id,))
    elif kind != b"N":
        return
    outbox.put_nowait(b"A" + message[1:])


async def write_loop(call: grpc.aio.StreamStreamCall, outbox: asyncio.Queue[bytes]) -> None:
    while True:
        await call.write(await outbox.get())


async def heartbeat_loop(outbox: asyncio.Queue[bytes], period_s: float) -> None:
    while True:
        outbox.put_nowait(HEARTBEAT_BODY)
        await asyncio.sleep(period_s)


async def read_loop(
    call: grpc.aio.StreamStreamCall, client: Client, outbox: asyncio.Queue[bytes]
) -> None:
    while (message := await call.read()) is not grpc.aio.EOF:
        await apply(client, message, outbox)
    raise ConnectionError("server ended the stream")


async def attempt(spec: dict[str, Any], ca: bytes, client: Client) -> None:
    creds = grpc.ssl_channel_credentials(ca, client.key, client.cert)
    async with grpc.aio.secure_channel(
        spec["target"], creds, options=options(spec, "client_options")
    ) as channel:
        call = channel.stream_stream(METHOD)(timeout=STREAM_DEADLINE_S)
        try:
            await call.write(b"R" + client.name.encode())
            first = await asyncio.wait_for(call.read(), REGISTER_TIMEOUT_S)
            if first is grpc.aio.EOF:
                raise ConnectionError("server closed the stream before registering")
            client.connected = True
            client.connects += 1
            outbox: asyncio.Queue[bytes] = asyncio.Queue()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(write_loop(call, outbox))
                tg.create_task(heartbeat_loop(outbox, spec.get("heartbeat_s", HEARTBEAT_S)))
                tg.create_task(read_loop(call, client, outbox))
        finally:
            client.connected = False
            call.cancel()


async def run_client(spec: dict[str, Any], ca: bytes, client: Client, rng: random.Random) -> None:
    """Connect forever with the product's backoff shape: uniform(0, min(cap, 0.5 * 2**n))."""
    n = 0
    while True:
        before = client.connects
        with contextlib.suppress(Exception):  # any failure: back off and retry, as the agent
            await attempt(spec, ca, client)
        if client.connects > before:
            n = 0
        await asyncio.sleep(rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_INITIAL_S * 2**n)))
        n += 1


@dataclass
class ClientPool:
    """The clients of one worker process and the commands the driver sends them."""

    spec: dict[str, Any]
    ca: bytes
    clients: list[Client]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    starter: asyncio.Task[None] | None = None

    async def rows(self, message_id: str) -> int:
        """How many clients hold a latch row for `message_id`, read from their databases."""

        async def one(client: Client) -> int:
            async with client.db.execute(
                "SELECT count(*) FROM latch WHERE id = ?", (message_id,)
            ) as cur:
                row = await cur.fetchone()
            return int(row[0]) if row else 0

        return sum(await asyncio.gather(*(one(c) for c in self.clients)))

    async def start(self, rate: float) -> None:
        """Start the clients `rate` per second (connecting is not what is measured)."""
        for i, client in enumerate(self.clients):
            rng = random.Random(self.spec["seed"] + i)
            self.tasks.append(asyncio.create_task(run_client(self.spec, self.ca, client, rng)))
            await asyncio.sleep(1.0 / rate)

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        if command["cmd"] == "connect":
            self.starter = asyncio.create_task(self.start(command["rate"]))
            return {"ok": True}
        if command["cmd"] == "status":
            return {
                "connected": sum(c.connected for c in self.clients),
                "connects": sum(c.connects for c in self.clients),
            }
        if command["cmd"] == "rows":
            return {"rows": await self.rows(command["id"])}
        return {"error": f"unknown command {command['cmd']!r}"}


async def clients_main(spec: dict[str, Any]) -> None:
    certs, db_dir = Path(spec["certs"]), Path(spec["db_dir"])
    db_dir.mkdir(parents=True, exist_ok=True)
    ca = (certs / "ca.crt").read_bytes()
    names = spec["names"]
    dbs = await asyncio.gather(*(open_db(db_dir / f"{name}.db") for name in names))
    clients = [
        Client(name, (certs / f"{name}.key").read_bytes(), (certs / f"{name}.crt").read_bytes(), db)
        for name, db in zip(names, dbs, strict=True)
    ]
    await serve_commands(ClientPool(spec, ca, clients).handle)


def main() -> None:
    role, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    raise_nofile()
    if role == "server":
        asyncio.run(serve(spec))
    elif role == "clients":
        os.nice(spec.get("nice", 0))
        asyncio.run(clients_main(spec))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
