"""The journal store on real SQLite files: hash chain, group commit, checks, truncation."""

import asyncio
import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from agent.journal.store import (
    GENESIS,
    ChainBroken,
    JournalStore,
    Position,
    entry_hash,
    make_entry,
    verify_chain,
)


def chain(n: int, epoch: int = 1, key: str = "k") -> list:
    out, last = [], GENESIS
    for i in range(n):
        e = make_entry(last, epoch, key, f"v{i}".encode(), 1000.0 + i)
        out.append(e)
        last = Position(e.index, e.epoch, e.hash)
    return out


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = JournalStore(tmp_path / "journal.db", lambda: 1234.5)
    await s.open()
    yield s
    await s.close()


def test_hash_covers_every_field() -> None:
    base = (3, 2, bytes(32), "k", b"v")
    h = entry_hash(*base)
    for i, changed in enumerate((4, 3, b"\x01" * 32, "k2", b"v2")):
        args = list(base)
        args[i] = changed
        assert entry_hash(*args) != h
    # Length prefixes: moving a byte from key to payload changes the hash.
    assert entry_hash(1, 1, bytes(32), "ab", b"c") != entry_hash(1, 1, bytes(32), "a", b"bc")


def test_verify_chain_accepts_a_chain_and_names_the_first_bad_entry() -> None:
    entries = chain(5)
    assert verify_chain(GENESIS, entries).index == 5
    tampered = [*entries[:2], replace(entries[2], payload=b"evil"), *entries[3:]]
    with pytest.raises(ChainBroken, match="entry 3's hash"):
        verify_chain(GENESIS, tampered)
    with pytest.raises(ChainBroken, match="does not follow"):
        verify_chain(GENESIS, entries[1:])
    relinked = replace(entries[1], prev_hash=bytes(32))
    with pytest.raises(ChainBroken, match="previous hash"):
        verify_chain(Position(1, 1, entries[0].hash), [relinked])
    older = make_entry(Position(5, 3, entries[4].hash), 2, "k", b"x", 0.0)
    with pytest.raises(ChainBroken, match="epoch 2 after epoch 3"):
        verify_chain(Position(5, 3, entries[4].hash), [older])


async def test_appends_are_durable_chained_and_survive_reopen(
    store: JournalStore, tmp_path: Path
) -> None:
    a = await store.append("plan", b"one", 1)
    b = await store.append("plan", b"two", 1)
    assert (a.index, b.index) == (1, 2)
    assert b.prev_hash == a.hash
    await store.close()
    again = JournalStore(tmp_path / "journal.db", lambda: 0.0)
    await again.open()
    try:
        assert again.last == Position(2, 1, b.hash)
        assert [e.payload for e in await again.read(1, 10)] == [b"one", b"two"]
    finally:
        await again.close()
    await store.open()


async def test_concurrent_appends_are_group_committed_in_order(store: JournalStore) -> None:
    entries = await asyncio.gather(*(store.append("k", str(i).encode(), 1) for i in range(64)))
    assert [e.index for e in entries] == list(range(1, 65))
    assert store.batches < 64
    verify_chain(GENESIS, await store.read(1, 100))


async def test_a_cancelled_writer_does_not_lose_the_others_entries(store: JournalStore) -> None:
    tasks = [asyncio.create_task(store.append("k", str(i).encode(), 1)) for i in range(8)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    written = [r for r in results if not isinstance(r, BaseException)]
    assert len(written) >= 7
    stored = await store.read(1, 100)
    verify_chain(GENESIS, stored)
    assert {e.index for e in written} <= {e.index for e in stored}


async def test_replicated_entries_that_do_not_chain_change_nothing(store: JournalStore) -> None:
    good = chain(3)
    await store.append_replicated(good[:2])
    before = store.last
    with pytest.raises(ChainBroken):
        await store.append_replicated([replace(good[2], hash=bytes(32))])
    assert store.last == before
    assert len(await store.read(1, 10)) == 2
    await store.append_replicated(good[2:])
    assert store.last.index == 3


async def test_truncate_returns_the_suffix_and_the_journal_continues(store: JournalStore) -> None:
    await store.append_replicated(chain(10))
    removed = await store.truncate_after(6)
    assert [e.index for e in removed] == [7, 8, 9, 10]
    assert store.last.index == 6
    e = await store.append("k", b"new", 2)
    assert e.index == 7
    assert e.prev_hash == (await store.read(6, 1))[0].hash


async def test_entries_after_bounds_count_and_bytes(store: JournalStore) -> None:
    await store.append_replicated(chain(50))
    assert [e.index for e in await store.entries_after(10, 5, 1 << 20)] == [11, 12, 13, 14, 15]
    assert len(await store.entries_after(0, 100, 1)) == 1  # at least one, even if too big
    assert await store.entries_after(50, 10, 1 << 20) == []
    assert await store.hash_at(51) is None
    assert await store.hash_at(0) == bytes(32)


async def test_replace_all_installs_a_snapshot_or_nothing(store: JournalStore) -> None:
    await store.append("mine", b"x", 1)
    other = chain(7, epoch=2)

    async def batches(entries):  # type: ignore[no-untyped-def]
        for i in range(0, len(entries), 3):
            yield entries[i : i + 3]

    broken = [*other[:4], replace(other[4], payload=b"bad"), *other[5:]]
    with pytest.raises(ChainBroken):
        await store.replace_all(batches(broken))
    assert [e.key for e in await store.read(1, 10)] == ["mine"]
    await store.replace_all(batches(other))
    assert store.last == Position(7, 2, other[-1].hash)


async def test_reads_by_key(store: JournalStore) -> None:
    for key, n in itertools.product(("a", "b"), range(3)):
        await store.append(key, str(n).encode(), 1)
    assert [e.index for e in await store.read(1, 10, "b")] == [4, 5, 6]
    assert [e.index for e in await store.read(5, 10, "b")] == [5, 6]


async def test_every_rewind_and_resync_is_recorded_and_survives_reopen(tmp_path: Path) -> None:
    """The hub accepts a journal that moved back only when this count grew."""
    path = tmp_path / "journal.db"
    store = JournalStore(path, lambda: 1234.5)
    await store.open()
    await store.append_replicated(chain(6))
    assert store.rewinds == 0
    assert await store.truncate_after(6) == []  # nothing taken out: nothing to record
    assert store.rewinds == 0
    await store.truncate_after(4)
    assert store.rewinds == 1

    async def one(entries):  # type: ignore[no-untyped-def]
        yield entries

    broken = [*chain(3)[:2], replace(chain(3)[2], payload=b"bad")]
    with pytest.raises(ChainBroken):
        await store.replace_all(one(broken))
    assert store.rewinds == 1  # a refused snapshot changes nothing, the count included
    await store.replace_all(one(chain(2, epoch=3)))
    assert store.rewinds == 2
    await store.save_pull_stream("n1", 4, b"token")
    await store.close()
    again = JournalStore(path, lambda: 1234.5)
    await again.open()
    try:
        assert again.rewinds == 2
        assert again.last.index == 2
        assert await again.pull_stream() == ("n1", 4, b"token")
    finally:
        await again.close()
