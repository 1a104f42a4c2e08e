"""Segment files of the file audit log: their names, their line format, and reading and
writing them (blocking calls; the log runs them in a worker thread)."""

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.audit.chain import Anchor, Head
from hub.audit.event import AuditEvent, AuditFilter, AuditUnavailable, event_from_dict

MIB = 1024 * 1024
SEGMENT = re.compile(r"^audit-(\d{12})\.jsonl$")
ANCHOR_FILE = "anchor.json"
CHUNK_BYTES = 4 * MIB
SPAN_BYTES = 256 * 1024


def encode(event: AuditEvent) -> bytes:
    return (json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def segment_name(first_seq: int) -> str:
    return f"audit-{first_seq:012d}.jsonl"


_PREFIX = b'{"seq":'


def peek(line: bytes) -> tuple[int, float] | None:
    """seq and time of a stored line without parsing all of it (None: parse it fully)."""
    if not line.startswith(_PREFIX):
        return None
    comma = line.find(b",", 7)
    colon = line.find(b":", comma)
    end = line.find(b",", colon)
    if comma < 0 or colon < 0 or end < 0 or line[comma : colon + 1] != b',"time":':
        return None
    try:
        return int(line[7:comma]), float(line[colon + 1 : end])
    except ValueError:
        return None


def may_match(line: bytes, f: AuditFilter, needles: list[bytes]) -> bool:
    """False only for lines that certainly do not match (the rest are parsed and checked)."""
    if not all(n in line for n in needles):
        return False
    peeked = peek(line)
    if peeked is None:
        return True
    seq, time = peeked
    return (
        seq > f.after_seq
        and (f.since is None or time >= f.since)
        and (f.until is None or time < f.until)
    )


def needles(f: AuditFilter) -> list[bytes]:
    """Byte strings every matching line contains (a cheap test before parsing)."""
    pairs = [("operator", f.operator), ("action", f.action), ("outcome", f.outcome)]
    pairs.append(("target", f.target))
    return [
        f'"{name}":{json.dumps(value, ensure_ascii=False)}'.encode()
        for name, value in pairs
        if value
    ]


@dataclass(frozen=True)
class Segment:
    path: Path
    first_seq: int


@dataclass(frozen=True)
class Snapshot:
    """What a reader may look at: segments and the durable size of the last one."""

    segments: tuple[Segment, ...]
    tail_size: int
    head: Head
    anchor: Anchor | None

    def ranges(self) -> Iterator[tuple[Segment, int | None]]:
        for i, seg in enumerate(self.segments):
            last = i == len(self.segments) - 1
            yield seg, (self.tail_size if last else None)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def blocks(
    path: Path, end: int | None, start: int = 0, chunk: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Runs of whole lines (no trailing newline) from byte `start` up to byte `end`; a
    partial last line is left out."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return  # removed by a prune after the snapshot
    with handle:
        handle.seek(start)
        remaining = None if end is None else end - start
        rest = b""
        while remaining is None or remaining > 0:
            want = chunk if remaining is None else min(chunk, remaining)
            block = handle.read(want)
            if not block:
                break
            if remaining is not None:
                remaining -= len(block)
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            rest = data[cut + 1 :]
            yield data[:cut]


@dataclass(frozen=True)
class Span:
    """Whole lines in bytes [start, end) of a segment and the range of their times."""

    start: int
    end: int
    earliest: float
    latest: float

    def excluded(self, since: float | None, until: float | None) -> bool:
        return (since is not None and self.latest < since) or (
            until is not None and self.earliest >= until
        )


@dataclass(frozen=True)
class TimeIndex:
    """Time ranges of a segment file by spans of about SPAN_BYTES, so a query for a time
    range reads only the spans that can hold a match."""

    inode: int
    spans: tuple[Span, ...]

    @property
    def scanned(self) -> int:
        return self.spans[-1].end if self.spans else 0

    def wanted(self, since: float | None, until: float | None) -> list[tuple[int, int]]:
        """Byte ranges to read, adjacent spans merged."""
        ranges: list[tuple[int, int]] = []
        for span in self.spans:
            if span.excluded(since, until):
                continue
            if ranges and ranges[-1][1] == span.start:
                ranges[-1] = (ranges[-1][0], span.end)
            else:
                ranges.append((span.start, span.end))
        return ranges


def extend_time_index(path: Path, known: TimeIndex | None, end: int | None) -> TimeIndex | None:
    """`known` extended over the lines written since (rebuilt if the file was replaced or
    shrank); None if the file is gone. A line whose time cannot be read makes its span
    unbounded: it is always read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    limit = st.st_size if end is None else min(end, st.st_size)
    if known is None or known.inode != st.st_ino or known.scanned > limit:
        known = TimeIndex(st.st_ino, ())
    spans = list(known.spans)
    offset = known.scanned
    for block in blocks(path, limit, start=offset, chunk=SPAN_BYTES):
        earliest, latest = math.inf, -math.inf
        for line in block.split(b"\n"):
            peeked = peek(line)
            if peeked is None:
                earliest, latest = -math.inf, math.inf
            else:
                earliest, latest = min(earliest, peeked[1]), max(latest, peeked[1])
        span = Span(offset, offset + len(block) + 1, earliest, latest)
        last = spans[-1] if spans else None
        if last is not None and last.end - last.start < SPAN_BYTES:
            span = Span(
                last.start, span.end, min(last.earliest, earliest), max(last.latest, latest)
            )
            spans[-1] = span
        else:
            spans.append(span)
        offset = span.end
    return TimeIndex(st.st_ino, tuple(spans))


def lines(path: Path, end: int | None) -> Iterator[tuple[int, bytes]]:
    """(line number, line without newline) of whole lines up to byte `end`."""
    number = 0
    for block in blocks(path, end):
        for line in block.split(b"\n"):
            number += 1
            yield number, line


def candidates(block: bytes, needles: list[bytes]) -> Iterator[bytes]:
    """The lines of `block` that contain the first needle (all lines if there is none),
    found by searching the whole block rather than testing line by line."""
    if not needles:
        yield from block.split(b"\n")
        return
    first, pos = needles[0], 0
    while (hit := block.find(first, pos)) >= 0:
        start = block.rfind(b"\n", 0, hit) + 1
        stop = block.find(b"\n", hit)
        stop = len(block) if stop < 0 else stop
        yield block[start:stop]
        pos = stop + 1


_DECODE = json.JSONDecoder().decode


def parse(line: bytes) -> AuditEvent:
    try:
        return event_from_dict(_DECODE(line.decode()))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason})") from exc


def read_anchor(directory: Path) -> Anchor | None:
    path = directory / ANCHOR_FILE
    try:
        data = json.loads(path.read_bytes())
        return Anchor(int(data["seq"]), str(data["hash"]), float(data["pruned_before"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditUnavailable(
            f"file audit log {directory}: {ANCHOR_FILE} is damaged ({exc}); restore it from "
            "a backup, or move it aside and expect verify to report the pruned events"
        ) from exc


def whole_lines_size(handle: Any, size: int) -> int:
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        handle.seek(start)
        block = handle.read(pos - start)
        if pos == size and block.endswith(b"\n"):
            return size
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        pos = start
    return 0


def last_line(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        start = size - 1
        while True:
            begin = max(0, start - 65536)
            handle.seek(begin)
            block = handle.read(size - 1 - begin)
            newline = block.rfind(b"\n")
            if newline >= 0 or begin == 0:
                return block[newline + 1 :]
            start = begin


def seq_of(line: bytes) -> int:
    """The seq of a stored line; a damaged line counts as newer than anything (it is kept)."""
    try:
        return parse(line.rstrip(b"\n")).seq
    except ValueError:
        return 1 << 62
