"""systemd service notification (sd_notify) without libsystemd or any other dependency.

Both daemons run as ``Type=notify`` units with ``WatchdogSec=``. They say ``READY=1`` only
once they are really serving, and ping ``WATCHDOG=1`` at half the watchdog interval for as
long as their own health check passes. A daemon that is stuck, or that knows it is
unhealthy, stops pinging and lets systemd's watchdog kill and restart it.

Outside systemd (tests, a developer's shell) ``NOTIFY_SOCKET`` is unset and every call here
is a cheap no-op. Sending never raises: a notification that cannot be delivered must not
take the daemon down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

__all__ = ["notify", "run_watchdog", "watchdog_interval"]

log = logging.getLogger(__name__)

WATCHDOG_PING = "WATCHDOG=1"


def _socket_address(name: str) -> str | bytes:
    """NOTIFY_SOCKET value -> address for ``sendto``; '@name' is an abstract socket."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1\\nSTATUS=serving"``) as one datagram to systemd.

    Returns True when the datagram was sent, False when ``NOTIFY_SOCKET`` is unset or empty
    (nothing is done) or when sending failed (logged at debug, never raised).
    """
    env = os.environ if environ is None else environ
    name = env.get("NOTIFY_SOCKET", "")
    if not name:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), _socket_address(name))
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", name, exc)
        return False
    return True


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between watchdog pings (half of WATCHDOG_USEC), or None for no watchdog.

    None when WATCHDOG_USEC is unset, not a positive integer, or when WATCHDOG_PID is set
    to a process other than ``pid`` (default: ours) or is not an integer.
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    if usec_text is None:
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text is not None:
        try:
            watchdog_pid = int(pid_text)
        except ValueError:
            return None
        if watchdog_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 2 / 1_000_000


def _check(healthy: Callable[[], bool]) -> bool:
    try:
        return bool(healthy())
    except Exception:
        log.exception("watchdog: health check raised; treating it as unhealthy")
        return False


async def run_watchdog(
    interval_s: float,
    healthy: Callable[[], bool],
    send: Callable[[str], bool] = notify,
) -> None:
    """Ping ``WATCHDOG=1`` every ``interval_s`` seconds while ``healthy()`` is True.

    Runs until cancelled. An unhealthy cycle sends nothing, so a daemon that stays unhealthy
    for a whole ``WatchdogSec`` is killed by systemd; that is the point. The loop itself
    blocking (a stuck event loop) has the same effect. A health check that raises counts as
    unhealthy rather than ending this task.
    """
    if interval_s <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval_s!r}")
    was_healthy = True
    while True:
        is_healthy = _check(healthy)
        if is_healthy:
            send(WATCHDOG_PING)
        if is_healthy != was_healthy:
            if is_healthy:
                log.info("watchdog: healthy again, pinging systemd every %.1f s", interval_s)
            else:
                log.warning("watchdog: unhealthy, withholding pings so systemd can restart us")
            was_healthy = is_healthy
        await asyncio.sleep(interval_s)
