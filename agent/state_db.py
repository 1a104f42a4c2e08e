"""The agent's durable state: the emergency-stop latch, the last fleet switch and the
certificate serials the hub revoked.

SQLite in WAL mode with synchronous=FULL: a stop is acknowledged only after its row
is on disk, so a power cut after the acknowledgement cannot lose it (INV-ESTOP-01).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import astuple, dataclass
from pathlib import Path

import aiosqlite

from agent.pki.credentials import CredentialPaths
from edgecommon.sqlite_file import StateLayout, aconnect
from edgecommon.sqlite_tx import transaction

AGENT_DB = "agent.db"
JOURNAL_DB = "journal.db"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS estop_latch (stop_id TEXT PRIMARY KEY, scope TEXT NOT NULL, "
    "reason TEXT NOT NULL, operator TEXT NOT NULL, source TEXT NOT NULL, "
    "engaged_unix DOUBLE PRECISION NOT NULL, latched_unix DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fleet_switch (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "enabled INTEGER NOT NULL, source TEXT NOT NULL, revision INTEGER NOT NULL)",
    # The hub's list as last received (agent/pki/revocations.py); replaced whole each time.
    "CREATE TABLE IF NOT EXISTS revoked_serials (serial TEXT PRIMARY KEY)",
)


def state_layout(state_dir: Path) -> StateLayout:
    """The agent's state for the start-up check: both databases, and the credentials
    that say this node has run (an enrolled node without agent.db has lost its latch)."""
    paths = CredentialPaths.under(state_dir)
    words = f"this node's credentials ({paths.key.parent})"
    return StateLayout(
        "edge-agent",
        (state_dir / AGENT_DB, state_dir / JOURNAL_DB),
        tuple((path, words) for path in (paths.key, paths.cert, paths.bundle)),
    )


@dataclass(frozen=True)
class LatchedStop:
    stop_id: str
    scope: str
    reason: str
    operator: str
    source: str  # "hub" | "local" | "hub_loss"
    engaged_unix: float
    latched_unix: float


@dataclass(frozen=True)
class StoredSwitch:
    enabled: bool
    source: str
    revision: int


class AgentStateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self._db = await aconnect(self.path, "edge-agent")
        try:
            for statement in SCHEMA:
                await self._db.execute(statement)
            self.path.chmod(0o600)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._db is None:
            raise RuntimeError("agent state is not open")
        async with transaction(self._db, self._lock) as db:
            yield db

    async def latch(self, stop: LatchedStop) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT OR IGNORE INTO estop_latch VALUES (?,?,?,?,?,?,?)", astuple(stop)
            )

    async def unlatch(self, stop_id: str) -> bool:
        async with self._tx() as db:
            cur = await db.execute("DELETE FROM estop_latch WHERE stop_id = ?", (stop_id,))
            return cur.rowcount == 1

    async def stops(self) -> list[LatchedStop]:
        async with (
            self._tx() as db,
            db.execute("SELECT * FROM estop_latch ORDER BY latched_unix") as cur,
        ):
            return [LatchedStop(*row) for row in await cur.fetchall()]

    async def fleet_switch(self) -> StoredSwitch | None:
        async with (
            self._tx() as db,
            db.execute("SELECT enabled, source, revision FROM fleet_switch WHERE id = 1") as cur,
        ):
            row = await cur.fetchone()
        return StoredSwitch(bool(row[0]), str(row[1]), int(row[2])) if row else None

    async def save_fleet_switch(self, switch: StoredSwitch) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO fleet_switch VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "enabled = excluded.enabled, source = excluded.source, "
                "revision = excluded.revision",
                (int(switch.enabled), switch.source, switch.revision),
            )

    async def revoked_serials(self) -> frozenset[str]:
        async with (
            self._tx() as db,
            db.execute("SELECT serial FROM revoked_serials") as cur,
        ):
            return frozenset(str(row[0]) for row in await cur.fetchall())

    async def save_revoked_serials(self, serials: frozenset[str]) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM revoked_serials")
            await db.executemany(
                "INSERT INTO revoked_serials VALUES (?)", [(s,) for s in sorted(serials)]
            )
