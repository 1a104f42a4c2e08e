"""What component tests fake, and nothing more: time, randomness, and the hub's sender
(plus `FailingStore`, which makes a real store fail on demand).

Everything else is real: a component under test gets a real SQLite store in the test's
tmp_path, a real registry with sessions attached the way hub/fleet/link_service.py attaches
them, real policies and a real audit log. DESIGN.md principle 6: fakes only for time and
randomness, injected.

`FakeClock` is the clock (edgecommon.clock.Clock) and, once it drives the event loop,
also the loop's own time: whatever the code under test waits for with asyncio.sleep,
asyncio.timeout or edgecommon.cadence.wait_for_event wakes only when the test advances
the clock past it, in deadline order. A 30-second lease or a 10-second offline window
then takes milliseconds, and the same run happens every time.

The one rule that comes with it: never await a task that is waiting on time (nothing
would ever advance the clock). Start it (`running`), advance the clock, then look.
"""

import asyncio
import contextlib
import datetime as dt
import inspect
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from edgecommon import pki
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2
from edgecommon.scope import Scope
from hub.fleet.registry import Registry, Session

T0 = 1_790_000_000.0  # where the fake wall clock starts (2026-09-21)
SEED = 1_790_000_000  # seeds every random.Random a component test hands out
# Loop turns `settle` allows before it calls the loop busy: a component that never waits.
SETTLE_TURNS = 10_000
# Timers `advance` fires in one call before it calls a loop runaway (a cadence of zero).
ADVANCE_TIMERS = 100_000
# Real seconds a test may wait on the fake clock before the watchdog stops its loop: a
# test that awaits something only a clock advance would wake otherwise hangs forever.
STALL_AFTER_S = 30.0
EVENTUALLY_S = 10.0  # real seconds `eventually` waits for work done in threads (SQLite)


def seeded(seed: int = SEED) -> random.Random:
    """The randomness a component gets: the same draws on every run."""
    return random.Random(seed)


class FakeClock:
    """Time that moves only when the test moves it.

    `monotonic()` starts at 0, `wall()` at `wall`. Letting time pass (`advance`, or moving
    `now` forward) moves both. Moving `now` backwards steps only the wall clock back, as an
    NTP step may: a monotonic clock never runs backwards.
    """

    def __init__(self, wall: float = T0) -> None:
        self._mono = 0.0
        self._wall_at_zero = wall
        self._loop: asyncio.BaseEventLoop | None = None
        self.stalled = False

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall_at_zero + self._mono

    @property
    def now(self) -> float:
        """The wall clock; set it to let time pass (forward) or to step it back."""
        return self.wall()

    @now.setter
    def now(self, wall: float) -> None:
        step = wall - self.wall()
        if step >= 0:
            self._mono += step
        else:
            self._wall_at_zero += step

    @contextlib.contextmanager
    def drives(
        self, loop: asyncio.AbstractEventLoop, stall_after_s: float = STALL_AFTER_S
    ) -> Iterator["FakeClock"]:
        """Make this clock the loop's time while the block runs.

        asyncio schedules every timer by `loop.time()`; pointing that at this clock is all
        virtual time takes. The loop must have no timers yet (they would be on the real
        clock). A watchdog stops the loop (and sets `stalled`) once the block has run for
        `stall_after_s` real seconds: a test that waits on this clock without advancing it
        fails instead of hanging.
        """
        if not isinstance(loop, asyncio.BaseEventLoop):
            raise TypeError(f"a FakeClock drives asyncio's own event loop, not {loop!r}")
        if _timers(loop):
            raise RuntimeError("the loop already has timers on the real clock")
        loop.time = self.monotonic  # type: ignore[method-assign]
        self._loop = loop
        watchdog = threading.Timer(stall_after_s, self._stop_stalled, (loop,))
        watchdog.daemon = True
        watchdog.start()
        try:
            yield self
        finally:
            watchdog.cancel()
            self._loop = None
            del loop.time  # the class's own time() again

    def _stop_stalled(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stalled = True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(loop.stop)

    async def settle(self) -> None:
        """Run the loop until nothing is ready to run at the current time.

        Work handed to a thread (aiosqlite, asyncio.to_thread) is not waited for; what it
        hands back runs at a later settle (or use `eventually`)."""
        loop = self._driven()
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)
            if not _ready(loop) and not self._due(loop):
                return
        raise AssertionError(f"the loop never went idle in {SETTLE_TURNS} turns: a busy loop?")

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass: every timer due meanwhile fires at its own time, in order,
        and what it wakes runs before time moves on."""
        if seconds < 0:
            raise ValueError(f"time only moves forward, not by {seconds}")
        loop = self._driven()
        target = self._mono + seconds
        await self.settle()
        for _ in range(ADVANCE_TIMERS):
            due = min(_timers(loop), default=None)
            if due is None or due > target:
                break
            self._mono = max(self._mono, due)
            await self.settle()
        else:
            raise AssertionError(f"more than {ADVANCE_TIMERS} timers fired in {seconds}s")
        self._mono = target
        await self.settle()

    def _driven(self) -> asyncio.BaseEventLoop:
        if self._loop is None:
            raise RuntimeError("this FakeClock does not drive the loop (see FakeClock.drives)")
        return self._loop

    def _due(self, loop: asyncio.BaseEventLoop) -> bool:
        return any(when <= self._mono for when in _timers(loop))


# asyncio keeps what is ready to run in `_ready` and its timers in `_scheduled` (a heap of
# TimerHandle): CPython's BaseEventLoop has had both since asyncio began. Only the clock
# above reads them, to know when the loop has nothing left to do at the current time.
def _ready(loop: asyncio.BaseEventLoop) -> bool:
    return bool(loop._ready)  # type: ignore[attr-defined]


def _timers(loop: asyncio.BaseEventLoop) -> list[float]:
    handles: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return [h.when() for h in handles if not h.cancelled()]


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run a component's loop as a task for the block; cancel and reap it after.

    A task that failed on its own raises its error here, so a crash is never missed."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(
    what: str,
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    within_s: float = EVENTUALLY_S,
) -> None:
    """Wait (in real time, bounded) until `check()` holds (it may be a coroutine function,
    to read a store): for work the component handed to a thread, such as a SQLite write,
    that no clock advance can hurry."""
    deadline = time.monotonic() + within_s
    while not await _holds(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:g}s: {what}")
        # A real pause outside the loop: the loop meanwhile takes what threads hand back.
        await asyncio.to_thread(time.sleep, 0.001)


async def _holds(check: Callable[[], bool] | Callable[[], Awaitable[bool]]) -> bool:
    answer = check()
    return await answer if inspect.isawaitable(answer) else answer


# --- the hub side: sessions and what reaches them ----------------------------------------


def node_certificate(node: str, group: str) -> x509.Certificate:
    """A certificate for `node` in `group`, as enrollment would have issued it."""
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("edge", now, dt.timedelta(days=1))
    identity = Identity(Kind.NODE, node, group)
    return pki.issue_for_key(
        ca_key, ca_cert, pki.generate_key(), identity, "edge", now, dt.timedelta(hours=1)
    )


def connect(registry: Registry, node: str, group: str) -> Session:
    """Open a session for `node` the way the Link service does when its stream registers."""
    identity = Identity(Kind.NODE, node, group)
    return registry.attach(identity, node_certificate(node, group), link_pb2.Register())


def heartbeat(
    registry: Registry,
    observe: Callable[[Session, link_pb2.Heartbeat], None],
    session: Session,
    beat: link_pb2.Heartbeat,
) -> bool:
    """A heartbeat arriving on `session`, taken the way the Link servicer takes it
    (hub/fleet/link_service.py): the registry first, then, if it took it (the session is still
    the node's current one), the observer hub/assemble.py hands the servicer (the journal's
    quorum, `ReplicationManager.observe`). False when the registry ignored it."""
    if not registry.heartbeat(session, beat):
        return False
    observe(session, beat)
    return True


def received(session: Session) -> list[link_pb2.HubMessage]:
    """Every message the hub's sender (`Registry.send`) queued for the agent on `session`
    since the last look (the end-of-stream marker a closed session holds is not a message
    and is left out). The one place tests read session outboxes."""
    messages = []
    while not session.outbox.empty():
        message = session.outbox.get_nowait()
        if message is not None:
            messages.append(message)
    return messages


def bodies(messages: list[link_pb2.HubMessage]) -> list[str]:
    """The kind of each message, in order: ["estop", "lease_nudge", ...]."""
    return [m.WhichOneof("body") or "" for m in messages]


@dataclass(frozen=True)
class Sent:
    message: link_pb2.HubMessage
    scope: Scope
    node_ids: tuple[str, ...]  # who it was queued for


@dataclass
class FakeSender:
    """The hub's sender (`Registry.send(message, scope, *, only=None)` -> the node ids it was
    queued for) without streams: it records every message and who in scope was connected to
    get it. `only`, as the real sender's, is asked about each session in scope."""

    sessions: dict[str, Session] = field(default_factory=dict)  # node id -> its session
    sent: list[Sent] = field(default_factory=list)
    _inbox: dict[str, list[link_pb2.HubMessage]] = field(default_factory=dict)
    _next_session: int = 0

    def connect(self, node: str, group: str) -> Session:
        """`node` connects (again): a new session, as a new stream gets."""
        self._next_session += 1
        session = Session(self._next_session, node, group, 0.0, 0.0)
        self.sessions[node] = session
        return session

    def disconnect(self, node: str) -> None:
        self.sessions.pop(node, None)

    def send(
        self,
        message: link_pb2.HubMessage,
        scope: Scope,
        *,
        only: Callable[[Session], bool] | None = None,
    ) -> tuple[str, ...]:
        nodes = tuple(
            node
            for node, session in sorted(self.sessions.items())
            if scope.applies_to(node, session.group) and (only is None or only(session))
        )
        for node in nodes:
            self._inbox.setdefault(node, []).append(message)
        self.sent.append(Sent(message, scope, nodes))
        return nodes

    def received(self, node: str) -> list[link_pb2.HubMessage]:
        """What was queued for `node` since the last look."""
        return self._inbox.pop(node, [])


class FailingStore:
    """A real store whose named methods fail on demand (a full disk, a lost database):
    `store.failing["save_lease"] = OSError("disk full")`. Every other call goes through."""

    def __init__(self, store: object) -> None:
        self._store = store
        self.failing: dict[str, BaseException] = {}

    def __getattr__(self, name: str) -> Any:
        if name in self.failing:
            error = self.failing[name]

            async def fail(*args: object, **kwargs: object) -> None:
                raise error

            return fail
        return getattr(self._store, name)
