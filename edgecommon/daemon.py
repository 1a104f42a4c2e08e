"""What both daemons share: logging to stderr (journald), signals, readiness, the watchdog.

Shutdown is an injected trigger: `ShutdownTrigger.set()` from a signal handler in
production, directly in tests. The first SIGTERM/SIGINT asks for a graceful stop; a
second one exits at once.
"""

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

from edgecommon import sdnotify

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=LOG_FORMAT, force=True)
    # grpc's own logger is chatty at INFO about things operators cannot act on.
    logging.getLogger("grpc").setLevel(logging.WARNING)


def install_signal_handlers(stop: asyncio.Event, name: str) -> None:
    loop = asyncio.get_running_loop()
    log = logging.getLogger(name)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


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
