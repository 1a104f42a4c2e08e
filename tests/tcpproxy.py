"""A TCP proxy that tests control: forward, delay, cut and heal a link on loopback.

It runs in its own thread with its own event loop, so synchronous tests can drive it
while real processes talk through it.
"""

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class TcpProxy:
    target_host: str
    target_port: int
    delay_s: float = 0.0
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _cut: bool = False
    accepted: int = 0  # connections forwarded to the target, since start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "TcpProxy":
        ready = threading.Event()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
            )
            ready.set()
            self._loop.run_forever()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="tcp-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def _call(self, fn) -> None:  # type: ignore[no-untyped-def]
        assert self._loop is not None
        done = threading.Event()

        def wrapped() -> None:
            fn()
            done.set()

        self._loop.call_soon_threadsafe(wrapped)
        done.wait(10)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until heal()."""

        def do() -> None:
            self._cut = True
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._call(do)

    def heal(self) -> None:
        def do() -> None:
            self._cut = False

        self._call(do)

    def stop(self) -> None:
        if self._loop is None:
            return
        self.cut()

        def do() -> None:
            assert self._server is not None
            self._server.close()
            self._loop.stop()  # type: ignore[union-attr]

        self._loop.call_soon_threadsafe(do)
        if self._thread is not None:
            self._thread.join(10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward each chunk `delay_s` after it was read, in order: a link with that much
        latency each way. (Sleeping before each write instead would also cap throughput,
        and latency would grow as traffic queued behind the sleeps.)"""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        forward = asyncio.create_task(self._forward(chunks, writer))
        try:
            while data := await reader.read(65536):
                chunks.put_nowait((loop.time() + self.delay_s, data))
        except (ConnectionError, OSError):
            pass
        finally:
            chunks.put_nowait((loop.time() + self.delay_s, b""))  # end, after what is in flight
            await forward

    async def _forward(
        self, chunks: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await chunks.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
