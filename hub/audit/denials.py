"""Denials of callers without a valid credential, aggregated so they cannot fill the audit log.

Rule: per (source, kind of reason), the first denial of an interval is recorded when it happens;
the others in that interval are counted and recorded as one event with their count once
the interval has ended. At most `max_keys` keys are tracked; denials beyond that share
one more window under source '*'. So a caller without a credential causes at most
2 * (max_keys + 1) events per interval, whatever its rate. Denials of authenticated
callers never come here: each keeps its own event.

Pure apart from its own state; times are passed in.
"""

from dataclasses import dataclass, field

MANY_SOURCES = "*"
OVERFLOW = (MANY_SOURCES, "")


@dataclass(frozen=True)
class Denial:
    """What to record: `count` denials of `reason` from `source`, the first one's details."""

    source: str
    reason: str
    action: str
    claimed: str  # who the caller said it was (a certificate's name), or "anonymous"
    count: int
    first_unix: float
    last_unix: float


@dataclass(frozen=True)
class DenialStatistics:
    denied: int  # callers without a valid credential, denied since the hub started
    recorded: int  # audit events written for them (first of a window, or a window's count)
    windows: int  # aggregation windows open now


@dataclass
class _Window:
    opened: float  # monotonic
    first: Denial
    counted: int = 0
    last_unix: float = 0.0


@dataclass
class DenialAggregator:
    interval_s: float = 60.0
    max_keys: int = 1000
    denied: int = 0
    recorded: int = 0
    _windows: dict[tuple[str, str], _Window] = field(default_factory=dict)

    def note(
        self,
        source: str,
        kind: str,
        reason: str,
        action: str,
        claimed: str,
        now: float,
        now_unix: float,
    ) -> list[Denial]:
        """Count one denial; return what must be recorded now (nothing, the first of a new
        window, and/or the count of a window that just ended). Windows are keyed by
        `kind`, a stable name for the reason: the reason's text can hold what the caller
        chose (a token id), and must not open a window per call."""
        self.denied += 1
        key = (source, kind)
        if key not in self._windows and len(self._windows) >= self.max_keys:
            key = OVERFLOW  # one more window, whatever the source and reason
        out: list[Denial] = []
        window = self._windows.get(key)
        if window is not None and now - window.opened >= self.interval_s:
            out.extend(self._close(key))
            window = None
        if window is None:
            first = Denial(key[0], reason, action, claimed, 1, now_unix, now_unix)
            self._windows[key] = _Window(now, first, 0, now_unix)
            out.append(first)
        else:
            window.counted += 1
            window.last_unix = now_unix
        self.recorded += len(out)
        return out

    def due(self, now: float) -> list[Denial]:
        """The counts of windows that have ended; they are forgotten."""
        ended = [k for k, w in self._windows.items() if now - w.opened >= self.interval_s]
        out = [d for key in ended for d in self._close(key)]
        self.recorded += len(out)
        return out

    def drain(self) -> list[Denial]:
        """Every count not yet recorded (at shutdown)."""
        out = [d for key in list(self._windows) for d in self._close(key)]
        self.recorded += len(out)
        return out

    def _close(self, key: tuple[str, str]) -> list[Denial]:
        window = self._windows.pop(key)
        if not window.counted:
            return []
        first = window.first
        return [
            Denial(
                first.source,
                first.reason,
                first.action,
                first.claimed,
                window.counted,
                first.first_unix,
                window.last_unix,
            )
        ]

    def statistics(self) -> DenialStatistics:
        return DenialStatistics(self.denied, self.recorded, len(self._windows))
