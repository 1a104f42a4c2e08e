"""Injected time: monotonic for every local deadline, wall clock only for display and audit."""

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


def utc(unix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, dt.UTC)


def stamp(unix: float) -> str:
    """A wall-clock time as operators read it: 2026-11-23 01:02:03Z."""
    return f"{utc(unix):%Y-%m-%d %H:%M:%S}Z"
