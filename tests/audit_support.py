"""Shared by the audit log tests: a fake clock, sample events, an opened log."""

import contextlib
import os
from collections.abc import AsyncIterator

from hub.audit.backend import AuditLog
from hub.audit.event import AuditEvent, NewEvent

PG_URL = os.environ.get("AUTONOMY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = 1_790_000_000.0


class FakeClock:
    def __init__(self, wall: float = T0) -> None:
        self.now = wall

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - T0


def ev(i: int, **kw: str) -> NewEvent:
    base = {
        "operator": f"op{i % 3}",
        "action": ("estop.engage", "rbac.assign", "enroll")[i % 3],
        "target": f"node:n{i % 5}",
        "scope": "fleet",
        "outcome": ("attempt", "success", "denied", "failure")[i % 4],
        "request_id": f"req-{i}",
    }
    return NewEvent(**{**base, **kw})


@contextlib.asynccontextmanager
async def opened(log: AuditLog) -> AsyncIterator[AuditLog]:
    await log.open()
    try:
        yield log
    finally:
        await log.close()


async def fill(log: AuditLog, clock: FakeClock, n: int, start: int = 0) -> list[AuditEvent]:
    stored = []
    for i in range(start, start + n):
        clock.now = T0 + i
        stored += await log.append([ev(i)])
    return stored
