"""The one report format of bench/: distributions, tables, the machine, failures.

Each figure is a Summary (median, p99 by nearest rank, max) of ours beside the floor
measured in the same run, in a Section (one table) of the Report. The report starts with
the machine (cores, nice level, load average at start, the product's commit) and ends with
the load average at the end; a failure is printed and makes the bench exit 1. No product
code here.
"""

import dataclasses
import json
import math
import os
import statistics
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
from _procs import progress

# --- figures -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Summary:
    """A distribution: median, p99 (nearest rank) and max, over n values."""

    median: float
    p99: float
    max: float
    n: int


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of all values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(values: Iterable[float | None], scale: float = 1.0) -> Summary | None:
    """Each value times `scale`; None for no values. None and NaN values (a measurement that
    did not happen) are left out."""
    kept = [v * scale for v in values if v is not None and v == v]
    if not kept:
        return None
    return Summary(statistics.median(kept), percentile(kept, 0.99), max(kept), len(kept))


def one(value: float | None) -> Summary | None:
    """A single figure (a rate, a count) in a row of distributions."""
    return None if value is None else Summary(value, value, value, 1)


@dataclasses.dataclass(frozen=True)
class Row:
    figure: str
    unit: str
    ours: Summary | None
    floor: Summary | None = None

    def ratio(self) -> float | None:
        if self.ours is None or self.floor is None or self.floor.median == 0:
            return None
        return self.ours.median / self.floor.median


@dataclasses.dataclass
class Section:
    title: str
    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(
        self, figure: str, unit: str, ours: Summary | None, floor: Summary | None = None
    ) -> None:
        self.rows.append(Row(figure, unit, ours, floor))


def number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def cells(summary: Summary | None) -> list[str]:
    if summary is None:
        return ["-", "-", "-"]
    return [number(summary.median), number(summary.p99), number(summary.max)]


def table(section: Section) -> str:
    """The section as a table: the figure, its unit, ours and the floor, and their ratio."""
    head = ["figure", "unit", "median", "p99", "max", "floor median", "p99", "max", "ratio"]
    rows = [head]
    for row in section.rows:
        ratio = row.ratio()
        shown = f"{ratio:.2f}x" if ratio is not None else "-"
        rows.append([row.figure, row.unit, *cells(row.ours), *cells(row.floor), shown])
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]

    def line(row: list[str]) -> str:
        padded = [
            v.ljust(w) if c < 2 else v.rjust(w)
            for c, (v, w) in enumerate(zip(row, widths, strict=True))
        ]
        return " ".join(padded[:5]) + " | " + " ".join(padded[5:8]) + " | " + padded[8]

    lines = [section.title, *(line(r) for r in rows)]
    return "\n".join(lines + [f"note: {note}" for note in section.notes])


def product_version(product: Path) -> str:
    """The git commit (+ uncommitted changes) of the product's checkout at `product`."""
    git = ["git", "-C", str(product)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True
        )
    except OSError:
        return f"{product} (unknown version)"
    if commit.returncode != 0:
        return f"{product} (not a git checkout)"
    version = commit.stdout.decode().strip() + (" + uncommitted changes" if dirty.stdout else "")
    return f"{product} at {version}"


class Report:
    """The one report format: the machine, then a table per section, notes and failures."""

    def __init__(self, name: str, as_json: bool, product: Path) -> None:
        self.name = name
        self.as_json = as_json
        self.sections: list[Section] = []
        self.notes: list[str] = []
        self.failures: list[str] = []
        self.printed: set[int] = set()  # ids of the sections already printed
        self.machine: dict[str, Any] = {
            "cores": psutil.cpu_count(),
            "nice": os.nice(0),
            "load_average_start": os.getloadavg(),
            "product": product_version(product),
        }

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section

    def note(self, text: str) -> None:
        self.notes.append(text)

    def fail(self, text: str) -> None:
        """A phase that did not measure what it should: printed, and the exit status is 1."""
        progress(f"FAILED: {text}")
        self.failures.append(text)

    def print_section(self, section: Section) -> None:
        """Print a finished section now (long runs show their tables as they go)."""
        if not self.as_json:
            print(table(section) + "\n", flush=True)
        self.printed.add(id(section))

    def start(self) -> None:
        m = self.machine
        if not self.as_json:
            print(
                f"bench {self.name}: {m['cores']} cores, nice {m['nice']}, load average "
                f"{_load(m['load_average_start'])} at start; product {m['product']}\n",
                flush=True,
            )

    def finish(self) -> None:
        self.machine["load_average_end"] = os.getloadavg()
        if self.as_json:
            print(json.dumps(self.data(), indent=2))
            return
        for section in self.sections:
            if id(section) not in self.printed:
                print(table(section) + "\n")
        for text in self.notes:
            print(f"note: {text}")
        for text in self.failures:
            print(f"FAILED: {text}")
        print(f"load average {_load(self.machine['load_average_end'])} at end", flush=True)

    def data(self) -> dict[str, Any]:
        return {
            "bench": self.name,
            "machine": self.machine,
            "sections": [dataclasses.asdict(s) for s in self.sections],
            "notes": self.notes,
            "failures": self.failures,
        }


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)
