"""The one renderer of edgectl and edge-hub's admin commands: tables for people (default),
JSON for scripts (--output json).

JSON is the data only, keys stable, times as ISO 8601 UTC strings, durations in seconds.
"""

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from edgecommon.clock import utc


def iso(unix: float) -> str | None:
    return f"{utc(unix):%Y-%m-%dT%H:%M:%S}Z" if unix else None


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


@dataclass(frozen=True)
class Column:
    title: str
    key: str


@dataclass
class Renderer:
    fmt: str = "table"
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr

    def note(self, message: str) -> None:
        """A hint for people, on stderr so that stdout stays data."""
        self.err.write(message.rstrip("\n") + "\n")

    def json(self, data: Any) -> None:
        self.out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def record(self, data: dict[str, Any], lines: Sequence[tuple[str, Any]]) -> None:
        """One object: JSON as is, or `lines` of (label, value) for people."""
        if self.fmt == "json":
            self.json(data)
            return
        width = max((len(label) for label, _ in lines), default=0)
        for label, value in lines:
            self.out.write(f"{label + ':':<{width + 1}} {_cell(value)}\n")

    def table(
        self,
        data: Any,
        rows: Sequence[dict[str, Any]],
        columns: Sequence[Column],
        footer: str = "",
    ) -> None:
        if self.fmt == "json":
            self.json(data)
            return
        cells = [[_cell(row.get(c.key)) for c in columns] for row in rows]
        widths = [max([len(c.title)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        self.out.write(
            "  ".join(c.title.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
            + "\n"
        )
        for r in cells:
            self.out.write(
                "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n"
            )
        if footer:
            self.out.write(footer + "\n")

    def text(self, data: Any, message: str) -> None:
        if self.fmt == "json":
            self.json(data)
        else:
            self.out.write(message.rstrip("\n") + "\n")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return str(value)
