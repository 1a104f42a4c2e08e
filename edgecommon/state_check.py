"""Whether a daemon may start on the SQLite files it finds: the pure rules.

The rule this module keeps: **a daemon never begins with empty state unless it has never
had any.** SQLite itself turns a zero-length file into a new empty database without a
word, and a missing file into a new one; either would make a hub forget its revocations
and stops, or an agent its latched stop and journal. So:

* a fresh install is recognised by the absence of *every* state file and of the
  daemon's credentials, never by an empty or missing single file;
* a file that is there must look like a SQLite database of the size its header says
  (the expensive page check, `PRAGMA quick_check`, is the caller's: it needs a
  connection), or it is refused;
* a database that is missing while anything else of the daemon's state is there (its
  other database, its credentials, the database's own -wal or -shm) was lost, and is
  refused as well.

Refusing is the caller's job (one line naming the file and the way out); this module
only says what it found, in words an operator can act on.
"""

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100
# The "payload fractions" at offsets 21-23 are fixed by the file format: anything else
# is a damaged header, not a database written by another SQLite version.
PAYLOAD_FRACTIONS = b"\x40\x20\x20"
COMPANIONS = ("-wal", "-shm", "-journal")


def header_problem(head: bytes, size: int, has_log: bool) -> str:
    """Why a file of `size` bytes that begins with `head` is not a usable SQLite database,
    or "" when it looks like one. `has_log`: a non-empty -wal or a -journal is beside it;
    then pages (and a newer page 1) may live there, so the file's size proves nothing."""
    if size == 0:
        return "is empty (0 bytes)"
    if size < HEADER_BYTES or len(head) < HEADER_BYTES:
        return f"is too short to be a SQLite database ({size} bytes)"
    if not head.startswith(MAGIC):
        return "is not a SQLite database (its header is damaged)"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page  # the format stores 65536 as 1
    if page < 512 or page & (page - 1) or head[21:24] != PAYLOAD_FRACTIONS:
        return "has a damaged SQLite header"
    if has_log:
        return ""
    if size % page:
        return f"is truncated ({size} bytes is not a whole number of {page}-byte pages)"
    pages = int.from_bytes(head[28:32], "big")
    # The header's page count is only valid when the change counter (offset 24) matches
    # the version-valid-for number (offset 92); SQLite itself ignores it otherwise.
    if head[24:28] == head[92:96] and pages * page > size:
        return f"is truncated ({size // page} of its {pages} pages are there)"
    return ""


class Action(enum.Enum):
    OPEN = "open"  # there and sound
    CREATE = "create"  # a fresh install: nothing of this daemon's state exists
    REFUSE = "refuse"  # damaged, or lost while other state is there


@dataclass(frozen=True)
class Found:
    """What is on disk for one database."""

    path: Path
    exists: bool
    problem: str = ""  # why an existing file cannot be used; "" when it is sound
    leftovers: tuple[str, ...] = ()  # which of COMPANIONS are beside it


@dataclass(frozen=True)
class Verdict:
    path: Path
    action: Action
    problem: str = ""  # for REFUSE: what is wrong, completing "state file PATH ..."


def decide(found: Sequence[Found], evidence: Sequence[str]) -> list[Verdict]:
    """One verdict per database. `evidence`: the state outside the databases that is
    present and exists only once the daemon has run, in words ("this node's credentials
    (/var/lib/edge-agent/pki)").

    CREATE only when nothing at all is there: no database, no -wal/-shm of one, no
    evidence. OPEN only a file that exists with no problem. Everything else is REFUSE.
    """
    anything = bool(evidence) or any(f.exists or f.leftovers for f in found)
    verdicts = []
    for f in found:
        if f.exists and f.problem:
            verdicts.append(Verdict(f.path, Action.REFUSE, f.problem))
        elif f.exists:
            verdicts.append(Verdict(f.path, Action.OPEN))
        elif f.leftovers:
            names = " and ".join(f.path.name + s for s in f.leftovers)
            verdict = "are" if len(f.leftovers) > 1 else "is"
            verdicts.append(
                Verdict(f.path, Action.REFUSE, f"is missing but its {names} {verdict} still there")
            )
        elif anything:
            others = [*evidence, *_files_beside(found, f.path)]
            verdict = "are" if len(others) > 1 else "is"
            verdicts.append(
                Verdict(f.path, Action.REFUSE, f"is missing while {_and(others)} {verdict} there")
            )
        else:
            verdicts.append(Verdict(f.path, Action.CREATE))
    return verdicts


def _files_beside(found: Sequence[Found], path: Path) -> list[str]:
    """The other databases (and their leftovers) that are there."""
    names = []
    for f in found:
        if f.path == path:
            continue
        if f.exists:
            names.append(str(f.path))
        names.extend(str(f.path) + s for s in f.leftovers if not f.exists)
    return names


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
