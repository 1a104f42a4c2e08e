"""Where audit events go: PostgreSQL when configured, the file log otherwise and whenever
PostgreSQL fails. Nothing is lost: a batch the primary refuses is written to the file log
before emit() returns; only when both fail does emit() raise, and the caller refuses the
action (an emergency stop proceeds anyway and is flagged by its caller).

An outage is logged once when it starts and once when it ends. While it lasts the primary
is retried every retry_after_s, not on every event, so a dead database costs each
privileged request nothing. Events written to the file log during an outage stay there;
statistics() and EmitResult say where each batch went.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from edgecommon.clock import Clock, SystemClock, stamp
from hub.audit.backend import checked_events
from hub.audit.event import AuditEvent, AuditUnavailable, NewEvent
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog


@dataclass(frozen=True)
class EmitResult:
    events: tuple[AuditEvent, ...]
    stored_in: str  # the name of the log that holds them
    fell_back: bool  # True when a primary is configured but the file log took them
    error: str = ""  # why the primary was not used


@dataclass(frozen=True)
class _Outage:
    since_wall: float
    since_monotonic: float
    retry_at: float  # monotonic
    error: str
    events: int  # written to the file log since the outage began


class AuditEmitter:
    def __init__(
        self,
        primary: PgAuditLog | None,
        fallback: FileAuditLog,
        log: logging.Logger,
        clock: Clock | None = None,
        retry_after_s: float = 5.0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self._log = log
        self._clock = clock or SystemClock()
        self._retry_after = retry_after_s
        self._outage: _Outage | None = None
        self._stats = {"emitted": 0, "fallback_events": 0, "fallback_batches": 0}
        self._stats.update(primary_failures=0, outages=0)
        self._last_error = ""

    @property
    def backend_for_reads(self) -> PgAuditLog | FileAuditLog:
        return self.primary if self.primary is not None else self.fallback

    async def open(self) -> None:
        """Open the file log (its failure is raised) and try the primary (its failure
        starts an outage: events go to the file log until it answers)."""
        await self.fallback.open()
        if self.primary is not None:
            try:
                await self.primary.open()
            except AuditUnavailable as exc:
                self._primary_failed(str(exc))

    async def close(self) -> None:
        try:
            if self.primary is not None:
                await self.primary.close()
        finally:
            await self.fallback.close()

    async def emit(self, events: Sequence[NewEvent]) -> EmitResult:
        batch = checked_events(events)
        error = ""
        if self.primary is not None:
            if self._outage is None or self._clock.monotonic() >= self._outage.retry_at:
                try:
                    stored = await self.primary.append(batch)
                except AuditUnavailable as exc:
                    error = str(exc)
                except Exception as exc:
                    self._log.exception("audit: unexpected failure of %s", self.primary.name)
                    error = f"{self.primary.name}: unexpected {type(exc).__name__}: {exc}"
                else:
                    self._primary_answered()
                    self._stats["emitted"] += len(stored)
                    return EmitResult(tuple(stored), self.primary.name, False)
                self._primary_failed(error)
            else:
                error = self._outage.error
        return await self._to_fallback(batch, error)

    async def _to_fallback(self, batch: list[NewEvent], error: str) -> EmitResult:
        try:
            stored = await self.fallback.append(batch)
        except AuditUnavailable as exc:
            self._last_error = str(exc)
            if not error:
                raise
            raise AuditUnavailable(
                f"audit events could not be written: {error}; and {exc}"
            ) from exc
        self._stats["emitted"] += len(stored)
        if self.primary is not None:
            self._stats["fallback_events"] += len(stored)
            self._stats["fallback_batches"] += 1
            if self._outage is not None:
                self._outage = replace(self._outage, events=self._outage.events + len(stored))
        return EmitResult(tuple(stored), self.fallback.name, self.primary is not None, error)

    def _primary_failed(self, error: str) -> None:
        now = self._clock.monotonic()
        self._stats["primary_failures"] += 1
        self._last_error = error
        if self._outage is None:
            self._stats["outages"] += 1
            self._log.warning(
                "audit: %s; writing audit events to %s until it answers (retried every %.0f s)",
                error,
                self.fallback.name,
                self._retry_after,
            )
            self._outage = _Outage(self._clock.wall(), now, now + self._retry_after, error, 0)
        else:
            self._outage = replace(self._outage, retry_at=now + self._retry_after, error=error)

    def _primary_answered(self) -> None:
        if self._outage is None or self.primary is None:
            return
        lasted = self._clock.monotonic() - self._outage.since_monotonic
        self._log.warning(
            "audit: %s answers again after %.0f s (down since %s); %d events were written to %s "
            "meanwhile and stay there",
            self.primary.name,
            lasted,
            stamp(self._outage.since_wall),
            self._outage.events,
            self.fallback.name,
        )
        self._outage = None

    def statistics(self) -> dict[str, Any]:
        outage = self._outage
        return {
            "primary": self.primary.name if self.primary is not None else "",
            "fallback": self.fallback.name,
            "reads_from": self.backend_for_reads.name,
            "outage_since": outage.since_wall if outage else None,
            "last_error": self._last_error,
            **self._stats,
            "backends": [
                log.statistics() for log in (self.primary, self.fallback) if log is not None
            ],
        }
