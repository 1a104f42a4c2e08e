"""Statistics: what every stateful component says about itself, in one shape.

Each component with state has `statistics()`, returning a frozen dataclass: a snapshot
taken at that moment (counters since the process started, and the state it is in, as
a StrEnum whose values never change). Status reads them today; metrics and diagnostics
bundles are to read the same snapshots, so a figure means the same thing everywhere.

A `StatisticsBoard` is the list of a daemon's sections, in a fixed order. The set of
section names is fixed when the board is made: a section whose component does not exist
yet (the agent's link before enrollment) reads as None, so the keys of what status
shows never depend on timing. `plain` turns a snapshot into JSON-ready data (enums as
their values, tuples as lists), and `brief` into the one line a table shows.

Taking a snapshot must never change the component, wait, or do I/O.
"""

import dataclasses
import json
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, Protocol

from edgecommon.cli.output import iso


class Observed(Protocol):
    def statistics(self) -> Any: ...


def plain(value: Any) -> Any:
    """`value` (a statistics snapshot, or anything in one) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _key(key: Any) -> str:
    return str(key.value) if isinstance(key, Enum) else str(key)


class StatisticsBoard:
    """A daemon's statistics sections, in order; each is read when a snapshot is taken."""

    def __init__(
        self, sections: Iterable[str], sources: Mapping[str, Observed] | None = None
    ) -> None:
        self._sources: dict[str, Observed | None] = dict.fromkeys(sections)
        for name, source in (sources or {}).items():
            self.attach(name, source)

    @property
    def sections(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def attach(self, name: str, source: Observed) -> None:
        """`source` (a component that came to exist) answers for section `name` from now on."""
        if name not in self._sources:
            known = ", ".join(self._sources)
            raise ValueError(f"no statistics section {name!r}; the sections are {known}")
        self._sources[name] = source

    def snapshot(self) -> dict[str, Any]:
        """Every section as plain data; None for a component that does not exist yet."""
        return {
            name: None if source is None else plain(source.statistics())
            for name, source in self._sources.items()
        }

    def json(self) -> str:
        return json.dumps(self.snapshot(), sort_keys=False)


def parse(text: str) -> dict[str, Any]:
    """The sections a status answer carried as JSON ({} when it carried none)."""
    if not text:
        return {}
    data = json.loads(text)
    return data if isinstance(data, dict) else {}


def shown(data: Any) -> Any:
    """The sections as edgectl's JSON shows them: a wall-clock time (a field named
    `X_unix`) becomes `X`, an ISO 8601 UTC string (null when never), like every other
    time edgectl prints."""
    if isinstance(data, dict):
        return {
            (k.removesuffix("_unix") if _is_time(k, v) else k): (
                iso(v) if _is_time(k, v) else shown(v)
            )
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [shown(v) for v in data]
    return data


def _is_time(key: str, value: Any) -> bool:
    return key.endswith("_unix") and isinstance(value, int | float)


def brief(section: Mapping[str, Any], limit: int = 8) -> str:
    """One line for people: the section's states and its counters that are not zero, in
    field order, at most `limit` of them (nested tables and wall-clock times left out:
    `-o json` has everything)."""
    words = []
    for key, value in section.items():
        if key.endswith("_unix") or isinstance(value, dict | list) or value is None:
            continue
        if value is True:
            words.append(key)
        elif value is False or value == 0 or value == "":
            continue
        elif isinstance(value, float):
            # Three significant digits, but never an exponent: 0.123, 9.46, 259194.
            words.append(f"{key} {value:.3g}" if abs(value) < 1000 else f"{key} {value:.0f}")
        else:
            words.append(f"{key} {value}")
    if len(words) > limit:
        words = [*words[:limit], "..."]
    return ", ".join(words) or "-"


SEE_JSON = "one line per section; -o json shows every field"


def lines(sections: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, brief) per section, for a status record; absent sections say so."""
    return [
        (f"  {name}", "not running" if data is None else brief(data))
        for name, data in sections.items()
    ]


def block(title: str, sections: Mapping[str, Any]) -> str:
    """The sections under a title, labels aligned, for the end of a table."""
    pairs = lines(sections)
    width = max((len(label) for label, _ in pairs), default=0)
    return "\n".join([f"{title} ({SEE_JSON}):", *(f"{a + ':':<{width + 1}} {b}" for a, b in pairs)])
