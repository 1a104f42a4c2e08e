"""What the two audit backends share: the interface, the prune report and the checks of
what they are given. (Their appends are group-committed: edgecommon.group_commit.)"""

import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edgecommon.errors import Conflict, InvalidArgument
from hub.audit.chain import Anchor, VerifyReport
from hub.audit.event import AuditEvent, AuditFilter, NewEvent, validate_new_event


@dataclass(frozen=True)
class PruneReport:
    removed: int
    anchor: Anchor | None  # None when nothing was old enough to remove
    event: AuditEvent  # the audit.prune event, appended before anything was removed


class AuditLog(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, events: Sequence[NewEvent]) -> list[AuditEvent]: ...

    async def query(self, f: AuditFilter) -> list[AuditEvent]: ...

    def export(self, f: AuditFilter) -> AsyncIterator[AuditEvent]: ...

    async def verify(self) -> VerifyReport: ...

    async def prune(self, cutoff: float, event: NewEvent) -> PruneReport: ...

    def statistics(self) -> dict[str, Any]: ...


def checked_events(events: Sequence[NewEvent]) -> list[NewEvent]:
    batch = list(events)
    for event in batch:
        validate_new_event(event)
    return batch


def check_cutoff(cutoff: float, now: float) -> None:
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not math.isfinite(cutoff):
        raise InvalidArgument(f"prune cutoff must be unix seconds, got {cutoff!r}")
    if cutoff > now:
        raise InvalidArgument(
            f"prune cutoff {cutoff} is in the future (now {now:.0f}); give an age, e.g. 90d"
        )


def refuse_unverified_prune(name: str, report: VerifyReport) -> None:
    """A prune must not turn tampering into a clean anchor."""
    if not report.ok:
        raise Conflict(
            f"audit log {name}: prune refused, the events it would remove do not verify "
            f"({report.problems[0]}); run audit verify and keep a copy of the log first"
        )
