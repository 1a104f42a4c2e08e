"""The file audit log: JSON lines in numbered segments under one directory.

    DIR/audit-000000000001.jsonl   events 1..N, one JSON object a line (name = first seq)
    DIR/audit-0000000000NN.jsonl   the next segment, started once the last one reached
                                   rotate_bytes; the chain continues across segments
    DIR/anchor.json                left by prune: seq and hash of the last removed event
    DIR/torn-*.partial             the unfinished last line found after a crash, kept aside
    DIR/lock                       flock held by the one process that owns the log

An append is acknowledged after write + fdatasync (and a directory fsync when it started a
segment). A crash can leave a partial last line: it was never acknowledged, so open() moves
it to a torn-*.partial file, reports it, and continues the chain from the last whole line.
A crash can also leave whole lines whose append was never acknowledged; they are valid
events and stay (written, not acknowledged — never the opposite).

Prune appends its audit.prune event first (naming the anchor to be), then writes
anchor.json atomically, then deletes the segments wholly before the anchor and rewrites
the segment holding it (new file, fsync, rename). open() finishes an interrupted prune.
"""

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgecommon.cancellation import to_the_end
from edgecommon.clock import Clock, stamp
from edgecommon.errors import Conflict, InvalidArgument
from edgecommon.group_commit import GroupCommit
from hub.audit.backend import (
    PruneReport,
    check_cutoff,
    checked_events,
    refuse_unverified_prune,
)
from hub.audit.chain import (
    Anchor,
    ChainChecker,
    Head,
    VerifyReport,
    anchor_note,
    seal_all,
)
from hub.audit.event import (
    GENESIS_HASH,
    AuditEvent,
    AuditFilter,
    AuditUnavailable,
    NewEvent,
    validate_filter,
)
from hub.audit.segments import (
    ANCHOR_FILE,
    MIB,
    SEGMENT,
    Segment,
    Snapshot,
    TimeIndex,
    blocks,
    candidates,
    encode,
    extend_time_index,
    fsync_dir,
    last_line,
    lines,
    may_match,
    needles,
    parse,
    read_anchor,
    segment_name,
    seq_of,
    whole_lines_size,
    write_all,
    write_atomic,
)


class FileAuditLog:
    def __init__(
        self,
        directory: Path,
        clock: Clock,
        rotate_bytes: int = 64 * MIB,
        log: logging.Logger | None = None,
    ) -> None:
        if rotate_bytes < 4096:
            raise InvalidArgument(f"audit rotate_bytes must be >= 4096, got {rotate_bytes}")
        self.directory = Path(directory)
        self.name = f"file:{self.directory}"
        self._clock = clock
        self._rotate_bytes = rotate_bytes
        self._log = log or logging.getLogger("hub.audit")
        self._commit: GroupCommit[NewEvent, AuditEvent] = GroupCommit(
            self._write,
            lambda: AuditUnavailable(f"file audit log {self.directory} is shutting down"),
        )
        self._io = asyncio.Lock()
        self._pruning = asyncio.Lock()
        self._time_index: dict[Path, TimeIndex] = {}
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segments: list[Segment] = []
        self._tail_size = 0
        self._head = Head(0, GENESIS_HASH)
        self._anchor: Anchor | None = None
        self._stats = {"appended": 0, "errors": 0, "torn_tails": 0, "bytes": 0}
        self._last_error = ""

    # -- opening -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._lock_fd is not None:
            return
        try:
            await to_the_end(asyncio.to_thread(self._open_sync))
        except OSError as exc:
            raise self._unavailable("cannot open", exc) from exc

    def _open_sync(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._take_lock()
        try:
            self._load()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None

    def _load(self) -> None:
        self._anchor = read_anchor(self.directory)
        self._segments = self._list_segments()
        self._head = self._anchor_head()
        self._find_tail()
        if self._anchor is not None:
            self._drop_through(self._anchor.seq)
        if self._segments:
            last = self._segments[-1].path
            self._fd = os.open(last, os.O_WRONLY | os.O_APPEND)
            self._tail_size = os.fstat(self._fd).st_size
        self._stats["bytes"] = sum(s.path.stat().st_size for s in self._segments)
        self._log.info(
            "audit: file log %s open at event %d (%d segments)",
            self.directory,
            self._head.seq,
            len(self._segments),
        )

    def _take_lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise AuditUnavailable(
                f"file audit log {self.directory} is in use by another process; "
                "give each hub its own AUTONOMY_AUDIT_DIR"
            ) from exc
        self._lock_fd = fd

    def _list_segments(self) -> list[Segment]:
        found = []
        for path in self.directory.iterdir():
            match = SEGMENT.match(path.name)
            if match:
                found.append(Segment(path, int(match.group(1))))
        return sorted(found, key=lambda s: s.first_seq)

    def _anchor_head(self) -> Head:
        return Head(self._anchor.seq, self._anchor.hash) if self._anchor else Head(0, GENESIS_HASH)

    def _find_tail(self) -> None:
        for seg in reversed(self._segments):
            size = self._drop_torn_line(seg.path)
            if size == 0:
                continue
            line = last_line(seg.path, size)
            try:
                event = parse(line)
            except ValueError as exc:
                raise AuditUnavailable(
                    f"file audit log {self.directory}: the last event in {seg.path.name} is "
                    f"not valid ({exc}); run audit verify and move the damaged segment aside"
                ) from exc
            self._head = Head(event.seq, event.hash)
            return

    def _drop_torn_line(self, path: Path) -> int:
        """Move an unfinished last line aside; return the size of the whole lines."""
        with path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            keep = whole_lines_size(handle, size)
            if keep == size:
                return size
            handle.seek(keep)
            torn = handle.read()
            aside = self.directory / f"torn-{path.stem}-{keep}.partial"
            write_atomic(aside, torn)
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        self._stats["torn_tails"] += 1
        self._log.warning(
            "audit: %s ended with an unfinished line of %d bytes (a crash during a write that "
            "was never acknowledged); moved it to %s",
            path,
            len(torn),
            aside.name,
        )
        return keep

    async def close(self) -> None:
        await self._commit.drain()
        async with self._io:
            self._release()

    # -- appending -----------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[AuditEvent]:
        return await self._commit.submit(checked_events(events))

    async def _write(self, news: list[NewEvent]) -> list[AuditEvent]:
        async with self._io:
            return await self._write_locked(news)

    async def _write_locked(self, news: list[NewEvent]) -> list[AuditEvent]:
        if self._lock_fd is None:
            raise AuditUnavailable(f"file audit log {self.directory} is not open")
        events = seal_all(news, self._head.seq, self._head.hash, self._clock.wall())
        data = b"".join(encode(e) for e in events)
        try:
            await to_the_end(asyncio.to_thread(self._write_sync, data, events[0].seq))
        except OSError as exc:
            self._stats["errors"] += 1
            raise self._unavailable("cannot write", exc) from exc
        self._head = Head(events[-1].seq, events[-1].hash)
        self._stats["appended"] += len(events)
        self._stats["bytes"] += len(data)
        return events

    def _write_sync(self, data: bytes, first_seq: int) -> None:
        if self._fd is None or self._tail_size >= self._rotate_bytes:
            self._start_segment(first_seq)
        fd = self._fd
        if fd is None:
            raise OSError("no segment is open")
        try:
            write_all(fd, data)
            os.fdatasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, self._tail_size)
                os.fdatasync(fd)
            except OSError:
                # The unacknowledged bytes stay (verify will name them); the next write
                # starts a fresh segment rather than appending behind them.
                with contextlib.suppress(OSError):
                    os.close(fd)
                self._fd = None
            raise
        self._tail_size += len(data)

    def _start_segment(self, first_seq: int) -> None:
        path = self.directory / segment_name(first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size:
            os.close(fd)
            raise FileExistsError(f"{path.name} already holds events")
        fsync_dir(self.directory)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._tail_size = fd, 0
        if not self._segments or self._segments[-1].path != path:
            self._segments.append(Segment(path, first_seq))

    def _unavailable(self, doing: str, exc: OSError) -> AuditUnavailable:
        self._last_error = f"{doing} {self.directory}: {exc.strerror or exc}"
        return AuditUnavailable(
            f"file audit log {self.directory}: {doing} ({exc.strerror or exc}); free disk space "
            "or fix the directory's permissions (AUTONOMY_AUDIT_DIR)"
        )

    # -- reading -------------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        async with self._io:
            if self._lock_fd is None:
                raise AuditUnavailable(f"file audit log {self.directory} is not open")
            return Snapshot(tuple(self._segments), self._tail_size, self._head, self._anchor)

    async def query(self, f: AuditFilter) -> list[AuditEvent]:
        validate_filter(f)
        snap = await self._snapshot()
        return await asyncio.to_thread(self._collect, snap, f)

    def _collect(self, snap: Snapshot, f: AuditFilter) -> list[AuditEvent]:
        found = []
        for event in self._matching(snap, f):
            found.append(event)
            if f.limit and len(found) >= f.limit:
                break
        return found

    def _matching(self, snap: Snapshot, f: AuditFilter) -> Iterator[AuditEvent]:
        wanted = needles(f)
        segments = snap.segments
        for i, (seg, end) in enumerate(snap.ranges()):
            if i + 1 < len(segments) and segments[i + 1].first_seq - 1 <= f.after_seq:
                continue
            for line in (
                c for b in self._blocks_for(seg.path, end, f) for c in candidates(b, wanted)
            ):
                if not may_match(line, f, wanted):
                    continue
                try:
                    event = parse(line)
                except ValueError:
                    continue  # verify names damaged lines; a query shows what it can read
                if f.matches(event):
                    yield event

    def _blocks_for(self, path: Path, end: int | None, f: AuditFilter) -> Iterator[bytes]:
        """The segment's lines that can match the filter's time range, in blocks."""
        if f.since is None and f.until is None:
            yield from blocks(path, end)
            return
        index = extend_time_index(path, self._time_index.get(path), end)
        if index is None:
            return
        self._time_index[path] = index
        for start, stop in index.wanted(f.since, f.until):
            yield from blocks(path, stop, start=start)

    async def export(self, f: AuditFilter) -> AsyncIterator[AuditEvent]:
        validate_filter(f)
        snap = await self._snapshot()
        found = self._matching(snap, f)
        sent = 0
        try:
            while True:
                chunk = await asyncio.to_thread(list, itertools.islice(found, 2000))
                for event in chunk:
                    yield event
                    sent += 1
                    if f.limit and sent >= f.limit:
                        return
                if len(chunk) < 2000:
                    return
        finally:
            found.close()

    async def verify(self) -> VerifyReport:
        snap = await self._snapshot()
        return await asyncio.to_thread(self._verify_sync, snap)

    def _verify_sync(self, snap: Snapshot) -> VerifyReport:
        quick, unreadable = self._check(snap, keep_links=False)
        report = quick.quick_report(snap.anchor, snap.head, unreadable)
        if report is not None:
            return report
        full, unreadable = self._check(snap, keep_links=True)
        return full.report(snap.anchor, snap.head, unreadable)

    def _check(
        self, snap: Snapshot, keep_links: bool, through: int | None = None
    ) -> tuple[ChainChecker, list[str]]:
        """Every stored event (the first `through` events, if given) through a checker."""
        checker, unreadable, seen = ChainChecker(keep_links), [], 0
        for seg, end in snap.ranges():
            for number, line in lines(seg.path, end):
                if through is not None and seen >= through:
                    return checker, unreadable
                seen += 1
                try:
                    checker.add(parse(line))
                except ValueError as exc:
                    unreadable.append(
                        f"{seg.path.name} line {number} is not a valid event (edited or "
                        f"damaged): {exc}"
                    )
        return checker, unreadable

    # -- pruning -------------------------------------------------------------------------

    async def prune(self, cutoff: float, event: NewEvent) -> PruneReport:
        (event,) = checked_events([event])
        check_cutoff(cutoff, self._clock.wall())
        async with self._pruning:
            # The scan and check of what goes run while appends continue: old events
            # do not change, and only one prune runs at a time.
            snap = await self._snapshot()
            last, removed = await to_the_end(asyncio.to_thread(self._prune_boundary, snap, cutoff))
            return await self._prune_locked(cutoff, event, last, removed)

    async def _prune_locked(
        self, cutoff: float, event: NewEvent, last: AuditEvent | None, removed: int
    ) -> PruneReport:
        async with self._io:
            anchor = Anchor(last.seq, last.hash, cutoff) if last is not None else None
            note = (
                f"{anchor_note(anchor)}; removes {removed} events before {stamp(cutoff)}"
                if anchor
                else f"nothing to remove before {stamp(cutoff)}"
            )
            detail = f"{note}; {event.detail}" if event.detail else note
            (stored,) = await self._write_locked([replace(event, detail=detail)])
            if anchor is not None:
                try:
                    await to_the_end(asyncio.to_thread(self._apply_anchor, anchor))
                except OSError as exc:
                    raise self._unavailable("cannot finish the prune", exc) from exc
        self._log.info(
            "audit: pruned %d events before %s from %s", removed, stamp(cutoff), self.name
        )
        return PruneReport(removed, anchor, stored)

    def _prune_boundary(self, snap: Snapshot, cutoff: float) -> tuple[AuditEvent | None, int]:
        """The last event of the oldest run of events all older than cutoff, and its
        length; Conflict if that run does not verify."""
        last, count = None, 0
        checker = ChainChecker(keep_links=False)
        for seg, end in snap.ranges():
            for number, line in lines(seg.path, end):
                try:
                    event = parse(line)
                except ValueError as exc:
                    raise Conflict(
                        f"audit log {self.name}: prune refused, {seg.path.name} line {number} "
                        f"is damaged ({exc}); run audit verify and keep a copy of the log first"
                    ) from exc
                if event.time >= cutoff:
                    break
                checker.add(event)
                last, count = event, count + 1
            else:
                continue
            break
        if last is not None:
            head = Head(last.seq, last.hash)
            if checker.quick_report(snap.anchor, head, confirm_anchor=False) is None:
                full, _ = self._check(snap, keep_links=True, through=count)
                refuse_unverified_prune(
                    self.name, full.report(snap.anchor, head, confirm_anchor=False)
                )
        return last, count

    def _apply_anchor(self, anchor: Anchor) -> None:
        body = {"seq": anchor.seq, "hash": anchor.hash, "pruned_before": anchor.pruned_before}
        write_atomic(self.directory / ANCHOR_FILE, json.dumps(body).encode() + b"\n")
        self._anchor = anchor
        self._drop_through(anchor.seq)

    def _drop_through(self, seq: int) -> None:
        """Remove every event with seq <= `seq`: whole segments, and rewrite the segment
        that holds `seq` (idempotent, so open() can finish an interrupted prune)."""
        self._time_index.clear()
        kept: list[Segment] = []
        for i, seg in enumerate(self._segments):
            nxt = self._segments[i + 1].first_seq if i + 1 < len(self._segments) else None
            if nxt is not None and nxt - 1 <= seq:
                seg.path.unlink(missing_ok=True)
            elif seg.first_seq <= seq:
                kept.append(self._rewrite_from(seg, seq, last=nxt is None))
            else:
                kept.append(seg)
        fsync_dir(self.directory)
        self._segments = [s for s in kept if s.path.exists()]

    def _rewrite_from(self, seg: Segment, seq: int, last: bool) -> Segment:
        stored = [line + b"\n" for _, line in lines(seg.path, None)]
        keep = [line for line in stored if seq_of(line) > seq]
        if not keep and not last:
            seg.path.unlink()
            return seg
        first = seq_of(keep[0]) if keep else seq + 1
        new = Segment(self.directory / segment_name(first), first)
        write_atomic(new.path, b"".join(keep))
        if new.path != seg.path:
            seg.path.unlink()
        if last and self._fd is not None:
            os.close(self._fd)
            self._fd = os.open(new.path, os.O_WRONLY | os.O_APPEND)
            self._tail_size = os.fstat(self._fd).st_size
        return new

    def statistics(self) -> dict[str, Any]:
        return {
            "backend": "file",
            "name": self.name,
            "events": self._head.seq - (self._anchor.seq if self._anchor else 0),
            "last_seq": self._head.seq,
            "anchor_seq": self._anchor.seq if self._anchor else 0,
            "segments": len(self._segments),
            "batches": self._commit.batches,
            "last_error": self._last_error,
            **self._stats,
        }
