"""The audit event as every side reads it: its outcomes and actions, the stored record, the
filter that asks for records, and the two export formats (JSON lines, CSV).

The hub writes and verifies events (hub/audit/); edgectl and `edge-hub audit` query, show and
export them. Both must agree on the fields, the outcomes and the exported bytes, so those
live here. What only a writer needs (validation, the hash chain, the backends, NewEvent)
stays in hub/audit/. Pure data and pure functions: nothing here does I/O.

Times are unix wall seconds quantized to whole microseconds (the hub stores exactly the
value it hashed); exports add `time_utc`, the same instant as an ISO 8601 UTC string.
"""

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from edgecommon.clock import utc

OUTCOMES = ("attempt", "success", "failure", "denied", "bypassed")

# An event's `action`: a request through the hub's gate is recorded under the permission it
# needs (edgecommon.permissions), or under its RPC method's name when none is mapped and it
# is refused. The hub's own events and the node RPCs audited like operator actions use these.
ENROLL = "enroll"
CERT_RENEW = "cert.renew"
RBAC_RELOAD = "rbac.reload"
STATE_REINITIALIZE = "state.reinitialize"
AUDIT_PRUNE = "audit.prune"  # also the permission that allows it
HUB_ACTIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        ENROLL: "a node or operator exchanged a join token for its first certificate",
        CERT_RENEW: "a node renewed its certificate",
        RBAC_RELOAD: "the hub reloaded its RBAC files (failure: the edit was rejected)",
        STATE_REINITIALIZE: "edge-hub --reinitialize moved a damaged or lost database aside",
        AUDIT_PRUNE: "old events were deleted; the detail names the chain's new anchor",
    }
)


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    time: float
    operator: str
    action: str
    target: str
    scope: str
    outcome: str
    request_id: str
    reason: str
    detail: str
    prev_hash: str
    hash: str

    @property
    def time_us(self) -> int:
        return round(self.time * 1_000_000)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in EVENT_FIELDS}


EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEvent))


@dataclass(frozen=True)
class AuditFilter:
    """Events with since <= time < until, matching every non-empty field, seq > after_seq,
    at most `limit` of them (0 = all), in ascending seq."""

    since: float | None = None
    until: float | None = None
    operator: str = ""
    action: str = ""
    outcome: str = ""
    target: str = ""
    after_seq: int = 0
    limit: int = 1000

    def matches(self, event: AuditEvent) -> bool:
        return (
            event.seq > self.after_seq
            and (self.since is None or event.time >= self.since)
            and (self.until is None or event.time < self.until)
            and (not self.operator or event.operator == self.operator)
            and (not self.action or event.action == self.action)
            and (not self.outcome or event.outcome == self.outcome)
            and (not self.target or event.target == self.target)
        )


# -- export formats ------------------------------------------------------------------------

EXPORT_FIELDS = (EVENT_FIELDS[0], EVENT_FIELDS[1], "time_utc", *EVENT_FIELDS[2:])


def export_dict(event: AuditEvent) -> dict[str, Any]:
    stored = event.to_dict()
    iso = utc(event.time).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return {name: iso if name == "time_utc" else stored[name] for name in EXPORT_FIELDS}


def to_jsonl_line(event: AuditEvent) -> str:
    return json.dumps(export_dict(event), ensure_ascii=False, separators=(",", ":")) + "\n"


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def csv_header() -> str:
    return _csv_line(list(EXPORT_FIELDS))


def to_csv_row(event: AuditEvent) -> str:
    """One CSV record (RFC 4180 quoting; a field holding a newline stays one record)."""
    row = export_dict(event)
    return _csv_line([row[name] for name in EXPORT_FIELDS])
