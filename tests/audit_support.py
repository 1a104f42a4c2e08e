"""Shared by the audit log tests: sample events, an opened log (the fake clock is
tests.fakes.FakeClock)."""

import contextlib
import os
from collections.abc import AsyncIterator

from hub.audit.backend import AuditLog
from hub.audit.event import AuditEvent, NewEvent
from tests.fakes import T0, FakeClock

PG_URL = os.environ.get("AUTONOMY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


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
