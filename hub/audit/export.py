"""Export formats of audit events: JSON lines and CSV (pure). Both add time_utc, the
event time as an ISO 8601 UTC string, after time."""

import csv
import io
import json
from typing import Any

from edgecommon.clock import utc
from hub.audit.event import EVENT_FIELDS, AuditEvent

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
