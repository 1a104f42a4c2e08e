"""The worker side of bench/'s process protocol: JSON lines, exactly one answer per command.

A worker process (bench/_agents.py, bench/_floor.py, a script's own `_worker` mode) is started
by the harness with one JSON spec file. It prints `{"ready": true}` once it has loaded, then
answers every command line it reads on stdin with exactly one line on stdout. EOF on stdin,
`{"cmd": "exit"}` or SIGTERM ends the conversation; the worker then exits as it sees fit.

No product code here: the floor imports this module and must stay bare grpc.
"""

import asyncio
import json
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

Command = dict[str, Any]
Handler = Callable[[Command], Awaitable[Command]]

# Why a link attempt failed, from the words grpc (or the product) uses; first match wins.
# The simulated agents and the floor's clients both count their failures by these kinds.
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


def failure_kind(text: str) -> str:
    for words, kind in FAILURE_KINDS:
        if words in text:
            return kind
    return "other: " + text[-100:].replace("\n", " ")


def describe(exc: BaseException, limit: int = 120) -> str:
    """An exception in one line, exception groups flattened to their leaves."""
    if isinstance(exc, BaseExceptionGroup):
        return "[" + ", ".join(describe(e, limit) for e in exc.exceptions) + "]"
    return f"{type(exc).__name__}({str(exc)[:limit]!r})"


def raise_nofile() -> None:
    """Soft file-descriptor limit up to the hard one: a socket (and SQLite files) per agent."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def load_spec(path: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(Path(path).read_text())
    return spec


def emit(line: Command) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def serve_commands(handle: Handler) -> None:
    """Say ready, then answer the driver's commands one at a time until EOF, exit or SIGTERM."""
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stopping = asyncio.create_task(stop.wait())
    emit({"ready": True})
    try:
        while True:
            reading = asyncio.create_task(commands.readline())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                return
            line = reading.result()
            if not line:
                return
            command = json.loads(line)
            if command["cmd"] == "exit":
                return
            emit(await handle(command))
    finally:
        stopping.cancel()


async def start_ramped(
    coros: list[Coroutine[Any, Any, None]], rate_per_s: float, names: list[str]
) -> list[asyncio.Task[None]]:
    """Start the coroutines as tasks, all at once (rate 0) or `rate_per_s` per second."""
    tasks, started = [], time.monotonic()
    for i, (coro, name) in enumerate(zip(coros, names, strict=True)):
        if rate_per_s > 0 and (delay := started + i / rate_per_s - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(coro, name=name))
    return tasks
