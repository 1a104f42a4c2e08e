"""What both daemons share: logging to stderr (journald), signals, readiness, the watchdog,
a bounded shutdown and one way to end with an exit code.

Shutdown is an injected trigger: the `stop` event, set by a signal handler in
production and directly in tests. The uvicorn model: the first SIGTERM/SIGINT asks for
a graceful stop that is bounded (after `bound_s` the process reports which tasks were
still running and exits); a second one exits at once. The bound is a backstop, measured
on a thread so that even a blocked event loop cannot hold it off; a daemon that reaches
it has a bug (a cancellation swallowed somewhere), which its last log line names.

`run_daemon` turns every way a daemon can fail, at start-up or later, into one line per
problem and a non-zero exit code: no traceback for what an operator can fix.
"""

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from edgecommon import sdnotify
from edgecommon.errors import ConfigError, EdgeError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
T = TypeVar("T")


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=LOG_FORMAT, force=True)
    # grpc's own logger is chatty at INFO about things operators cannot act on.
    logging.getLogger("grpc").setLevel(logging.WARNING)


def install_signal_handlers(stop: asyncio.Event, name: str, bound_s: float) -> None:
    loop = asyncio.get_running_loop()
    log = logging.getLogger(name)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info(
            "%s received: shutting down (within %gs; a second signal exits at once)",
            signal.Signals(signum).name,
            bound_s,
        )
        stop.set()
        exit_after(bound_s, loop, log)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def exit_after(bound_s: float, loop: asyncio.AbstractEventLoop, log: logging.Logger) -> None:
    """Exit the process after `bound_s` unless it has ended by then."""

    def expire() -> None:
        log.critical(
            "shutdown did not finish within %gs: exiting now (still running: %s)",
            bound_s,
            describe_tasks(loop),
        )
        os._exit(1)

    timer = threading.Timer(bound_s, expire)
    timer.daemon = True  # a process that ends in time is not held up by it
    timer.start()


def describe_tasks(loop: asyncio.AbstractEventLoop, limit: int = 8) -> str:
    """The loop's unfinished tasks, each with the innermost line of ours it waits at
    (asyncio's own frames skipped). Read from another thread, best effort: these are
    last words, never a decision."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        where = [f"{task.get_name()} at {_waiting_at(task)}" for task in tasks[:limit]]
        more = f" and {len(tasks) - limit} more" if len(tasks) > limit else ""
        return (", ".join(where) + more) or "no task: a thread holds the process"
    except Exception as exc:  # the loop changed under us; say so rather than nothing
        return f"unknown ({exc.__class__.__name__})"


def _waiting_at(task: "asyncio.Task[Any]") -> str:
    coro: Any = task.get_coro()
    at = "?"
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        code = coro.cr_frame.f_code
        if not code.co_filename.startswith(ASYNCIO_DIR):
            at = f"{code.co_filename}:{coro.cr_frame.f_lineno} ({code.co_name})"
        coro = getattr(coro, "cr_await", None)
    return at


def announce_ready(status: str, tg: asyncio.TaskGroup, healthy: Callable[[], bool]) -> None:
    """Tell systemd we are ready; run the watchdog in `tg` if systemd asked for one."""
    sdnotify.notify(f"READY=1\nSTATUS={status}")
    interval = sdnotify.watchdog_interval()
    if interval is not None:
        tg.create_task(sdnotify.run_watchdog(interval, healthy), name="watchdog")


def announce_stopping() -> None:
    sdnotify.notify("STOPPING=1")


class ShutdownRequested(Exception):
    """Raised inside a TaskGroup to cancel every sibling task once shutdown is asked for."""


async def raise_when_set(stop: asyncio.Event) -> None:
    await stop.wait()
    raise ShutdownRequested


async def unless_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, T]) -> T:
    """Await a start-up step that can take long (checking a big journal), unless shutdown
    is asked for first: then the step is cancelled and ShutdownRequested raised."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.wait((task,))
        raise ShutdownRequested
    return task.result()


async def listening(what: str, start: Awaitable[T]) -> T:
    """Await a server's start. grpc reports an address it cannot bind (in use, not on
    this host, a socket directory without permission) as a bare RuntimeError."""
    try:
        return await start
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {what}: {exc}") from None


def run_daemon(main: Coroutine[Any, Any, None], log: logging.Logger) -> int:
    """Run the daemon to its end; the process exit code. 0 after a clean stop, 2 for
    invalid configuration, 1 for anything else."""
    try:
        asyncio.run(main)
    except Exception as exc:
        return report_failure(exc, log)
    return 0


def report_failure(exc: BaseException, log: logging.Logger) -> int:
    """One line per problem. Errors an operator can act on (EdgeError, OSError) say what
    is wrong and how to fix it; anything else is a bug, reported in one line too, with its
    traceback at debug level."""
    code = 1
    for error in _leaves(exc):
        if isinstance(error, ConfigError):
            for problem in error.problems:
                log.error("config error: %s", problem)
            code = 2
        elif isinstance(error, EdgeError):
            log.error("%s", error)
        elif isinstance(error, OSError):
            log.error("cannot run: %s", error)
        else:
            log.error(
                'stopped by an unexpected error (a bug; log_level = "debug" shows where): %s: %s',
                error.__class__.__name__,
                error,
            )
            log.debug("the unexpected error", exc_info=error)
    return code


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
