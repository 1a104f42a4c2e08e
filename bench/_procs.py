"""The harness's process plumbing: children, worker pools, waits, the machine's load.

Every process a bench starts is a Child of one Children, which stops them all whatever
happens (Ctrl-C, SIGTERM, a failed phase). Workers are P piped children that speak
bench/_worker.py's protocol. No product code: the harness (harness.py) adds the hub, the
agents and the product parts on top.
"""

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

STOP_TIMEOUT_S = 20.0  # edge-hub.service: TimeoutStopSec=20s, then SIGKILL
T = TypeVar("T")


class BenchError(Exception):
    """A phase failed or did not finish within its bound; the message says how far it got."""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def wait_until(
    check: Callable[[], Awaitable[tuple[T | None, str]]],
    timeout_s: float,
    what: str,
    period_s: float = 0.1,
) -> T:
    """Call `check` every `period_s` until it returns a value; BenchError with its last word."""
    deadline = time.monotonic() + timeout_s
    said = "no answer yet"
    while time.monotonic() < deadline:
        value, said = await check()
        if value is not None:
            return value
        await asyncio.sleep(period_s)
    raise BenchError(f"{what}: not done after {timeout_s:g}s ({said})")


def free_port() -> int:
    """A loopback port free now and below the kernel's ephemeral range: a port the kernel
    handed out for port 0 can be handed out again (to another process's outgoing connection)
    before our child binds it; ports below the range never are (tests/procs.py does the same)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, low - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free port found below the ephemeral range")


async def listening(address: str, since: float, timeout_s: float) -> float:
    """Seconds from `since` (wall) until `address` accepts TCP connections (probed every 10 ms)."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            await asyncio.sleep(0.01)
            continue
        took = time.time() - since
        writer.close()
        await writer.wait_closed()
        return took
    raise BenchError(f"{address} not listening after {timeout_s:g}s")


# --- child processes ---------------------------------------------------------------------


@dataclasses.dataclass
class Child:
    """A child process; a piped one answers one JSON line per JSON command line."""

    name: str
    process: asyncio.subprocess.Process
    log_file: Path
    started: float  # psutil create_time: a reused pid is never mistaken for it
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.returncode is None

    def cpu_s(self) -> float:
        try:
            times = psutil.Process(self.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    async def _line(self, timeout_s: float) -> dict[str, Any]:
        if self.process.stdout is None:
            raise BenchError(f"{self.name} is not piped")
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        except TimeoutError:
            raise BenchError(f"{self.name} did not answer in {timeout_s:g}s") from None
        if not line:
            raise BenchError(f"{self.name} exited; see {self.log_file}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ready(self, timeout_s: float) -> None:
        if not (await self._line(timeout_s)).get("ready"):
            raise BenchError(f"{self.name} did not say it was ready")

    async def ask(self, command: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        """Send one command, return its answer."""
        async with self.lock:
            if not self.alive() or self.process.stdin is None:
                raise BenchError(f"{self.name} exited; see {self.log_file}")
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            await self.process.stdin.drain()
            answer = await self._line(timeout_s)
        if "error" in answer:
            raise BenchError(f"{self.name}: {answer['error']}")
        return answer


class Children:
    """Every process the bench started, so that all of them are stopped whatever happens.

    They run in their own session (Ctrl-C reaches the bench only; it stops them) and in the
    bench's temporary directory, not in the project (see the module docstring).
    """

    def __init__(self, cwd: Path, py_spy: str = "") -> None:
        self.cwd = cwd
        self.py_spy = py_spy
        self.procs: list[Child] = []
        self.stuck: list[str] = []  # what did not stop in time, for the report
        self.dumped = False  # py-spy wrote stacks into cwd: keep it

    async def spawn(
        self, name: str, argv: list[str], log_file: Path | None = None, piped: bool = False
    ) -> Child:
        log_file = log_file or self.cwd / f"{name}.log"
        with log_file.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if piped else out,
                stderr=out,
                cwd=self.cwd,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                limit=2**20,
            )
        child = Child(name, process, log_file, psutil.Process(process.pid).create_time())
        self.procs.append(child)
        return child

    async def python(
        self, name: str, args: list[str], log_file: Path | None = None, piped: bool = False
    ) -> Child:
        return await self.spawn(name, [sys.executable, *args], log_file, piped)

    async def stop(self, child: Child, timeout_s: float = STOP_TIMEOUT_S) -> float:
        """Close stdin and SIGTERM, SIGKILL after `timeout_s`; seconds until it exited."""
        started = time.monotonic()
        if child.alive():
            if child.process.stdin is not None:
                child.process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), timeout_s)
            except TimeoutError:
                where = await self.dump_stacks(child)
                self.stuck.append(f"{child.name} did not stop in {timeout_s:g}s{where}")
                progress(f"{child.name} did not stop in {timeout_s:g}s: killing it{where}")
                await self.kill(child)
        if child in self.procs:
            self.procs.remove(child)
        return time.monotonic() - started

    async def kill(self, child: Child) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        await child.process.wait()

    async def dump_stacks(self, child: Child) -> str:
        """With --py-spy: the stuck process's thread stacks, in a file next to its log."""
        if not self.py_spy:
            return ""
        out = self.cwd / f"{child.name}-{child.pid}-stacks.txt"
        with out.open("wb") as f:
            dump = await asyncio.create_subprocess_exec(
                self.py_spy, "dump", "--locals", "--pid", str(child.pid), stdout=f, stderr=f
            )
            try:
                await asyncio.wait_for(dump.wait(), 30.0)
            except TimeoutError:
                dump.kill()
                await dump.wait()
        self.dumped = True
        return f" (py-spy stacks: {out})"

    @contextlib.asynccontextmanager
    async def profiled(self, targets: list[Child], out_dir: Path | None) -> AsyncIterator[None]:
        """With an `out_dir` (and --py-spy): py-spy record of `targets` while in the block."""
        if out_dir is None:
            yield
            return
        if not self.py_spy:
            raise BenchError("profiling needs --py-spy PATH")
        out_dir.mkdir(parents=True, exist_ok=True)
        recorders = []
        for target in targets:
            # --gil: only the thread holding the GIL (CPU, not the idle aiosqlite threads)
            argv = [self.py_spy, "record", "--format", "raw", "--nonblocking", "--gil"]
            argv += ["--rate", "50", "--output", str(out_dir / f"{target.name}.txt")]
            recorders.append(
                await self.spawn(f"py-spy-{target.name}", [*argv, "--pid", str(target.pid)])
            )
        try:
            yield
        finally:
            for recorder in recorders:
                with contextlib.suppress(ProcessLookupError):
                    recorder.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(recorder.process.wait(), 60.0)
                await self.stop(recorder, 5.0)
            progress(f"profiles in {out_dir}")

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(c, 5.0) for c in list(self.procs)))

    def kill_leftovers(self) -> None:
        """Last resort outside the event loop: SIGKILL whatever of ours still runs."""
        for child in self.procs:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if abs(psutil.Process(child.pid).create_time() - child.started) < 0.01:
                    os.kill(child.pid, signal.SIGKILL)


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """The sum of the workers' answers to `status` (simulated agents or floor clients)."""

    t: float  # latest wall time a worker answered at
    connected: int
    last: float  # latest wall time an agent connected
    connects: int
    heartbeats: int
    fails: collections.Counter[str]  # failed link attempts by kind
    ended: collections.Counter[str]  # why agents' link or safety ended (should be empty)


@dataclasses.dataclass
class Workers:
    """P worker processes, each with its share of the N agents' names."""

    children: Children
    procs: list[Child]

    @classmethod
    async def start(
        cls,
        children: Children,
        name: str,
        argv: list[str],
        specs: list[dict[str, Any]],
        timeout_s: float,
    ) -> "Workers":
        """One Python worker per spec: `argv` + its spec file; waits until all are ready."""
        procs = []
        for w, spec in enumerate(specs):
            spec_file = children.cwd / f"{name}-{w}.json"
            spec_file.write_text(json.dumps(spec))
            procs.append(await children.python(f"{name}-{w}", [*argv, str(spec_file)], piped=True))
        workers = cls(children, procs)
        await asyncio.gather(*(p.ready(timeout_s) for p in procs))
        return workers

    async def ask_all(self, command: dict[str, Any], timeout_s: float = 60.0) -> list[Any]:
        return list(await asyncio.gather(*(p.ask(command, timeout_s) for p in self.procs)))

    async def connect(self, rate_per_s: float) -> None:
        """Start every agent: all at once (0) or `rate_per_s` per second in total."""
        await self.ask_all({"cmd": "connect", "rate": rate_per_s / len(self.procs)})

    async def status(self) -> WorkerStatus:
        answers = await self.ask_all({"cmd": "status"})
        fails: collections.Counter[str] = collections.Counter()
        ended: collections.Counter[str] = collections.Counter()
        for answer in answers:
            fails.update(answer["fails"])
            ended.update(answer["ended"])
        return WorkerStatus(
            max(a["t"] for a in answers),
            sum(a["connected"] for a in answers),
            max(a["last"] for a in answers),
            sum(a["connects"] for a in answers),
            sum(a["heartbeats"] for a in answers),
            fails,
            ended,
        )

    async def all_connected(self, n: int, since: float, timeout_s: float, what: str) -> float:
        """Seconds from `since` (wall) until all N said they were connected (their view)."""

        async def check() -> tuple[float | None, str]:
            dead = [p.name for p in self.procs if not p.alive()]
            if dead:
                raise BenchError(f"{what}: worker {', '.join(dead)} exited")
            status = await self.status()
            if status.connected >= n and status.last >= since:
                return status.last - since, "done"
            return None, f"{status.connected}/{n} connected"

        return await wait_until(check, timeout_s, what, period_s=0.5)

    def cpu_s(self) -> float:
        return sum(p.cpu_s() for p in self.procs)

    async def dump_tasks(self) -> None:
        """Ask simulated agents to log where their tasks wait; give them a moment."""
        for proc in self.procs:
            if proc.alive():
                proc.process.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1.0)

    async def stop(self) -> None:
        await asyncio.gather(*(self.children.stop(p, 10.0) for p in self.procs))


@dataclasses.dataclass(frozen=True)
class MachineUse:
    """How busy the machine was over a window, and how much of it was not the bench.

    The bench shares the machine: other work inflates every figure. Percentages are of one
    core; `others_pct` is CPU used by processes other than the bench and its children.
    """

    busy_pct: float
    others_pct: float
    load_1m: float


class MachineWindow:
    """Start it, stop it: a MachineUse over the window (children count while they run)."""

    def __init__(self, children: Children) -> None:
        self.children = children
        self.wall, self.busy, self.ours = self._now()

    def _now(self) -> tuple[float, float, float]:
        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        me = psutil.Process().cpu_times()
        ours = me.user + me.system + me.children_user + me.children_system
        return time.monotonic(), busy, ours + sum(c.cpu_s() for c in self.children.procs)

    def stop(self) -> MachineUse:
        now = self._now()
        wall, busy, ours = (
            b - a for a, b in zip((self.wall, self.busy, self.ours), now, strict=True)
        )
        return MachineUse(100 * busy / wall, 100 * max(0.0, busy - ours) / wall, os.getloadavg()[0])


def filesystem_of(path: Path) -> str:
    """'fstype device at mountpoint' of the mount holding `path` (from /proc/mounts)."""
    best = ("?", "?", "/")
    real = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            device, mountpoint, fstype = line.split()[:3]
            inside = real == mountpoint or real.startswith(mountpoint.rstrip("/") + "/")
            if inside and len(mountpoint) >= len(best[2]):
                best = (fstype, device, mountpoint)
    return f"{best[0]} {best[1]} at {best[2]}"
