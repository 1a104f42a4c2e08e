"""The bare-gRPC floor: what the product's figures are set beside, with no product logic.

    python bench/_floor.py server SPEC.json    one grpc.aio server, one bidi method
    python bench/_floor.py clients SPEC.json   many clients, each on its own channel
    python bench/_floor.py permit SPEC.json    AgentLocal.RequestPermit on a Unix socket

`server` and `clients` speak raw bytes on `/bench.Floor/Connect` (no protobuf) with the
product's certificates and keepalive options (the driver copies grpcopts into the spec), so
the two sides differ only in the code on top of grpc. A client opens its stream, sends
`R<name>`, waits for the answer, then sends a heartbeat of about the product's size every
spec["heartbeat_s"] from its single writer task (the agent's shape) while it reads; it
reconnects with the agent's backoff shape. The server keeps one reader task and one outbox
per stream (the hub's shape) and counts messages.

A broadcast puts one small message on every stream's outbox:
    E<id>  latch: INSERT a row into the client's own SQLite file (WAL, synchronous=FULL,
           autocommit: one statement, one durable commit), then ack `A<id>`
    R<id>  release: DELETE that row, then ack
    N<id>  latch without the durable write: ack at once
and the server times it from the first put to the N-th ack read.

`permit` answers every RequestPermit with a constant grant (protobuf, as any AgentLocal
server must); the boundary bench's floor for a permit round trip.

All roles speak bench/_worker.py's protocol with the driver. Clients leave at once when it
ends (thousands of live channels make an orderly exit slow); servers stop in order.
"""

import asyncio
import contextlib
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import grpc
from _worker import (
    Command,
    describe,
    failure_kind,
    load_spec,
    raise_nofile,
    serve_commands,
    start_ramped,
)

from edgecommon.pb import agent_pb2, agent_pb2_grpc

METHOD = "/bench.Floor/Connect"
REGISTER_TIMEOUT_S = 10.0
STREAM_DEADLINE_S = 7200.0
STOP_GRACE_S = 5.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 30.0  # the agent's [link] reconnect_max_s default
# About the size of the product's serialized Heartbeat (seq, version, 4 floats, rss).
HEARTBEAT_BODY = b"H" + bytes(47)
SCHEMA = "CREATE TABLE IF NOT EXISTS latch (id TEXT PRIMARY KEY)"


def options(spec: dict[str, Any], key: str) -> list[tuple[str, int | str]]:
    return [(name, value) for name, value in spec[key]]


def server_credentials(spec: dict[str, Any]) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(Path(spec["key"]).read_bytes(), Path(spec["cert"]).read_bytes())],
        root_certificates=Path(spec["ca"]).read_bytes(),
        require_client_auth=True,
    )


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
    """Open streams (name -> outbox), messages counted, the broadcast being timed."""

    sessions: dict[str, asyncio.Queue[bytes | None]] = field(default_factory=dict)
    messages: int = 0
    heartbeats: int = 0
    first_register_wall: float = 0.0
    last_register_wall: float = 0.0
    current: Broadcast | None = None

    async def connect(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        try:
            first = await asyncio.wait_for(context.read(), REGISTER_TIMEOUT_S)
        except TimeoutError:
            return
        if first is grpc.aio.EOF or not first.startswith(b"R"):
            return
        self.messages += 1
        name = first[1:].decode()
        outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        previous = self.sessions.get(name)
        if previous is not None:
            previous.put_nowait(None)
        self.sessions[name] = outbox
        self.last_register_wall = time.time()
        self.first_register_wall = self.first_register_wall or self.last_register_wall
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
                self.messages += 1
                if message.startswith(b"H"):
                    self.heartbeats += 1
                elif message.startswith(b"A"):
                    current = self.current
                    if current is not None and message[1:] == current.message_id:
                        current.ack()
        except Exception:  # a broken stream ends the session, whatever broke it
            pass
        outbox.put_nowait(None)

    def close_all(self) -> None:
        for outbox in list(self.sessions.values()):
            outbox.put_nowait(None)

    async def broadcast(self, kind: str, message_id: str, timeout_s: float) -> Command:
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

    async def handle(self, command: Command) -> Command:
        if command["cmd"] == "status":
            return {
                "t": time.time(),
                "registered": len(self.sessions),
                "messages": self.messages,
                "heartbeats": self.heartbeats,
                "first": self.first_register_wall,
                "last": self.last_register_wall,
            }
        if command["cmd"] == "broadcast":
            return await self.broadcast(command["kind"], command["id"], command["timeout"])
        return {"error": f"unknown command {command['cmd']!r}"}


async def serve(spec: dict[str, Any]) -> None:
    state = FloorServer()
    server = grpc.aio.server(options=options(spec, "server_options"))
    handler = grpc.stream_stream_rpc_method_handler(state.connect)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Floor", {"Connect": handler}),)
    )
    if server.add_secure_port(spec["listen"], server_credentials(spec)) == 0:
        raise OSError(f"cannot listen on {spec['listen']}")
    await server.start()
    await serve_commands(state.handle)
    state.close_all()
    await server.stop(STOP_GRACE_S)


class BarePermits(agent_pb2_grpc.AgentLocalServicer):
    async def RequestPermit(
        self, request: agent_pb2.PermitRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.PermitDecision:
        return agent_pb2.PermitDecision(granted=True, reason="granted")


async def serve_permits(spec: dict[str, Any]) -> None:
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentLocalServicer_to_server(BarePermits(), server)
    server.add_insecure_port(f"unix:{spec['socket']}")
    await server.start()

    async def no_commands(command: Command) -> Command:
        return {"error": f"unknown command {command['cmd']!r}"}

    await serve_commands(no_commands)
    await server.stop(STOP_GRACE_S)


# --- clients -----------------------------------------------------------------------------


@dataclass
class Client:
    """One simulated bare agent: its certificate, its own SQLite latch (if any), its link."""

    name: str
    key: bytes
    cert: bytes
    db: aiosqlite.Connection | None
    connected: bool = False
    since_wall: float = 0.0
    connects: int = 0
    heartbeats: int = 0


async def open_db(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
        await db.execute(f"PRAGMA {pragma}")
    await db.execute(SCHEMA)
    return db


async def apply(client: Client, message: bytes, outbox: asyncio.Queue[bytes]) -> None:
    """Do the latch work a message asks for, then queue its ack."""
    kind, message_id = message[:1], message[1:].decode()
    if kind == b"E" and client.db is not None:
        await client.db.execute("INSERT OR IGNORE INTO latch VALUES (?)", (message_id,))
    elif kind == b"R" and client.db is not None:
        await client.db.execute("DELETE FROM latch WHERE id = ?", (message_id,))
    elif kind not in (b"E", b"R", b"N"):
        return
    outbox.put_nowait(b"A" + message[1:])


async def write_loop(call: grpc.aio.StreamStreamCall, outbox: asyncio.Queue[bytes]) -> None:
    while True:
        await call.write(await outbox.get())


async def heartbeat_loop(client: Client, outbox: asyncio.Queue[bytes], period_s: float) -> None:
    while True:
        outbox.put_nowait(HEARTBEAT_BODY)
        client.heartbeats += 1
        await asyncio.sleep(period_s)


async def read_loop(
    call: grpc.aio.StreamStreamCall, client: Client, outbox: asyncio.Queue[bytes]
) -> None:
    while (message := await call.read()) is not grpc.aio.EOF:
        await apply(client, message, outbox)
    raise ConnectionError("the server ended the stream")


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
                raise ConnectionError("the server ended the stream before registering")
            client.connected, client.since_wall = True, time.time()
            client.connects += 1
            outbox: asyncio.Queue[bytes] = asyncio.Queue()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(write_loop(call, outbox))
                tg.create_task(heartbeat_loop(client, outbox, spec["heartbeat_s"]))
                tg.create_task(read_loop(call, client, outbox))
        finally:
            client.connected = False
            call.cancel()


@dataclass
class ClientPool:
    """The clients of one worker process and the commands the driver sends them."""

    spec: dict[str, Any]
    ca: bytes
    clients: list[Client]
    fails: Counter[str] = field(default_factory=Counter)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    starter: asyncio.Task[list[asyncio.Task[None]]] | None = None

    async def run_client(self, client: Client, rng: random.Random) -> None:
        """Connect forever with the agent's backoff shape: uniform(0, min(cap, 0.5 * 2**n))."""
        n = 0
        while True:
            before = client.connects
            try:
                await attempt(self.spec, self.ca, client)
            except Exception as exc:  # any failure: back off and retry, as the agent does
                self.fails[failure_kind(describe(exc, limit=10_000))] += 1
            if client.connects > before:
                n = 0
            cap = self.spec["reconnect_max_s"] or BACKOFF_CAP_S
            await asyncio.sleep(rng.uniform(0.0, min(cap, BACKOFF_INITIAL_S * 2**n)))
            n += 1

    async def rows(self, message_id: str) -> int:
        """How many clients hold a latch row for `message_id`, read from their databases."""

        async def one(db: aiosqlite.Connection) -> int:
            async with db.execute("SELECT count(*) FROM latch WHERE id = ?", (message_id,)) as cur:
                row = await cur.fetchone()
            return int(row[0]) if row else 0

        return sum(await asyncio.gather(*(one(c.db) for c in self.clients if c.db is not None)))

    def status(self) -> Command:
        up = [c.since_wall for c in self.clients if c.connected]
        return {
            "t": time.time(),
            "connected": len(up),
            "last": max(up, default=0.0),
            "connects": sum(c.connects for c in self.clients),
            "heartbeats": sum(c.heartbeats for c in self.clients),
            "fails": dict(self.fails),
            "ended": {},
        }

    async def handle(self, command: Command) -> Command:
        if command["cmd"] == "connect":
            coros = [
                self.run_client(c, random.Random(self.spec["seed"] + i))
                for i, c in enumerate(self.clients)
            ]
            names = [c.name for c in self.clients]
            self.starter = asyncio.create_task(start_ramped(coros, command["rate"], names))
            return {"ok": True}
        if command["cmd"] == "status":
            return self.status()
        if command["cmd"] == "rows":
            return {"rows": await self.rows(command["id"])}
        return {"error": f"unknown command {command['cmd']!r}"}


async def clients_main(spec: dict[str, Any]) -> None:
    certs, names = Path(spec["certs"]), spec["names"]
    ca = (certs / "ca.crt").read_bytes()
    dbs: list[aiosqlite.Connection | None] = [None] * len(names)
    if spec["durable"]:
        db_dir = Path(spec["state_dir"])
        db_dir.mkdir(parents=True, exist_ok=True)
        dbs = list(await asyncio.gather(*(open_db(db_dir / f"{name}.db") for name in names)))
    clients = [
        Client(name, (certs / f"{name}.key").read_bytes(), (certs / f"{name}.crt").read_bytes(), db)
        for name, db in zip(names, dbs, strict=True)
    ]
    await serve_commands(ClientPool(spec, ca, clients).handle)
    sys.stdout.flush()
    os._exit(0)  # thousands of live channels make an orderly exit slow


def main() -> None:
    role, spec = sys.argv[1], load_spec(sys.argv[2])
    raise_nofile()
    os.nice(spec.get("nice", 0))
    if role == "server":
        asyncio.run(serve(spec))
    elif role == "clients":
        asyncio.run(clients_main(spec))
    elif role == "permit":
        asyncio.run(serve_permits(spec))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
