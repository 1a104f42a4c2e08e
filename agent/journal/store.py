"""The node's journal: append-only entries chained by hash, in SQLite (WAL, synchronous=FULL).

    hash(n) = sha256(index, epoch, prev_hash, key, payload), each part length-prefixed
    prev_hash(1) = 32 zero bytes

An append is durable when `append` returns. Concurrent appends are group-committed
(edgecommon.group_commit, whose rules for cancellation hold here): while one transaction
commits, new appends queue up and go together in the next one, so many writers cost
about one fsync per batch instead of one each. A writer that gives up does not interrupt
the others' commit (its entry may still be written: not acknowledged is not the same as
not stored).

SQLite runs on one thread of its own and each write is one call to it (BEGIN, the rows,
COMMIT together): a cancelled caller cannot leave a transaction open, and a commit costs
one thread hop instead of three. The in-memory position is updated when the write
completes, even if whoever awaited it was cancelled.

Entries from the leader are checked before anything is written: a batch whose hashes do
not chain onto the local journal is refused whole (ChainBroken) and nothing changes.
"""

import asyncio
import contextlib
import hashlib
import itertools
import sqlite3
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edgecommon.errors import EdgeError
from edgecommon.group_commit import GroupCommit
from edgecommon.sqlite_file import connect

GENESIS_HASH = bytes(32)
CACHE_ENTRIES = 8192
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, "
    "prev_hash BLOB NOT NULL, hash BLOB NOT NULL, key TEXT NOT NULL, payload BLOB NOT NULL, "
    "appended_unix REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_by_key ON entries (key, idx)",
    # Epochs in which this node appended entries itself (as leader): a divergent suffix
    # of such entries is this node's own writes, not entries a former leader sent it.
    "CREATE TABLE IF NOT EXISTS led_epochs (epoch INTEGER PRIMARY KEY)",
    # Every rewind or resync, written in the transaction that takes entries out: the hub
    # accepts a journal position that moves back only when this count grew.
    "CREATE TABLE IF NOT EXISTS rewinds (id INTEGER PRIMARY KEY, at_unix REAL NOT NULL, "
    "kind TEXT NOT NULL, from_index INTEGER NOT NULL, to_index INTEGER NOT NULL)",
    # The pull stream this replica follows (agent/journal/replica.py): the leader counts what it
    # sent on it, so a restarted replica that names it is not sent its entries again.
    "CREATE TABLE IF NOT EXISTS pull_stream (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "leader TEXT NOT NULL, epoch INTEGER NOT NULL, token BLOB NOT NULL)",
)
COLUMNS = "idx, epoch, prev_hash, hash, key, payload, appended_unix"


class ChainBroken(EdgeError):
    """Entries whose hashes do not chain onto the journal; nothing was written."""


@dataclass(frozen=True)
class Entry:
    index: int
    epoch: int
    prev_hash: bytes
    hash: bytes
    key: str
    payload: bytes
    appended_unix: float

    @property
    def size(self) -> int:
        return len(self.key) + len(self.payload) + 96


@dataclass(frozen=True)
class Position:
    index: int
    epoch: int
    hash: bytes


GENESIS = Position(0, 0, GENESIS_HASH)


def entry_hash(index: int, epoch: int, prev_hash: bytes, key: str, payload: bytes) -> bytes:
    raw_key = key.encode()
    h = hashlib.sha256()
    h.update(struct.pack(">QQI", index, epoch, len(prev_hash)))
    h.update(prev_hash)
    h.update(struct.pack(">I", len(raw_key)))
    h.update(raw_key)
    h.update(struct.pack(">Q", len(payload)))
    h.update(payload)
    return h.digest()


def make_entry(after: Position, epoch: int, key: str, payload: bytes, now: float) -> Entry:
    index = after.index + 1
    return Entry(
        index,
        epoch,
        after.hash,
        entry_hash(index, epoch, after.hash, key, payload),
        key,
        payload,
        now,
    )


def verify_chain(after: Position, entries: Sequence[Entry]) -> Position:
    """The position after `entries` if they chain onto `after`; ChainBroken saying where not."""
    last = after
    for e in entries:
        if e.index != last.index + 1:
            raise ChainBroken(f"entry {e.index} does not follow entry {last.index}")
        if e.prev_hash != last.hash:
            raise ChainBroken(
                f"entry {e.index} names previous hash {e.prev_hash.hex()[:16]} but entry "
                f"{last.index} has {last.hash.hex()[:16]}"
            )
        if entry_hash(e.index, e.epoch, e.prev_hash, e.key, e.payload) != e.hash:
            raise ChainBroken(f"entry {e.index}'s hash does not match its contents")
        if e.epoch < last.epoch:
            raise ChainBroken(f"entry {e.index} has epoch {e.epoch} after epoch {last.epoch}")
        last = Position(e.index, e.epoch, e.hash)
    return last


def _row(e: Entry) -> tuple[object, ...]:
    return (e.index, e.epoch, e.prev_hash, e.hash, e.key, e.payload, e.appended_unix)


def _entry(row: Sequence[object]) -> Entry:
    i, ep, prev, h, k, p, t = row
    return Entry(int(i), int(ep), bytes(prev), bytes(h), str(k), bytes(p), float(t))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Append:
    key: str
    payload: bytes
    epoch: int


INSERT = f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?)"


class _Db:
    """The journal's SQLite connection. Every method runs on the store's one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    @property
    def c(self) -> sqlite3.Connection:
        if self.conn is None:
            raise RuntimeError("the journal is not open")
        return self.conn

    def open(self) -> tuple[list[Entry], set[int], int]:
        self.conn = connect(self.path, "edge-agent")
        try:
            for statement in SCHEMA:
                self.conn.execute(statement)
            self.path.chmod(0o600)
            led = {int(r[0]) for r in self.conn.execute("SELECT epoch FROM led_epochs")}
            rewinds = int(self.conn.execute("SELECT count(*) FROM rewinds").fetchone()[0])
            return self.tail(), led, rewinds
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def tail(self) -> list[Entry]:
        rows = self.c.execute(
            f"SELECT {COLUMNS} FROM entries ORDER BY idx DESC LIMIT ?", (CACHE_ENTRIES,)
        ).fetchall()
        return [_entry(r) for r in reversed(rows)]

    def select(self, sql: str, args: tuple[object, ...]) -> list[Entry]:
        return [_entry(r) for r in self.c.execute(sql, args).fetchall()]

    def scalar(self, sql: str, args: tuple[object, ...]) -> object:
        row = self.c.execute(sql, args).fetchone()
        return row[0] if row else None

    def _tx(self, work: Callable[[sqlite3.Connection], object]) -> object:
        c = self.c
        c.execute("BEGIN IMMEDIATE")
        try:
            out = work(c)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return out

    def insert(self, entries: Sequence[Entry], led_epoch: int = 0) -> None:
        def work(c: sqlite3.Connection) -> None:
            c.executemany(INSERT, map(_row, entries))
            if led_epoch:
                c.execute("INSERT OR IGNORE INTO led_epochs VALUES (?)", (led_epoch,))

        self._tx(work)

    def truncate(self, index: int, at_unix: float) -> tuple[list[Entry], list[Entry]]:
        def work(c: sqlite3.Connection) -> list[Entry]:
            rows = c.execute(
                f"SELECT {COLUMNS} FROM entries WHERE idx > ? ORDER BY idx", (index,)
            ).fetchall()
            c.execute("DELETE FROM entries WHERE idx > ?", (index,))
            if rows:
                _record_rewind(c, at_unix, "rewind", int(rows[-1][0]), index)
            return [_entry(r) for r in rows]

        removed = self._tx(work)
        return removed, self.tail()  # type: ignore[return-value]

    def pull_stream(self) -> tuple[str, int, bytes] | None:
        row = self.c.execute("SELECT leader, epoch, token FROM pull_stream").fetchone()
        return (str(row[0]), int(row[1]), bytes(row[2])) if row else None

    def save_pull_stream(self, leader: str, epoch: int, token: bytes) -> None:
        self.c.execute(
            "INSERT INTO pull_stream VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "leader = excluded.leader, epoch = excluded.epoch, token = excluded.token",
            (leader, epoch, token),
        )

    def begin_replace(self, at_unix: float) -> None:
        self.c.execute("BEGIN IMMEDIATE")
        before = self.c.execute("SELECT coalesce(max(idx), 0) FROM entries").fetchone()[0]
        self.c.execute("DELETE FROM entries")
        _record_rewind(self.c, at_unix, "resync", int(before), 0)

    def add(self, entries: Sequence[Entry]) -> None:
        self.c.executemany(INSERT, map(_row, entries))

    def end_replace(self, commit: bool) -> tuple[list[Entry], int]:
        if self.c.in_transaction:
            self.c.execute("COMMIT" if commit else "ROLLBACK")
        return self.tail(), int(self.c.execute("SELECT count(*) FROM rewinds").fetchone()[0])


def _record_rewind(c: sqlite3.Connection, at_unix: float, kind: str, old: int, new: int) -> None:
    c.execute(
        "INSERT INTO rewinds (at_unix, kind, from_index, to_index) VALUES (?,?,?,?)",
        (at_unix, kind, old, new),
    )


@dataclass(frozen=True)
class JournalStatistics:
    last_index: int
    last_epoch: int
    batches: int  # commits of appended entries since the agent started (group commit)
    rewinds: int  # rewinds and resyncs recorded in the journal (ever)
    led_epochs: int  # epochs in which this node appended as leader (ever)


class JournalStore:
    def __init__(self, path: Path, wall: Callable[[], float]) -> None:
        self.path = path
        self.wall = wall
        self._db = _Db(path)
        self._pool: ThreadPoolExecutor | None = None
        self._write_lock = asyncio.Lock()
        self._appends: GroupCommit[_Append, Entry] = GroupCommit(
            self._write_batch, lambda: EdgeError("the journal is shutting down")
        )
        self._last = GENESIS
        self._cache: deque[Entry] = deque(maxlen=CACHE_ENTRIES)
        self._grown = asyncio.Event()
        self.led_epochs: set[int] = set()
        self.rewinds = 0  # rewinds and resyncs recorded in the journal

    def _run(self, fn: Callable[..., object], *args: object) -> asyncio.Future[object]:
        if self._pool is None:
            raise RuntimeError("the journal is not open")
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        try:
            tail, self.led_epochs, self.rewinds = await self._run(self._db.open)  # type: ignore[misc]
        except BaseException:
            await self.close()
            raise
        self._set_tail(tail)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):  # a disk that hangs does not hold shutdown
            async with asyncio.timeout(5):
                await self._appends.drain()
        if self._pool is not None:
            await self._run(self._db.close)
            self._pool.shutdown(wait=True)
            self._pool = None

    def statistics(self) -> JournalStatistics:
        last = self._last
        return JournalStatistics(
            last.index, last.epoch, self.batches, self.rewinds, len(self.led_epochs)
        )

    @property
    def last(self) -> Position:
        return self._last

    @property
    def batches(self) -> int:
        """Appends are written in this many transactions (group commit)."""
        return self._appends.batches

    def _set_tail(self, rows: list[Entry]) -> None:
        self._cache = deque(rows, maxlen=CACHE_ENTRIES)
        self._last = Position(rows[-1].index, rows[-1].epoch, rows[-1].hash) if rows else GENESIS

    def _grew(self, entries: Sequence[Entry]) -> None:
        if entries:
            last = entries[-1]
            self._last = Position(last.index, last.epoch, last.hash)
        self._cache.extend(entries)
        self._grown.set()
        self._grown = asyncio.Event()

    async def _write(self, entries: Sequence[Entry], led_epoch: int = 0) -> None:
        """Insert `entries` (already chained onto the journal); memory follows the disk."""
        fut = self._run(self._db.insert, entries, led_epoch)
        fut.add_done_callback(
            lambda f: None if f.cancelled() or f.exception() else self._grew(entries)
        )
        await asyncio.shield(fut)

    # --- writing ---------------------------------------------------------------------

    async def append(self, key: str, payload: bytes, epoch: int) -> Entry:
        """Append one entry; it is on disk when this returns."""
        (entry,) = await self._appends.submit([_Append(key, payload, epoch)])
        return entry

    async def _write_batch(self, batch: list[_Append]) -> list[Entry]:
        now = self.wall()
        async with self._write_lock:
            last, entries = self._last, []
            for p in batch:
                entry = make_entry(last, p.epoch, p.key, p.payload, now)
                entries.append(entry)
                last = Position(entry.index, entry.epoch, entry.hash)
            epoch = entries[-1].epoch
            await self._write(entries, epoch if epoch not in self.led_epochs else 0)
            self.led_epochs.add(epoch)
        return entries

    async def append_replicated(self, entries: Sequence[Entry]) -> Position:
        """Write the leader's entries after checking they chain on; all or nothing."""
        if not entries:
            return self._last
        async with self._write_lock:
            verify_chain(self._last, entries)
            await self._write(entries)
        return self._last

    async def truncate_after(self, index: int) -> list[Entry]:
        """Remove every entry after `index` and return them (oldest first)."""
        async with self._write_lock:
            fut = self._run(self._db.truncate, index, self.wall())
            fut.add_done_callback(
                lambda f: None if f.cancelled() or f.exception() else self._truncated(f.result())
            )
            removed, _ = await asyncio.shield(fut)  # type: ignore[misc]
        return removed  # type: ignore[no-any-return]

    def _truncated(self, result: tuple[list[Entry], list[Entry]]) -> None:
        removed, tail = result
        if removed:
            self.rewinds += 1
        self._set_tail(tail)

    async def replace_all(self, batches: AsyncIterator[Sequence[Entry]]) -> Position:
        """Replace the whole journal with a snapshot, checking its chain; all or nothing."""
        async with self._write_lock:
            await self._run(self._db.begin_replace, self.wall())
            committed = False
            try:
                last = GENESIS
                async for batch in batches:
                    last = verify_chain(last, batch)
                    await asyncio.shield(self._run(self._db.add, batch))
                committed = True
            finally:
                tail, self.rewinds = await asyncio.shield(  # type: ignore[misc]
                    self._run(self._db.end_replace, committed)
                )
                self._set_tail(tail)
        return self._last

    async def pull_stream(self) -> tuple[str, int, bytes] | None:
        """The pull stream last saved: (leader, epoch, token)."""
        return await self._run(self._db.pull_stream)  # type: ignore[return-value]

    async def save_pull_stream(self, leader: str, epoch: int, token: bytes) -> None:
        await asyncio.shield(self._run(self._db.save_pull_stream, leader, epoch, token))

    # --- reading ---------------------------------------------------------------------

    async def wait_beyond(self, index: int, timeout_s: float) -> None:
        """Return once the journal holds an entry after `index`, or after `timeout_s`."""
        if self._last.index > index or timeout_s <= 0:
            return
        grown = self._grown
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await grown.wait()

    def _cached(self, index: int) -> Entry | None:
        if self._cache and self._cache[0].index <= index <= self._cache[-1].index:
            return self._cache[index - self._cache[0].index]
        return None

    async def entries_after(self, after: int, max_entries: int, max_bytes: int) -> list[Entry]:
        """Up to `max_entries` entries after index `after`, at least one, within `max_bytes`."""
        if after >= self._last.index:
            return []
        if self._cached(after + 1) is not None:
            start = after + 1 - self._cache[0].index
            end = min(len(self._cache), start + max_entries)
            picked = list(itertools.islice(self._cache, start, end))
        else:
            picked = await self._select(
                f"SELECT {COLUMNS} FROM entries WHERE idx > ? ORDER BY idx LIMIT ?",
                (after, max_entries),
            )
        out, size = [], 0
        for e in picked:
            size += e.size
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    async def _select(self, sql: str, args: tuple[object, ...]) -> list[Entry]:
        return await self._run(self._db.select, sql, args)  # type: ignore[return-value]

    async def read(self, from_index: int, limit: int, key: str = "") -> list[Entry]:
        where, args = (
            ("idx >= ? AND key = ?", (from_index, key)) if key else ("idx >= ?", (from_index,))
        )
        return await self._select(
            f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY idx LIMIT ?", (*args, limit)
        )

    async def hash_at(self, index: int) -> bytes | None:
        if index == 0:
            return GENESIS_HASH
        if index > self._last.index:
            return None
        if (e := self._cached(index)) is not None:
            return e.hash
        found = await self._run(self._db.scalar, "SELECT hash FROM entries WHERE idx = ?", (index,))
        return bytes(found) if found is not None else None  # type: ignore[arg-type]

    async def appended_unix(self, index: int) -> float | None:
        if index < 1 or index > self._last.index:
            return None
        if (e := self._cached(index)) is not None:
            return e.appended_unix
        found = await self._run(
            self._db.scalar, "SELECT appended_unix FROM entries WHERE idx = ?", (index,)
        )
        return float(found) if found is not None else None  # type: ignore[arg-type]

    async def snapshot(self, chunk: int) -> AsyncIterator[list[Entry]]:
        """The journal up to its last entry when called, in chunks."""
        end = self._last.index
        after = 0
        while after < end:
            batch = await self._select(
                f"SELECT {COLUMNS} FROM entries WHERE idx > ? AND idx <= ? ORDER BY idx LIMIT ?",
                (after, end, chunk),
            )
            if not batch:
                return
            after = batch[-1].index
            yield batch
