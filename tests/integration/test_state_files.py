"""A state file that exists but is empty or unreadable is never re-initialised silently.

Every SQLite file of both daemons (hub.db; an agent's agent.db and journal.db) is damaged
in each way a disk, a copy or an operator damages one, and the real daemon is started on
it: it must refuse to start, exit non-zero within a bound, print one line that names the
file and the way out, print no traceback, and leave the file exactly as it was.
`--reinitialize` moves the damaged file aside (never deletes it) and starts.

A fresh install is recognised by the absence of state: a database missing while the
daemon's credentials (or its other database, or the database's own -wal) are still there
is lost state, refused the same way.

One golden fleet (a hub, node-1 enrolled and leading its group, five journal entries, a
fleet stop latched on node-1) is built once; each case restores it and damages one file.
"""

import hashlib
import os
import random
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.procs import Fleet, Proc, clean_env, short_tmpdir, wait_until

START_BOUND_S = 20.0  # a refused start exits well within this (Python start-up included)
PAGE = 4096


@dataclass(frozen=True)
class Golden:
    fleet: Fleet
    snapshot: Path

    def restore(self) -> None:
        root = self.fleet.root
        for child in root.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        shutil.copytree(self.snapshot, root, dirs_exist_ok=True)


def _journal_append(fleet: Fleet, node: str, key: str, value: str) -> None:
    result = fleet.edgectl(
        "--output", "json", "journal", "append", key, value, "--socket", str(fleet.socket(node))
    )
    assert result.code == 0, result.stderr


@pytest.fixture(scope="module")
def golden() -> Iterator[Golden]:
    root = short_tmpdir()
    fleet = Fleet(root)
    snapshot = Path(str(root) + "-golden")
    try:
        fleet.start_hub()
        fleet.bootstrap_operator()
        fleet.start_agent("node-1", fleet.token("node-1"))
        fleet.wait_connected("node-1")
        wait_until(
            "node-1 leads its journal",
            lambda: _journal_role(fleet, "node-1") == "leader",
        )
        for i in range(5):
            _journal_append(fleet, "node-1", f"k{i}", f"v{i}")
        engaged = fleet.edgectl(
            "estop", "engage", "--scope", "fleet", "--reason", "state file drill", "--wait"
        )
        assert engaged.code == 0, engaged.stderr
        fleet.stop()
        for proc in (fleet.hub, *fleet.agents.values()):
            assert proc is not None
            assert proc.popen is not None
            assert proc.popen.returncode == 0, proc.output()
        shutil.copytree(root, snapshot, ignore=shutil.ignore_patterns("*.sock"))
        yield Golden(fleet, snapshot)
    finally:
        fleet.stop()
        if not os.environ.get("AUTONOMY_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(snapshot, ignore_errors=True)


def _journal_role(fleet: Fleet, node: str) -> str:
    result = fleet.edgectl(
        "--output", "json", "replica", "status", "--socket", str(fleet.socket(node))
    )
    return str(result.json.get("role", "")) if result.code == 0 else ""


# --- the daemons and their files ------------------------------------------------------


def hub_db(fleet: Fleet) -> Path:
    return fleet.hub_state / "hub.db"


def agent_db(fleet: Fleet) -> Path:
    return fleet.agent_dir("node-1") / "state" / "agent.db"


def journal_db(fleet: Fleet) -> Path:
    return fleet.agent_dir("node-1") / "state" / "journal.db"


DATABASES: dict[str, tuple[str, Callable[[Fleet], Path]]] = {
    "hub.db": ("hub", hub_db),
    "agent.db": ("agent", agent_db),
    "journal.db": ("agent", journal_db),
}


def start(fleet: Fleet, daemon: str, *args: str) -> Proc:
    if daemon == "hub":
        argv = [sys.executable, "-m", "hub.main", "--config", str(fleet.hub_toml), *args]
        log = fleet.root / "hub" / "hub.log"
    else:
        config = fleet.agent_dir("node-1") / "agent.toml"
        argv = [sys.executable, "-m", "agent.main", "--config", str(config), *args]
        log = fleet.agent_dir("node-1") / "agent.log"
    return Proc(daemon, argv, log, clean_env()).start()


def ready_line(daemon: str) -> str:
    return "hub ready" if daemon == "hub" else "local API on"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def companions(path: Path) -> dict[str, str]:
    """The database's -wal/-shm/-journal files and their contents."""
    found = {}
    for suffix in ("-wal", "-shm", "-journal"):
        other = path.with_name(path.name + suffix)
        if other.exists():
            found[suffix] = digest(other)
    return found


def assert_refused(proc: Proc, path: Path, what: str) -> str:
    """The daemon exits non-zero within the bound, with one line naming `path` and the
    way out, and no traceback."""
    assert proc.popen is not None
    try:
        code = proc.popen.wait(START_BOUND_S)
    except Exception:
        output = proc.output()
        proc.kill()
        pytest.fail(f"the daemon did not exit within {START_BOUND_S}s on {what}:\n{output}")
    output = proc.output()
    assert code != 0, f"the daemon started on {what}:\n{output}"
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{output}"
    assert str(path) in lines[0], lines[0]
    assert "--reinitialize" in lines[0], lines[0]
    assert "backup" in lines[0], lines[0]
    return lines[0]


# --- kinds of damage -------------------------------------------------------------------


def zero_length(path: Path) -> None:
    path.write_bytes(b"")


def garbage_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(random.Random(1).randbytes(100))


def garbage_pages(path: Path) -> None:
    size = path.stat().st_size
    assert size >= 2 * PAGE, f"{path} has a single page"
    with path.open("r+b") as f:
        f.seek(PAGE)
        f.write(random.Random(2).randbytes(size - PAGE))


def truncated(path: Path) -> None:
    """The last page is gone (a copy or a disk that stopped short)."""
    os.truncate(path, path.stat().st_size - PAGE)


def cut_mid_page(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 1000)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "zero-length": zero_length,
    "garbage-header": garbage_header,
    "garbage-pages": garbage_pages,
    "truncated": truncated,
    "cut-mid-page": cut_mid_page,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("database", sorted(DATABASES))
def test_a_damaged_state_file_refuses_the_start_and_stays_untouched(
    golden: Golden, database: str, damage: str
) -> None:
    golden.restore()
    daemon, where = DATABASES[database]
    path = where(golden.fleet)
    assert path.stat().st_size > PAGE, "the golden state holds data in every database"
    DAMAGE[damage](path)
    before, before_companions = digest(path), companions(path)
    proc = start(golden.fleet, daemon)
    assert_refused(proc, path, f"a {damage} {database}")
    assert digest(path) == before
    assert companions(path) == before_companions
    assert not list(path.parent.glob(path.name + ".damaged-*"))


@pytest.mark.parametrize("database", sorted(DATABASES))
def test_reinitialize_moves_the_damaged_file_aside_and_starts(
    golden: Golden, database: str
) -> None:
    golden.restore()
    daemon, where = DATABASES[database]
    path = where(golden.fleet)
    garbage_header(path)
    before = digest(path)
    proc = start(golden.fleet, daemon, "--reinitialize")
    try:
        wait_until(
            f"{daemon} started with --reinitialize",
            lambda: ready_line(daemon) in proc.output() or not proc.running(),
        )
        output = proc.output()
        assert proc.running(), output
        moved = list(path.parent.glob(path.name + ".damaged-*"))
        assert len(moved) == 1, moved
        assert digest(moved[0]) == before, "the damaged file is kept as it was"
        assert path.exists()
        assert digest(path) != before
        loud = [line for line in output.splitlines() if "REINITIALIZED" in line]
        assert loud, output
        assert str(path) in loud[0], loud[0]
        assert str(moved[0]) in loud[0], loud[0]
        assert " CRITICAL " in loud[0], loud[0]
        if daemon == "hub":
            # The new database holds no role assignment: the first admin is bootstrapped
            # again, as after a first start (the runbook says so).
            context = golden.fleet.root / "ctx-after"
            again = golden.fleet.edgectl(
                "operator",
                "bootstrap",
                "--hub-config",
                str(golden.fleet.hub_toml),
                "--dir",
                str(context),
                "--name",
                "admin",
            )
            assert again.code == 0, again.stderr
            events = golden.fleet.edgectl(
                "--context",
                str(context),
                "-o",
                "json",
                "audit",
                "query",
                "--action",
                "state.reinitialize",
            )
            assert events.code == 0, events.stderr
            [event] = events.json["events"]
            assert event["target"] == str(path)
            assert event["outcome"] == "success"
            assert str(moved[0]) in event["detail"]
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.popen is not None
        assert proc.popen.wait(20) == 0, proc.output()


def lose(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def lose_but_keep_wal(path: Path) -> None:
    lose(path)
    path.with_name(path.name + "-wal").write_bytes(random.Random(3).randbytes(3 * PAGE))


@pytest.mark.parametrize(
    ("database", "loss", "said"),
    [
        ("hub.db", lose, "pki"),  # the CA is there, its registry and revocations are not
        ("agent.db", lose, "pki"),  # enrolled, but the latched stop is gone
        ("journal.db", lose, "agent.db"),
        ("hub.db", lose_but_keep_wal, "-wal"),
        ("journal.db", lose_but_keep_wal, "-wal"),
    ],
)
def test_a_missing_state_file_with_state_around_it_is_lost_state_not_a_fresh_install(
    golden: Golden, database: str, loss: Callable[[Path], None], said: str
) -> None:
    golden.restore()
    daemon, where = DATABASES[database]
    path = where(golden.fleet)
    loss(path)
    left = sorted(p.name for p in path.parent.iterdir())
    line = assert_refused(start(golden.fleet, daemon), path, f"{database} lost ({loss.__name__})")
    assert said in line, line
    assert sorted(p.name for p in path.parent.iterdir()) == left, "nothing was created"


def test_operator_bootstrap_refuses_a_damaged_hub_database(golden: Golden) -> None:
    golden.restore()
    path = hub_db(golden.fleet)
    zero_length(path)
    result = golden.fleet.edgectl(
        "operator",
        "bootstrap",
        "--hub-config",
        str(golden.fleet.hub_toml),
        "--dir",
        str(golden.fleet.root / "ctx-2"),
        "--name",
        "second",
    )
    assert result.code != 0
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr, result.stderr
    assert "--reinitialize" in result.stderr, result.stderr
    assert path.stat().st_size == 0
