"""Every SQLite file a daemon owns is checked here before start-up and opened here after.

    prepare(layout, reinitialize)  at start: check every database of the daemon, decide
                                   (edgecommon.state_check) and refuse, reinitialize
                                   or create; nothing is opened for use before it
    connect(path) / aconnect(path) the one way a store opens its file (sqlite3 / aiosqlite)

Checks, cheapest first: the file's SQLite header and its size against the header, then
`PRAGMA quick_check` over every page, on a read-only connection (immutable when no -wal
is beside the file), so a damaged file is read but never written: not even a checkpoint
of its -wal. quick_check reads the whole file: about 1 s per 190 MB here (warm cache;
integrity_check, which also cross-checks indexes, took 2.6 times as long, so it is not
used). It runs in a thread and stops at once if start-up is cancelled.

A refused file gets one line naming it and the two ways out. `--reinitialize` moves it
(and its -wal/-shm) aside as NAME.damaged-<UTC time>, never deleting anything, logs that
loudly and starts with an empty database; the caller audits it where it can.

New databases are created whole: built under a temporary name and renamed into place, so
a crash on the first start leaves no file or a complete one, never an empty file that
the next start would have to refuse. `connect` never treats an existing file as new and
opens with mode=rw, so SQLite cannot create a database behind a check.
"""

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiosqlite

from edgecommon.errors import StateError
from edgecommon.state_check import (
    COMPANIONS,
    HEADER_BYTES,
    Action,
    Found,
    Verdict,
    decide,
    header_problem,
)

# Every database: WAL with synchronous=FULL (what is acknowledged survives a power cut),
# and a writer waits for a lock instead of failing at once.
PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000")
# quick_check polls for abandonment every this many SQLite VM steps (~1 ms here).
PROGRESS_STEPS = 20_000


@dataclass(frozen=True)
class StateLayout:
    """A daemon's state: its databases, and the other files that exist only once it has
    run (its credentials), each with the words an operator knows it by."""

    owner: str  # "edge-hub" | "edge-agent": the logger, and who refuses
    databases: tuple[Path, ...]
    evidence: tuple[tuple[Path, str], ...] = ()  # (file, "this node's credentials (DIR)")


@dataclass(frozen=True)
class Reinitialized:
    path: Path
    problem: str  # completes "state file PATH ..."
    moved_to: Path | None  # None when nothing was there to move (a lost file)

    def describe(self) -> str:
        kept = f"moved it to {self.moved_to}" if self.moved_to else "nothing to move aside"
        return f"state file {self.path} {self.problem}: {kept}; started with a new empty one"


class _Abandoned(Exception):
    """Start-up was cancelled while a check ran."""


def companion(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


RUNBOOK = "docs/runbooks/damaged-state-file.md"


def refusal(owner: str, verdict: Verdict) -> str:
    """The one line a refused start prints: the file, what is wrong, both ways out."""
    path = verdict.path
    if path.exists():
        why, aside = f"{owner} will not start on it", "move it aside (kept, renamed) and "
    elif any(companion(path, s).exists() for s in COMPANIONS):
        why, aside = f"{owner} will not start without it", "move what is left aside (kept) and "
    else:
        why, aside = f"{owner} will not start without it", ""
    return (
        f"state file {path} {verdict.problem}: {why} (that would silently begin with empty "
        f"state). Restore it from a backup, or start {owner} once with --reinitialize to "
        f"{aside}start with a new empty one; see {RUNBOOK}"
    )


# --- checking --------------------------------------------------------------------------


def check(path: Path, abandon: threading.Event | None = None) -> str:
    """Why the existing database at `path` cannot be used, or ""."""
    if path.is_dir():
        return "is a directory, not a database file"
    alone = not any(companion(path, s).exists() for s in COMPANIONS)
    return check_header(path) or _quick_check(path, alone, abandon)


def check_header(path: Path) -> str:
    """The cheap part of `check`: only the first page is read."""
    try:
        with path.open("rb") as f:
            head = f.read(HEADER_BYTES)
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return header_problem(head, size, _has_log(path))


def _has_log(path: Path) -> bool:
    """A non-empty -wal or a -journal beside the file: pages may live there."""
    wal = companion(path, "-wal")
    return (wal.exists() and wal.stat().st_size > 0) or companion(path, "-journal").exists()


def _quick_check(path: Path, alone: bool, abandon: threading.Event | None) -> str:
    # Read-only, and immutable when nothing is beside the file (no -wal, -shm or -journal:
    # nobody has it open and no page lives elsewhere): SQLite then creates no -wal/-shm of
    # its own. Read-only never writes back to the file, not even a checkpoint on close.
    if abandon is not None and abandon.is_set():
        raise _Abandoned
    uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if alone else "")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        return f"cannot be opened ({exc})"
    try:
        if abandon is not None:
            conn.set_progress_handler(lambda: int(abandon.is_set()), PROGRESS_STEPS)
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if abandon is not None and abandon.is_set():
            raise _Abandoned from None
        return f"fails its integrity check ({exc})"
    finally:
        conn.close()
    if rows != [("ok",)]:
        first = str(rows[0][0]) if rows else "no answer"
        more = f"; {len(rows) - 1} more problems" if len(rows) > 1 else ""
        return f"fails its integrity check ({first}{more})"
    return ""


def survey(path: Path, abandon: threading.Event | None = None) -> Found:
    leftovers = tuple(s for s in COMPANIONS if companion(path, s).exists())
    if not path.exists():
        return Found(path, False, leftovers=leftovers)
    return Found(path, True, check(path, abandon), leftovers)


# --- acting ----------------------------------------------------------------------------


def create(path: Path) -> None:
    """A new, empty WAL database at `path` (which must not exist), created whole."""
    if path.exists():
        raise FileExistsError(f"{path} exists; a state file is never created over another")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # [store].path may be elsewhere
    tmp = companion(path, ".creating")
    for suffix in ("", *COMPANIONS):
        companion(tmp, suffix).unlink(missing_ok=True)  # a first start that crashed here
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # writes page 1: the file is a database now
    finally:
        conn.close()
    _fsync(tmp)
    os.rename(tmp, path)
    _fsync(path.parent)


def move_aside(path: Path, wall: float) -> Path | None:
    """Rename `path` and its -wal/-shm/-journal to PATH.damaged-<UTC time>[-N]{,-wal,...};
    never overwrites, never deletes. The new name of the first file moved (the database
    itself when it was there), or None if nothing was there."""
    present = [s for s in ("", *COMPANIONS) if companion(path, s).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
    target = companion(path, f".damaged-{stamp}")
    n = 1
    while any(companion(target, s).exists() for s in ("", *COMPANIONS)):
        n += 1
        target = companion(path, f".damaged-{stamp}-{n}")
    for suffix in present:
        os.rename(companion(path, suffix), companion(target, suffix))
    _fsync(path.parent)
    return companion(target, present[0])


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare(
    layout: StateLayout,
    reinitialize: bool,
    wall: Callable[[], float],
    abandon: threading.Event | None = None,
) -> list[Reinitialized]:
    """Check the daemon's databases and leave each one either sound or created; raise
    StateError (one line) for a damaged or lost one unless `reinitialize`."""
    log = logging.getLogger(layout.owner)
    started = time.monotonic()
    found = [survey(path, abandon) for path in layout.databases]
    checked = time.monotonic() - started
    evidence = list(dict.fromkeys(words for marker, words in layout.evidence if marker.exists()))
    verdicts = decide(found, evidence)
    refused = [v for v in verdicts if v.action is Action.REFUSE]
    if refused and not reinitialize:
        raise StateError(refusal(layout.owner, refused[0]))
    if abandon is not None and abandon.is_set():
        raise _Abandoned
    sizes = [f"{f.path.name} ({_size(f.path.stat().st_size)})" for f in found if f.exists]
    if sizes:
        log.info("state files checked in %.2fs: %s", checked, ", ".join(sizes))
    if reinitialize and not refused:
        log.warning("--reinitialize: every state file is sound; nothing was moved")
    done = []
    for verdict in verdicts:
        if verdict.action is Action.REFUSE:
            moved = move_aside(verdict.path, wall())
            done.append(Reinitialized(verdict.path, verdict.problem, moved))
            create(verdict.path)
            log.critical(
                "REINITIALIZED (--reinitialize): %s. What it held is not used any more; "
                "restore it from a backup if that was a mistake",
                done[-1].describe(),
            )
        elif verdict.action is Action.CREATE:
            create(verdict.path)
            log.info("state file %s: created (first start)", verdict.path)
    return done


async def prepare_async(
    layout: StateLayout, reinitialize: bool, wall: Callable[[], float]
) -> list[Reinitialized]:
    """`prepare` on a thread, so signals are handled while a big file is checked; a
    cancellation stops the check within milliseconds and is re-raised."""
    abandon = threading.Event()
    work = asyncio.get_running_loop().run_in_executor(
        None, prepare, layout, reinitialize, wall, abandon
    )
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        abandon.set()
        with contextlib.suppress(Exception):
            await work
        raise


# --- opening for use -------------------------------------------------------------------


def connect(path: Path, owner: str, *, foreign_keys: bool = False) -> sqlite3.Connection:
    """Open the state database at `path` for use by `owner` (autocommit; the stores run
    their own transactions). A missing file is created whole: a daemon has decided in `prepare`
    that it may be; a store used on its own (a tool, a test) starts a new file. An
    existing file is never treated as new: one that is not a database raises StateError."""
    if not path.exists():
        create(path)
    problem = check_header(path)
    if problem:
        raise StateError(refusal(owner, Verdict(path, Action.REFUSE, problem)))
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(path))}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise StateError(f"state file {path} cannot be opened: {exc}") from None
    try:
        for pragma in (*PRAGMAS, *(("foreign_keys=ON",) if foreign_keys else ())):
            conn.execute(f"PRAGMA {pragma}")
    except sqlite3.Error as exc:
        conn.close()
        problem = f"cannot be used ({exc})"
        raise StateError(refusal(owner, Verdict(path, Action.REFUSE, problem))) from None
    return conn


async def aconnect(path: Path, owner: str, *, foreign_keys: bool = False) -> aiosqlite.Connection:
    """`connect` on aiosqlite's own thread. If the file cannot be opened, the error is
    raised here and the thread is already stopped (a thread left running would keep
    the process from ever exiting)."""
    opener = functools.partial(connect, path, owner, foreign_keys=foreign_keys)
    return await aiosqlite.Connection(opener, iter_chunk_size=64)
