"""Audit events on the writing side: what callers hand in (NewEvent), its validation and
that of filters, the stored form's decoding, and the errors of the audit package. What is
stored (AuditEvent) and how to ask for it (AuditFilter) are shared with every reader and
come from edgecommon.audit_record.

    EdgeError
    ├── InvalidArgument        a bad event field or filter (nothing is stored)
    └── Unreachable
        └── AuditUnavailable   a backend cannot be written or read; names it and the fix

Times are unix wall seconds quantized to whole microseconds, so that PostgreSQL's
timestamptz and the JSON lines of the file log hold exactly the value that was hashed.
"""

import dataclasses
import math
from dataclasses import dataclass

from edgecommon.audit_record import EVENT_FIELDS, OUTCOMES, AuditEvent, AuditFilter
from edgecommon.errors import InvalidArgument, Unreachable

# The record types are shared with every reader (edgecommon.audit_record); the hub's audit
# package names them from here, beside what only a writer needs.
__all__ = [
    "EVENT_FIELDS",
    "GENESIS_HASH",
    "MAX_FIELD_CHARS",
    "MAX_TEXT_CHARS",
    "OUTCOMES",
    "AuditEvent",
    "AuditFilter",
    "AuditUnavailable",
    "NewEvent",
    "event_from_dict",
    "quantize_time",
    "validate_filter",
    "validate_new_event",
]

GENESIS_HASH = "0" * 64
MAX_FIELD_CHARS = 1024
MAX_TEXT_CHARS = 16384  # reason and detail may carry an error message or a prune summary


class AuditUnavailable(Unreachable):
    """An audit backend cannot be written or read; the message names it and how to fix it."""


@dataclass(frozen=True)
class NewEvent:
    operator: str
    action: str
    target: str
    scope: str
    outcome: str
    request_id: str
    reason: str = ""
    detail: str = ""


_TEXT_FIELDS = tuple(f.name for f in dataclasses.fields(NewEvent))


def quantize_time(unix: float) -> float:
    """The wall time as stored: whole microseconds."""
    return round(unix * 1_000_000) / 1_000_000


def validate_new_event(event: NewEvent) -> None:
    """Raise InvalidArgument naming the first bad field of `event`."""
    if not isinstance(event, NewEvent):
        raise InvalidArgument(f"audit event must be a NewEvent, got {type(event).__name__}")
    for name in _TEXT_FIELDS:
        value = getattr(event, name)
        limit = MAX_TEXT_CHARS if name in ("reason", "detail") else MAX_FIELD_CHARS
        if not isinstance(value, str):
            raise InvalidArgument(f"audit event field {name} must be text, got {value!r}")
        if len(value) > limit:
            raise InvalidArgument(
                f"audit event field {name} is {len(value)} characters; the limit is {limit}"
            )
        if "\x00" in value:
            raise InvalidArgument(f"audit event field {name} contains a NUL character")
    for name in ("operator", "action", "outcome"):
        if not getattr(event, name):
            raise InvalidArgument(f"audit event field {name} is empty; name who/what/how")
    if event.outcome not in OUTCOMES:
        raise InvalidArgument(
            f"audit event outcome {event.outcome!r} is unknown; use one of {', '.join(OUTCOMES)}"
        )


def validate_filter(f: AuditFilter) -> None:
    """Raise InvalidArgument naming what is wrong with the filter."""
    for name in ("since", "until"):
        value = getattr(f, name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidArgument(f"audit filter {name} must be unix seconds, got {value!r}")
    if f.since is not None and f.until is not None and f.since > f.until:
        raise InvalidArgument(
            f"audit filter since ({f.since}) is after until ({f.until}); swap them"
        )
    for name in ("after_seq", "limit"):
        value = getattr(f, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgument(f"audit filter {name} must be an integer >= 0, got {value!r}")
    for name in ("operator", "action", "outcome", "target"):
        if not isinstance(getattr(f, name), str):
            raise InvalidArgument(f"audit filter {name} must be text")
    if f.outcome and f.outcome not in OUTCOMES:
        raise InvalidArgument(
            f"audit filter outcome {f.outcome!r} is unknown; use one of {', '.join(OUTCOMES)}"
        )


_FIELD_SET = frozenset(EVENT_FIELDS)
_TEXT_STORED = EVENT_FIELDS[2:]


def event_from_dict(data: object) -> AuditEvent:
    """An AuditEvent from its to_dict() form; ValueError naming the bad field otherwise."""
    if type(data) is not dict:
        raise ValueError("not a JSON object")
    if data.keys() != _FIELD_SET:
        missing = sorted(_FIELD_SET - data.keys())
        extra = sorted(data.keys() - _FIELD_SET)
        raise ValueError(f"fields differ (missing {missing}, unexpected {extra})")
    seq, time = data["seq"], data["time"]
    if type(seq) is not int or seq < 1:
        raise ValueError(f"seq {seq!r} is not a positive integer")
    if type(time) not in (int, float) or not math.isfinite(time):
        raise ValueError(f"time {time!r} is not a number")
    for name in _TEXT_STORED:
        if type(data[name]) is not str:
            raise ValueError(f"{name} is not text")
    return AuditEvent(**{**data, "time": float(time)})
