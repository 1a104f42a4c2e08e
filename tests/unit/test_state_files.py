"""The start-up check of state files: the pure rules (edgecommon.state_check), exhaustively,
and the file work (edgecommon.sqlite_file) on real SQLite files."""

import asyncio
import hashlib
import itertools
import os
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from edgecommon.daemon import ShutdownRequested, unless_stopped
from edgecommon.errors import StateError
from edgecommon.sqlite_file import (
    StateLayout,
    _Abandoned,
    aconnect,
    check,
    companion,
    connect,
    create,
    move_aside,
    prepare,
    prepare_async,
)
from edgecommon.state_check import (
    COMPANIONS,
    HEADER_BYTES,
    MAGIC,
    Action,
    Found,
    decide,
    header_problem,
)

WALL = 1_790_000_000.0  # 2026-09-21T14:13:20Z, injected: names are known


def header(page: int = 4096, pages: int = 3, counter: int = 1, valid_for: int = 1) -> bytes:
    head = bytearray(HEADER_BYTES)
    head[:16] = MAGIC
    head[16:18] = (1 if page == 65536 else page).to_bytes(2, "big")
    head[18:20] = b"\x02\x02"
    head[21:24] = b"\x40\x20\x20"
    head[24:28] = counter.to_bytes(4, "big")
    head[28:32] = pages.to_bytes(4, "big")
    head[92:96] = valid_for.to_bytes(4, "big")
    return bytes(head)


# --- header_problem --------------------------------------------------------------------


def test_a_sound_header_of_the_right_size_passes() -> None:
    for page in (512, 1024, 4096, 65536):
        assert header_problem(header(page, 3), 3 * page, has_log=False) == ""


@pytest.mark.parametrize(
    ("head", "size", "words"),
    [
        (b"", 0, "is empty"),
        (header()[:50], 50, "too short"),
        (b"SQLite format 2\x00" + header()[16:], 12288, "not a SQLite database"),
        (bytes(100), 12288, "not a SQLite database"),
        (header(page=3000), 12000, "damaged SQLite header"),
        (header(page=256), 12288, "damaged SQLite header"),
        (header()[:21] + b"\x00\x00\x00" + header()[24:], 12288, "damaged SQLite header"),
        (header(pages=3), 12288 - 100, "is truncated (12188 bytes"),
        (header(pages=4), 12288, "is truncated (3 of its 4 pages"),
    ],
)
def test_damaged_headers_and_sizes_are_named(head: bytes, size: int, words: str) -> None:
    assert words in header_problem(head, size, has_log=False)


def test_the_size_rules_wait_for_the_wal_and_an_invalid_page_count_is_ignored() -> None:
    # With a -wal beside it, pages (and a newer page 1) may live there.
    assert header_problem(header(pages=9), 4096, has_log=True) == ""
    assert header_problem(header(pages=9), 4096 + 7, has_log=True) == ""
    # The header's page count means nothing when the change counter does not match.
    assert header_problem(header(pages=9, counter=5, valid_for=4), 12288, has_log=False) == ""
    # ...but a damaged header is damaged whatever is beside it.
    assert header_problem(bytes(100), 12288, has_log=True) != ""


# --- decide, exhaustively --------------------------------------------------------------

STATES = ("absent", "orphan", "sound", "damaged")


def found(path: Path, state: str) -> Found:
    return {
        "absent": Found(path, False),
        "orphan": Found(path, False, leftovers=("-wal",)),
        "sound": Found(path, True),
        "damaged": Found(path, True, "is empty (0 bytes)"),
    }[state]


@pytest.mark.parametrize("databases", [1, 2, 3])
def test_decide_creates_only_on_a_fresh_install_and_opens_only_sound_files(
    databases: int,
) -> None:
    paths = [Path(f"/state/db{i}.db") for i in range(databases)]
    for states in itertools.product(STATES, repeat=databases):
        for evidence in ([], ["this node's credentials (/state/pki)"]):
            verdicts = decide([found(p, s) for p, s in zip(paths, states, strict=True)], evidence)
            fresh = all(s == "absent" for s in states) and not evidence
            for verdict, state in zip(verdicts, states, strict=True):
                if fresh:
                    assert verdict.action is Action.CREATE
                elif state == "sound":
                    assert verdict.action is Action.OPEN
                else:
                    assert verdict.action is Action.REFUSE, (states, evidence)
                    assert verdict.problem
                    if state == "absent":
                        assert "is missing while" in verdict.problem
                        there = {"sound": "", "damaged": "", "orphan": "-wal"}
                        named = evidence + [
                            str(p) + there[s]
                            for p, s in zip(paths, states, strict=True)
                            if s in there
                        ]
                        assert any(n in verdict.problem for n in named), verdict.problem


def test_lost_state_names_what_is_still_there() -> None:
    agent, journal = Path("/s/agent.db"), Path("/s/journal.db")
    [lost, kept] = decide([Found(agent, False), Found(journal, True)], ["creds (/s/pki)"])
    assert lost.problem == "is missing while creds (/s/pki) and /s/journal.db are there"
    assert kept.action is Action.OPEN
    [orphan] = decide([Found(agent, False, leftovers=("-wal", "-shm"))], [])
    assert orphan.problem == "is missing but its agent.db-wal and agent.db-shm are still there"


# --- the files -------------------------------------------------------------------------


def make_db(path: Path, rows: int = 400) -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?)", ((i, random.Random(i).randbytes(200)) for i in range(rows))
    )
    conn.close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def damage(path: Path, kind: str) -> None:
    size = path.stat().st_size
    if kind == "zero-length":
        path.write_bytes(b"")
    elif kind == "garbage-header":
        with path.open("r+b") as f:
            f.write(random.Random(1).randbytes(100))
    elif kind == "garbage-pages":
        with path.open("r+b") as f:
            f.seek(4096)
            f.write(random.Random(2).randbytes(size - 4096))
    elif kind == "truncated":
        os.truncate(path, size - 4096)
    elif kind == "cut-mid-page":
        os.truncate(path, size - 1000)


KINDS = ("zero-length", "garbage-header", "garbage-pages", "truncated", "cut-mid-page")


@pytest.mark.parametrize("kind", KINDS)
def test_check_finds_each_kind_of_damage_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    path = make_db(tmp_path / "x.db")
    damage(path, kind)
    before, files = digest(path), listing(tmp_path)
    assert check(path) != ""
    assert digest(path) == before
    assert listing(tmp_path) == files, "the check left -wal/-shm files behind"


def test_check_passes_a_sound_file_with_or_without_its_wal(tmp_path: Path) -> None:
    path = make_db(tmp_path / "x.db")
    assert check(path) == ""
    # A file another connection holds open (its -wal in use) is read, not changed.
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA wal_autocheckpoint=0")
    holder.execute("INSERT INTO t VALUES (100000, x'00')")
    before = digest(path)
    assert companion(path, "-wal").stat().st_size > 0
    assert check(path) == ""
    assert digest(path) == before
    holder.close()


def test_connect_never_takes_an_existing_file_for_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"")
    with pytest.raises(StateError, match=r"x\.db is empty .*--reinitialize"):
        connect(path, "edge-test")
    assert path.stat().st_size == 0
    fresh = tmp_path / "new.db"
    connect(fresh, "edge-test").close()  # absent: created whole (a store used on its own)
    assert check(fresh) == ""
    assert fresh.stat().st_mode & 0o777 == 0o600


async def test_aconnect_on_a_bad_file_raises_and_leaves_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(random.Random(3).randbytes(8192))
    threads = threading.active_count()
    with pytest.raises(StateError, match="not a SQLite database"):
        await aconnect(path, "edge-test")
    for _ in range(100):
        if threading.active_count() == threads:
            break
        await asyncio.sleep(0.01)
    assert threading.active_count() == threads


def test_create_is_whole_and_cleans_a_crashed_attempt(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    leftover = companion(path, ".creating")
    leftover.write_bytes(b"half")
    companion(leftover, "-wal").write_bytes(b"junk")
    create(path)
    assert check(path) == ""
    assert listing(tmp_path) == ["x.db"]
    with pytest.raises(FileExistsError):
        create(path)  # never over a file that is there


def test_move_aside_keeps_everything_and_never_overwrites(tmp_path: Path) -> None:
    path = make_db(tmp_path / "x.db")
    for suffix in COMPANIONS[:2]:
        companion(path, suffix).write_bytes(suffix.encode())
    before = digest(path)
    first = move_aside(path, WALL)
    assert first == tmp_path / "x.db.damaged-20260921T141320Z"
    assert digest(first) == before
    assert companion(first, "-wal").read_bytes() == b"-wal"
    path.write_bytes(b"second")
    second = move_aside(path, WALL)
    assert second == tmp_path / "x.db.damaged-20260921T141320Z-2"
    assert second.read_bytes() == b"second"
    assert digest(first) == before
    assert move_aside(path, WALL) is None


def layout(tmp_path: Path) -> StateLayout:
    creds = tmp_path / "pki" / "node.key"
    return StateLayout(
        "edge-test",
        (tmp_path / "a.db", tmp_path / "b.db"),
        ((creds, f"credentials ({creds.parent})"),),
    )


def test_prepare_creates_on_a_fresh_install_then_opens(tmp_path: Path) -> None:
    state = layout(tmp_path)
    assert prepare(state, False, lambda: WALL) == []
    assert all(check(p) == "" for p in state.databases)
    assert prepare(state, False, lambda: WALL) == []


def test_prepare_refuses_lost_and_damaged_files_without_touching_anything(
    tmp_path: Path,
) -> None:
    state = layout(tmp_path)
    prepare(state, False, lambda: WALL)
    a, b = state.databases
    b.unlink()
    files = listing(tmp_path)
    with pytest.raises(StateError, match=r"b\.db is missing while .*a\.db is there"):
        prepare(state, False, lambda: WALL)
    assert listing(tmp_path) == files
    a.write_bytes(b"")
    with pytest.raises(StateError, match=r"a\.db is empty"):
        prepare(state, False, lambda: WALL)
    assert a.stat().st_size == 0


def test_prepare_reinitializes_by_moving_aside(tmp_path: Path) -> None:
    state = layout(tmp_path)
    prepare(state, False, lambda: WALL)
    a, b = state.databases
    a.write_bytes(b"not a database at all, but someone's data")
    b.unlink()
    done = prepare(state, True, lambda: WALL)
    assert [(d.path, d.moved_to) for d in done] == [
        (a, tmp_path / "a.db.damaged-20260921T141320Z"),
        (b, None),
    ]
    assert (tmp_path / "a.db.damaged-20260921T141320Z").read_bytes().startswith(b"not a")
    assert all(check(p) == "" for p in state.databases)


def test_an_abandoned_check_stops_at_once_and_decides_nothing(tmp_path: Path) -> None:
    path = make_db(tmp_path / "x.db", rows=2000)
    abandon = threading.Event()
    abandon.set()
    with pytest.raises(_Abandoned):
        check(path, abandon)
    with pytest.raises(_Abandoned):
        prepare(StateLayout("edge-test", (path,)), True, lambda: WALL, abandon)
    assert listing(tmp_path) == ["x.db"]


async def test_a_stop_during_the_start_up_check_ends_it(tmp_path: Path) -> None:
    stop = asyncio.Event()
    stop.set()
    state = StateLayout("edge-test", (make_db(tmp_path / "x.db", rows=2000),))
    with pytest.raises(ShutdownRequested):
        await unless_stopped(stop, prepare_async(state, False, lambda: WALL))
    stop.clear()
    assert await unless_stopped(stop, prepare_async(state, False, lambda: WALL)) == []


def test_a_first_start_makes_the_directory_of_a_database_kept_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "store" / "hub" / "hub.db"  # [store].path in its own directory
    prepare(StateLayout("edge-test", (elsewhere,)), False, lambda: WALL)
    assert check(elsewhere) == ""
