"""The node's journal: append-only entries chained by hash, in SQLite (WAL, synchronous=FULL).

    hash(n) = sha256(index, epoch, prev_hash, key, payload), each part length-prefixed
    prev_hash(1) = 32 zero bytes

An append is durable when `append` returns. Concurrent appends are group-committed:
while one transaction commits, new appends queue up and go together in the next one,
so many writers cost about one fsync per batch instead of one each. The batch is
written by a shielded task, so a writer that gives up does not interrupt the others'
commit.

Entries from the leader are checked before anything is written: a batch whose hashes do
not chain onto the local journal is refused whole (ChainBroken) and nothing changes.
"""

import asyncio
import contextlib
import hashlib
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from edgecommon.errors import EdgeError
from edgecommon.sqlite_tx import transaction

GENESIS_HASH = bytes(32)
CACHE_ENTRIES = 8192
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, "
    "prev_hash BLOB NOT NULL, hash BLOB NOT NULL, key TEXT NOT NULL, payload BLOB NOT NULL, "
    "appended_unix REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_by_key ON entries (key, idx)",
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


@dataclass
class _Pending:
    key: str
    payload: bytes
    epoch: int
    done: asyncio.Future[Entry]


class JournalStore:
    def __init__(self, path: Path, wall: Callable[[], float]) -> None:
        self.path = path
        self.wall = wall
        self._db: aiosqlite.Connection | None = None
        self._tx_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._pending: list[_Pending] = []
        self._last = GENESIS
        self._cache: deque[Entry] = deque(maxlen=CACHE_ENTRIES)
        self._grown = asyncio.Event()
        self.batches = 0

    async def open(self) -> None:
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
            await self._db.execute(f"PRAGMA {pragma}")
        for statement in SCHEMA:
            await self._db.execute(statement)
        self.path.chmod(0o600)
        await self._reload()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the journal is not open")
        return self._db

    @property
    def last(self) -> Position:
        return self._last

    async def _reload(self) -> None:
        async with self.db.execute(
            f"SELECT {COLUMNS} FROM entries ORDER BY idx DESC LIMIT ?", (CACHE_ENTRIES,)
        ) as cur:
            rows = [_entry(r) for r in await cur.fetchall()]
        rows.reverse()
        self._cache = deque(rows, maxlen=CACHE_ENTRIES)
        self._last = Position(rows[-1].index, rows[-1].epoch, rows[-1].hash) if rows else GENESIS

    def _grew(self, entries: Iterable[Entry]) -> None:
        self._cache.extend(entries)
        self._grown.set()
        self._grown = asyncio.Event()

    # --- writing ---------------------------------------------------------------------

    async def append(self, key: str, payload: bytes, epoch: int) -> Entry:
        """Append one entry; it is on disk when this returns."""
        done: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(key, payload, epoch, done))
        await asyncio.shield(self._flush())
        return await done

    async def _flush(self) -> None:
        async with self._flush_lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                entries = await self._write_batch(batch)
            except BaseException as exc:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(
                            exc if isinstance(exc, Exception) else EdgeError("append cancelled")
                        )
                if not isinstance(exc, Exception):
                    raise
                return
            for p, entry in zip(batch, entries, strict=True):
                if not p.done.done():
                    p.done.set_result(entry)

    async def _write_batch(self, batch: list[_Pending]) -> list[Entry]:
        now = self.wall()
        async with transaction(self.db, self._tx_lock) as db:
            last, entries = self._last, []
            for p in batch:
                entry = make_entry(last, p.epoch, p.key, p.payload, now)
                entries.append(entry)
                last = Position(entry.index, entry.epoch, entry.hash)
            await db.executemany(
                f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?)", map(_row, entries)
            )
        self._last = last
        self.batches += 1
        self._grew(entries)
        return entries

    async def append_replicated(self, entries: Sequence[Entry]) -> Position:
        """Write the leader's entries after checking they chain on; all or nothing."""
        if not entries:
            return self._last
        async with transaction(self.db, self._tx_lock) as db:
            last = verify_chain(self._last, entries)
            await db.executemany(
                f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?)", map(_row, entries)
            )
        self._last = last
        self._grew(entries)
        return last

    async def truncate_after(self, index: int) -> list[Entry]:
        """Remove every entry after `index` and return them (oldest first)."""
        async with transaction(self.db, self._tx_lock) as db:
            async with db.execute(
                f"SELECT {COLUMNS} FROM entries WHERE idx > ? ORDER BY idx", (index,)
            ) as cur:
                removed = [_entry(r) for r in await cur.fetchall()]
            await db.execute("DELETE FROM entries WHERE idx > ?", (index,))
        await self._reload()
        return removed

    async def replace_all(self, batches: AsyncIterator[Sequence[Entry]]) -> Position:
        """Replace the whole journal with a snapshot, checking its chain; all or nothing."""
        async with transaction(self.db, self._tx_lock) as db:
            await db.execute("DELETE FROM entries")
            last = GENESIS
            async for batch in batches:
                last = verify_chain(last, batch)
                await db.executemany(
                    f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?)", map(_row, batch)
                )
        await self._reload()
        return self._last

    # --- reading ---------------------------------------------------------------------

    async def wait_beyond(self, index: int, timeout_s: float) -> None:
        """Return once the journal holds an entry after `index`, or after `timeout_s`."""
        if self._last.index > index or timeout_s <= 0:
            return
        grown = self._grown
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(grown.wait(), timeout_s)

    async def entries_after(self, after: int, max_entries: int, max_bytes: int) -> list[Entry]:
        """Up to `max_entries` entries after index `after`, at least one, within `max_bytes`."""
        if after >= self._last.index:
            return []
        if self._cache and self._cache[0].index <= after + 1:
            start = after + 1 - self._cache[0].index
            picked = [
                self._cache[i] for i in range(start, min(len(self._cache), start + max_entries))
            ]
        else:
            async with self.db.execute(
                f"SELECT {COLUMNS} FROM entries WHERE idx > ? ORDER BY idx LIMIT ?",
                (after, max_entries),
            ) as cur:
                picked = [_entry(r) for r in await cur.fetchall()]
        out, size = [], 0
        for e in picked:
            size += e.size
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    async def read(self, from_index: int, limit: int, key: str = "") -> list[Entry]:
        where, args = (
            ("idx >= ? AND key = ?", (from_index, key)) if key else ("idx >= ?", (from_index,))
        )
        async with self.db.execute(
            f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY idx LIMIT ?", (*args, limit)
        ) as cur:
            return [_entry(r) for r in await cur.fetchall()]

    async def hash_at(self, index: int) -> bytes | None:
        if index == 0:
            return GENESIS_HASH
        if index > self._last.index:
            return None
        if self._cache and self._cache[0].index <= index:
            return self._cache[index - self._cache[0].index].hash
        async with self.db.execute("SELECT hash FROM entries WHERE idx = ?", (index,)) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    async def appended_unix(self, index: int) -> float | None:
        if index < 1 or index > self._last.index:
            return None
        if self._cache and self._cache[0].index <= index:
            return self._cache[index - self._cache[0].index].appended_unix
        async with self.db.execute(
            "SELECT appended_unix FROM entries WHERE idx = ?", (index,)
        ) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row else None

    async def snapshot(self, chunk: int) -> AsyncIterator[list[Entry]]:
        """The journal up to its last entry when called, in chunks."""
        end = self._last.index
        after = 0
        while after < end:
            async with self.db.execute(
                f"SELECT {COLUMNS} FROM entries WHERE idx > ? AND idx <= ? ORDER BY idx LIMIT ?",
                (after, end, chunk),
            ) as cur:
                batch = [_entry(r) for r in await cur.fetchall()]
            if not batch:
                return
            after = batch[-1].index
            yield batch
