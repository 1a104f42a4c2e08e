"""The hub store on SQLite (aiosqlite, WAL, synchronous=FULL: what is acknowledged stays)."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import astuple
from pathlib import Path

import aiosqlite

from edgecommon.sqlite_file import aconnect
from edgecommon.sqlite_tx import transaction
from hub.store.base import (
    AckRecord,
    AssignmentRecord,
    CertificateRecord,
    LeaseRecord,
    NodeRecord,
    RevocationRecord,
    RoleRecord,
    StopRecord,
    SyncSetRecord,
    TokenRecord,
)
from hub.store.migrations import all_migrations

_NODE_COLUMNS = (
    "node_id, group_name, labels_json, agent_version, hostname, cert_serial, cert_expires_unix, "
    "first_seen_unix, last_seen_unix, state, state_since_unix, state_reason"
)
_CERT_COLUMNS = (
    "serial, kind, subject_id, group_name, not_after_unix, issued_unix, fingerprint, ca_fingerprint"
)
_INSERT_CERT = f"INSERT INTO certificates ({_CERT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"
_UPSERT_NODE = (
    f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (node_id) DO UPDATE SET group_name = excluded.group_name, "
    "labels_json = excluded.labels_json, agent_version = excluded.agent_version, "
    "hostname = excluded.hostname, cert_serial = excluded.cert_serial, "
    "cert_expires_unix = excluded.cert_expires_unix, last_seen_unix = excluded.last_seen_unix, "
    "state = excluded.state, state_since_unix = excluded.state_since_unix, "
    "state_reason = excluded.state_reason"
)


def _node_row(node: NodeRecord) -> tuple[object, ...]:
    return (
        node.node_id,
        node.group,
        json.dumps(node.labels, sort_keys=True),
        node.agent_version,
        node.hostname,
        node.cert_serial,
        node.cert_expires_unix,
        node.first_seen_unix,
        node.last_seen_unix,
        node.state,
        node.state_since_unix,
        node.state_reason,
    )


def _node_of(row: Sequence[object]) -> NodeRecord:
    (
        node_id,
        group,
        labels,
        version,
        hostname,
        serial,
        expires,
        first,
        last,
        state,
        since,
        reason,
    ) = row
    return NodeRecord(
        str(node_id),
        str(group),
        json.loads(str(labels)),
        str(version),
        str(hostname),
        str(serial),
        float(expires),
        float(first),
        float(last),
        str(state),
        float(since),  # type: ignore[arg-type]
        str(reason),
    )


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # One connection serves every coroutine: statements of concurrent callers must
        # not interleave inside each other's transactions.
        self._lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aconnect(self.path, "edge-hub", foreign_keys=True)
        try:
            await self._migrate()
            self.path.chmod(0o600)
        except BaseException:
            await self.close()
            raise

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with transaction(self.db, self._lock) as db:
            yield db

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self.db

    async def _migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_unix DOUBLE PRECISION)"
        )
        # Applied versions, not the highest: a migration numbered below one already applied
        # (two lines of work merged) must still run.
        applied = await self.applied_migrations()
        for migration in all_migrations():
            if migration.version in applied:
                continue
            async with self._transaction() as db:
                for statement in migration.statements():
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, strftime('%s','now'))",
                    (migration.version, migration.name),
                )

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def applied_migrations(self) -> set[int]:
        async with (
            self._read() as db,
            db.execute("SELECT version FROM schema_migrations") as cur,
        ):
            return {int(row[0]) for row in await cur.fetchall()}

    async def schema_version(self) -> int:
        async with (
            self._read() as db,
            db.execute("SELECT MAX(version) FROM schema_migrations") as cur,
        ):
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def add_token(self, token: TokenRecord) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO join_tokens (token_id, secret_hash, kind, subject_id, group_name, "
                "created_by, created_unix, expires_unix, used_unix) VALUES (?,?,?,?,?,?,?,?,?)",
                astuple(token),
            )

    async def get_token(self, token_id: str) -> TokenRecord | None:
        async with (
            self._read() as db,
            db.execute(
                "SELECT token_id, secret_hash, kind, subject_id, group_name, created_by, "
                "created_unix, expires_unix, used_unix FROM join_tokens WHERE token_id = ?",
                (token_id,),
            ) as cur,
        ):
            row = await cur.fetchone()
        return TokenRecord(*row) if row else None

    async def redeem_token(
        self,
        token_id: str,
        now_unix: float,
        certificate: CertificateRecord,
        node: NodeRecord | None,
    ) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE join_tokens SET used_unix = ? "
                "WHERE token_id = ? AND used_unix IS NULL AND expires_unix > ?",
                (now_unix, token_id, now_unix),
            )
            if cur.rowcount != 1:
                return False
            await db.execute(_INSERT_CERT, astuple(certificate))
            if node is not None:
                await db.execute(_UPSERT_NODE, _node_row(node))
            return True

    async def save_nodes(self, nodes: Sequence[NodeRecord]) -> None:
        if not nodes:
            return
        async with self._transaction() as db:
            await db.executemany(_UPSERT_NODE, [_node_row(n) for n in nodes])

    async def get_node(self, node_id: str) -> NodeRecord | None:
        async with (
            self._read() as db,
            db.execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE node_id = ?", (node_id,)) as cur,
        ):
            row = await cur.fetchone()
        return _node_of(row) if row else None

    async def list_nodes(self, group: str = "") -> list[NodeRecord]:
        query = f"SELECT {_NODE_COLUMNS} FROM nodes"
        args: tuple[str, ...] = ()
        if group:
            query, args = query + " WHERE group_name = ?", (group,)
        async with (
            self._read() as db,
            db.execute(query + " ORDER BY group_name, node_id", args) as cur,
        ):
            rows = await cur.fetchall()
        return [_node_of(r) for r in rows]

    async def record_certificate(self, certificate: CertificateRecord) -> None:
        async with self._transaction() as db:
            await db.execute(_INSERT_CERT, astuple(certificate))

    async def record_certificates(self, certificates: Sequence[CertificateRecord]) -> None:
        if not certificates:
            return
        async with self._transaction() as db:
            await db.executemany(_INSERT_CERT, [astuple(c) for c in certificates])

    async def list_certificates(self) -> list[CertificateRecord]:
        async with (
            self._read() as db,
            db.execute(f"SELECT {_CERT_COLUMNS} FROM certificates ORDER BY issued_unix") as cur,
        ):
            rows = await cur.fetchall()
        return [CertificateRecord(*r) for r in rows]

    async def add_stop(self, stop: StopRecord) -> None:
        async with self._transaction() as db:
            await db.execute("INSERT INTO estops VALUES (?,?,?,?,?,?,?,?)", astuple(stop))

    async def release_stops(
        self, stop_ids: Sequence[str], now_unix: float, reason: str, operator: str
    ) -> None:
        async with self._transaction() as db:
            await db.executemany(
                "UPDATE estops SET released_unix = ?, release_reason = ?, release_operator = ? "
                "WHERE stop_id = ? AND released_unix IS NULL",
                [(now_unix, reason, operator, stop_id) for stop_id in stop_ids],
            )

    async def list_stops(self) -> list[StopRecord]:
        async with (
            self._read() as db,
            db.execute("SELECT * FROM estops ORDER BY engaged_unix") as cur,
        ):
            return [StopRecord(*row) for row in await cur.fetchall()]

    async def save_acks(self, acks: Sequence[AckRecord]) -> None:
        if not acks:
            return
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO estop_acks VALUES (?,?,?,?) ON CONFLICT (stop_id, node_id) DO NOTHING",
                [astuple(a) for a in acks],
            )

    async def list_acks(self) -> list[AckRecord]:
        async with self._read() as db, db.execute("SELECT * FROM estop_acks") as cur:
            return [AckRecord(*row) for row in await cur.fetchall()]

    async def get_setting(self, name: str) -> str | None:
        async with (
            self._read() as db,
            db.execute("SELECT value FROM settings WHERE name = ?", (name,)) as cur,
        ):
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def put_setting(self, name: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO settings VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                "value = excluded.value",
                (name, value),
            )

    async def save_lease(self, lease: LeaseRecord) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO leases VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_name) DO UPDATE SET "
                "holder = excluded.holder, epoch = excluded.epoch, "
                "expires_unix = excluded.expires_unix, paused = excluded.paused "
                "WHERE excluded.epoch >= leases.epoch",
                (lease.group, lease.holder, lease.epoch, lease.expires_unix, int(lease.paused)),
            )

    async def list_leases(self) -> list[LeaseRecord]:
        async with self._read() as db, db.execute("SELECT * FROM leases") as cur:
            return [
                LeaseRecord(g, h, int(e), float(x), bool(p))
                for g, h, e, x, p in await cur.fetchall()
            ]

    async def list_roles(self) -> list[RoleRecord]:
        async with self._read() as db, db.execute("SELECT * FROM rbac_roles ORDER BY name") as cur:
            return [
                RoleRecord(n, d, tuple(json.loads(p)), b, float(t))
                for n, d, p, b, t in await cur.fetchall()
            ]

    async def put_role(self, role: RoleRecord) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO rbac_roles VALUES (?, ?, ?, ?, ?)",
                (
                    role.name,
                    role.description,
                    json.dumps(sorted(role.permissions)),
                    role.created_by,
                    role.created_unix,
                ),
            )

    async def delete_role(self, name: str, *, with_assignments: bool) -> int:
        async with self._transaction() as db:
            removed = 0
            if with_assignments:
                cur = await db.execute("DELETE FROM rbac_assignments WHERE role = ?", (name,))
                removed = cur.rowcount
            await db.execute("DELETE FROM rbac_roles WHERE name = ?", (name,))
            return removed

    async def list_assignments(self) -> list[AssignmentRecord]:
        async with (
            self._read() as db,
            db.execute("SELECT * FROM rbac_assignments ORDER BY operator, scope, role") as cur,
        ):
            return [
                AssignmentRecord(o, r, s, b, float(t)) for o, r, s, b, t in await cur.fetchall()
            ]

    async def add_assignment(self, assignment: AssignmentRecord) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(
                "INSERT INTO rbac_assignments VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                astuple(assignment),
            )
            return cur.rowcount == 1

    async def remove_assignment(self, operator: str, role: str, scope: str) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(
                "DELETE FROM rbac_assignments WHERE operator = ? AND role = ? AND scope = ?",
                (operator, role, scope),
            )
            return cur.rowcount == 1

    async def add_revocations(self, revocations: Sequence[RevocationRecord]) -> None:
        if not revocations:
            return
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO revocations (serial, kind, subject_id, group_name, reason, "
                "revoked_by, revoked_unix) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT (serial) DO NOTHING",
                [astuple(r) for r in revocations],
            )

    async def list_revocations(self) -> list[RevocationRecord]:
        async with (
            self._read() as db,
            db.execute(
                "SELECT serial, kind, subject_id, group_name, reason, revoked_by, revoked_unix "
                "FROM revocations ORDER BY revoked_unix"
            ) as cur,
        ):
            return [RevocationRecord(*row) for row in await cur.fetchall()]

    async def put_renewal_error(self, subject_id: str, error: str, at_unix: float) -> None:
        async with self._transaction() as db:
            if not error:
                await db.execute("DELETE FROM renewal_errors WHERE subject_id = ?", (subject_id,))
                return
            await db.execute(
                "INSERT INTO renewal_errors VALUES (?, ?, ?) ON CONFLICT (subject_id) DO UPDATE "
                "SET error = excluded.error, at_unix = excluded.at_unix",
                (subject_id, error, at_unix),
            )

    async def list_renewal_errors(self) -> dict[str, tuple[str, float]]:
        async with self._read() as db, db.execute("SELECT * FROM renewal_errors") as cur:
            return {str(s): (str(e), float(t)) for s, e, t in await cur.fetchall()}

    async def save_sync_set(self, record: SyncSetRecord) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO replication_sets VALUES (?, ?, ?, ?) ON CONFLICT (group_name) DO "
                "UPDATE SET sync_set = excluded.sync_set, joining = excluded.joining, "
                "revision = excluded.revision",
                (
                    record.group,
                    ",".join(record.sync_set),
                    ",".join(record.joining),
                    record.revision,
                ),
            )

    async def list_sync_sets(self) -> list[SyncSetRecord]:
        async with self._read() as db, db.execute("SELECT * FROM replication_sets") as cur:
            return [
                SyncSetRecord(
                    g, tuple(filter(None, s.split(","))), tuple(filter(None, j.split(","))), int(r)
                )
                for g, s, j, r in await cur.fetchall()
            ]
