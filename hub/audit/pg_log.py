"""The PostgreSQL audit log: table audit_events, append-only inside the database.

Tables (in the configured schema): audit_events (one row per event, indexed for the
usual filters), audit_head (one row: the newest seq and hash; appenders lock it, so hubs
sharing one database extend a single chain) and audit_anchor (one row, left by prune).

BEFORE UPDATE/DELETE/TRUNCATE triggers reject every change to audit_events, except a
DELETE in a transaction that set `autonomy.audit_prune = 'on'` (SET LOCAL): the prune
path. That stops accidental and casual changes from any role, the hub's included; a
superuser or the table owner can still disable triggers, and then the chain shows it.
"""

import asyncio
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from edgecommon.clock import Clock, stamp
from edgecommon.errors import Conflict, InvalidArgument
from edgecommon.group_commit import GroupCommit
from hub.audit.backend import (
    PruneReport,
    check_cutoff,
    checked_events,
    refuse_unverified_prune,
)
from hub.audit.chain import Anchor, ChainChecker, Head, VerifyReport, anchor_note, seal_all
from hub.audit.event import (
    EVENT_FIELDS,
    GENESIS_HASH,
    AuditEvent,
    AuditFilter,
    AuditUnavailable,
    NewEvent,
    validate_filter,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
COLUMNS = ", ".join(EVENT_FIELDS)
FAILURES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)

DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.audit_events (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    time timestamptz NOT NULL,
    operator text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    scope text NOT NULL,
    outcome text NOT NULL,
    request_id text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_time ON {s}.audit_events (time);
CREATE INDEX IF NOT EXISTS audit_events_operator ON {s}.audit_events (operator, seq);
CREATE INDEX IF NOT EXISTS audit_events_action ON {s}.audit_events (action, seq);
CREATE INDEX IF NOT EXISTS audit_events_operator_action ON {s}.audit_events (operator, action, seq);
CREATE INDEX IF NOT EXISTS audit_events_outcome ON {s}.audit_events (outcome, seq);
CREATE INDEX IF NOT EXISTS audit_events_target ON {s}.audit_events (target, seq);
CREATE TABLE IF NOT EXISTS {s}.audit_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO {s}.audit_head VALUES (true, 0, '{genesis}') ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS {s}.audit_anchor (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL,
    hash text NOT NULL,
    pruned_before timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION {s}.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('autonomy.audit_prune', true), '') = 'on' AND (
        (TG_TABLE_NAME = 'audit_events' AND TG_OP = 'DELETE')
        OR (TG_TABLE_NAME = 'audit_anchor' AND TG_OP IN ('INSERT', 'UPDATE'))
    ) THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '%.% is append-only: % refused (old events leave only through audit prune)',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE
    ON {s}.audit_events FOR EACH ROW EXECUTE FUNCTION {s}.audit_append_only();
CREATE OR REPLACE TRIGGER audit_events_no_truncate BEFORE TRUNCATE
    ON {s}.audit_events FOR EACH STATEMENT EXECUTE FUNCTION {s}.audit_append_only();
CREATE OR REPLACE TRIGGER audit_anchor_guard BEFORE INSERT OR UPDATE OR DELETE
    ON {s}.audit_anchor FOR EACH ROW EXECUTE FUNCTION {s}.audit_append_only();
CREATE OR REPLACE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE
    ON {s}.audit_anchor FOR EACH STATEMENT EXECUTE FUNCTION {s}.audit_append_only();
CREATE OR REPLACE TRIGGER audit_head_guard BEFORE DELETE
    ON {s}.audit_head FOR EACH ROW EXECUTE FUNCTION {s}.audit_append_only();
CREATE OR REPLACE TRIGGER audit_head_no_truncate BEFORE TRUNCATE
    ON {s}.audit_head FOR EACH STATEMENT EXECUTE FUNCTION {s}.audit_append_only();
"""


def to_timestamp(unix: float) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=round(unix * 1_000_000))


def from_timestamp(value: dt.datetime) -> float:
    return ((value - EPOCH) // dt.timedelta(microseconds=1)) / 1_000_000


def redact(url: str) -> str:
    """The URL as shown to operators: scheme, host, port and database, never a password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or 'postgresql'}://{host}{port}{parts.path}"


def _event(row: asyncpg.Record) -> AuditEvent:
    values = dict(row)
    values["time"] = from_timestamp(values["time"])
    return AuditEvent(**values)


def _record(e: AuditEvent) -> tuple[Any, ...]:
    return tuple(
        to_timestamp(e.time) if name == "time" else getattr(e, name) for name in EVENT_FIELDS
    )


def _where(f: AuditFilter) -> tuple[str, list[Any]]:
    conds, args = ["seq > $1"], [f.after_seq]
    columns = [("operator", f.operator), ("action", f.action), ("outcome", f.outcome)]
    columns.append(("target", f.target))
    for column, value in columns:
        if value:
            args.append(value)
            conds.append(f"{column} = ${len(args)}")
    if f.since is not None:
        args.append(to_timestamp(f.since))
        conds.append(f"time >= ${len(args)}")
    if f.until is not None:
        args.append(to_timestamp(f.until))
        conds.append(f"time < ${len(args)}")
    return " AND ".join(conds), args


def _insert_sql(schema: str) -> str:
    """One statement (one round trip): the rows, from arrays, and the new head."""
    types = ["bigint", "timestamptz"] + ["text"] * (len(EVENT_FIELDS) - 2)
    arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    n = len(EVENT_FIELDS)
    return (
        f"WITH rows AS (INSERT INTO {schema}.audit_events ({COLUMNS}) "
        f"SELECT * FROM unnest({arrays})) "
        f"UPDATE {schema}.audit_head SET seq = ${n + 1}, hash = ${n + 2}"
    )


class PgAuditLog:
    def __init__(
        self,
        url: str,
        clock: Clock,
        schema: str = "public",
        log: logging.Logger | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not SCHEMA_NAME.match(schema):
            raise InvalidArgument(
                f"audit PostgreSQL schema {schema!r} is not a plain lower-case SQL name"
            )
        if urlsplit(url).scheme not in ("postgres", "postgresql"):
            raise InvalidArgument(
                f"audit PostgreSQL URL {redact(url)} must start with postgresql://"
            )
        self._url = url
        self.name = redact(url)
        self._schema = schema
        self._clock = clock
        self._log = log or logging.getLogger("hub.audit")
        self._timeout = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._closed = False  # after close(), only open() connects again
        self._opening = asyncio.Lock()
        self._commit: GroupCommit[NewEvent, AuditEvent] = GroupCommit(
            self._write,
            lambda: AuditUnavailable(f"PostgreSQL audit log {self.name} is shutting down"),
        )
        self._head = Head(0, GENESIS_HASH)
        self._anchor_seq = 0
        self._stats = {"appended": 0, "errors": 0}
        self._last_error = ""

    def _unavailable(self, exc: BaseException) -> AuditUnavailable:
        self._stats["errors"] += 1
        text = str(exc) or type(exc).__name__
        self._last_error = text
        return AuditUnavailable(
            f"PostgreSQL audit log {self.name}: {text}; check that the server is up and the "
            "URL (--pg-url / AUTONOMY_AUDIT_PG_URL) and its credentials are right"
        )

    async def open(self) -> None:
        async with self._opening:
            self._closed = False
            if self._pool is not None:
                return
            try:
                pool = await asyncpg.create_pool(
                    self._url,
                    min_size=1,
                    max_size=4,
                    timeout=self._timeout,
                    command_timeout=60,
                )
            except FAILURES as exc:
                raise self._unavailable(exc) from exc
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('autonomy.audit.ddl'))"
                    )
                    await conn.execute(DDL.format(s=self._schema, genesis=GENESIS_HASH))
                    row = await conn.fetchrow(f"SELECT seq, hash FROM {self._schema}.audit_head")
                    anchor = await self._anchor(conn)
            except FAILURES as exc:
                await pool.close()
                raise self._unavailable(exc) from exc
            self._pool = pool
            self._head = Head(row["seq"], row["hash"])
            self._anchor_seq = anchor.seq if anchor else 0
            self._log.info("audit: PostgreSQL log %s open at event %d", self.name, row["seq"])

    async def _ready(self) -> asyncpg.Pool:
        if self._closed:
            raise AuditUnavailable(f"PostgreSQL audit log {self.name} is closed")
        if self._pool is None:
            await self.open()
        if self._pool is None:
            raise AuditUnavailable(f"PostgreSQL audit log {self.name} is not open")
        return self._pool

    async def close(self) -> None:
        await self._commit.drain()
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def append(self, events: Sequence[NewEvent]) -> list[AuditEvent]:
        return await self._commit.submit(checked_events(events))

    async def _write(self, news: list[NewEvent]) -> list[AuditEvent]:
        pool = await self._ready()
        try:
            async with pool.acquire() as conn, conn.transaction():
                events = await self._insert(conn, news)
        except FAILURES as exc:
            raise self._unavailable(exc) from exc
        self._committed(events)
        return events

    def _committed(self, events: list[AuditEvent]) -> None:
        self._head = Head(events[-1].seq, events[-1].hash)
        self._stats["appended"] += len(events)

    async def _insert(self, conn: asyncpg.Connection, news: list[NewEvent]) -> list[AuditEvent]:
        s = self._schema
        head = await conn.fetchrow(f"SELECT seq, hash FROM {s}.audit_head FOR UPDATE")
        events = seal_all(news, head["seq"], head["hash"], self._clock.wall())
        columns = list(zip(*map(_record, events), strict=True))
        last = events[-1]
        await conn.execute(_insert_sql(s), *columns, last.seq, last.hash)
        return events

    async def query(self, f: AuditFilter) -> list[AuditEvent]:
        validate_filter(f)
        where, args = _where(f)
        limit = f" LIMIT {f.limit}" if f.limit else ""
        sql = f"SELECT {COLUMNS} FROM {self._schema}.audit_events WHERE {where} ORDER BY seq{limit}"
        pool = await self._ready()
        try:
            rows = await pool.fetch(sql, *args)
        except FAILURES as exc:
            raise self._unavailable(exc) from exc
        return [_event(r) for r in rows]

    async def export(self, f: AuditFilter) -> AsyncIterator[AuditEvent]:
        validate_filter(f)
        where, args = _where(f)
        limit = f" LIMIT {f.limit}" if f.limit else ""
        sql = f"SELECT {COLUMNS} FROM {self._schema}.audit_events WHERE {where} ORDER BY seq{limit}"
        pool = await self._ready()
        try:
            async with pool.acquire() as conn, conn.transaction(readonly=True):
                async for row in conn.cursor(sql, *args, prefetch=2000):
                    yield _event(row)
        except FAILURES as exc:
            raise self._unavailable(exc) from exc

    async def verify(self) -> VerifyReport:
        s = self._schema
        pool = await self._ready()
        try:
            async with (
                pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                row = await conn.fetchrow(f"SELECT seq, hash FROM {s}.audit_head")
                head = Head(row["seq"], row["hash"]) if row is not None else None
                missing = () if row is not None else ("the audit_head row was deleted",)
                anchor = await self._anchor(conn)
                quick = await self._check(conn, keep_links=False)
                report = quick.quick_report(anchor, head, missing)
                if report is None:
                    full = await self._check(conn, keep_links=True)
                    report = full.report(anchor, head, missing)
        except FAILURES as exc:
            raise self._unavailable(exc) from exc
        return report

    async def _check(
        self, conn: asyncpg.Connection, keep_links: bool, through: int | None = None
    ) -> ChainChecker:
        """Events in seq order (up to seq `through`, if given) through a checker."""
        checker = ChainChecker(keep_links)
        where = "" if through is None else "WHERE seq <= $1"
        sql = f"SELECT {COLUMNS} FROM {self._schema}.audit_events {where} ORDER BY seq"
        args = () if through is None else (through,)
        async for row in conn.cursor(sql, *args, prefetch=2000):
            checker.add(_event(row))
        return checker

    async def _anchor(self, conn: asyncpg.Connection) -> Anchor | None:
        row = await conn.fetchrow(
            f"SELECT seq, hash, pruned_before FROM {self._schema}.audit_anchor"
        )
        if row is None:
            return None
        return Anchor(row["seq"], row["hash"], from_timestamp(row["pruned_before"]))

    async def prune(self, cutoff: float, event: NewEvent) -> PruneReport:
        (event,) = checked_events([event])
        check_cutoff(cutoff, self._clock.wall())
        pool = await self._ready()
        try:
            async with pool.acquire() as conn:
                # Find and check what goes without holding the head, so appends from
                # every hub continue meanwhile; then remove it in one short transaction.
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    old, tail, removed = await self._plan_prune(conn, cutoff)
                async with conn.transaction():
                    report = await self._apply_prune(conn, cutoff, event, old, tail, removed)
        except FAILURES as exc:
            raise self._unavailable(exc) from exc
        self._committed([report.event])
        if report.anchor is not None:
            self._anchor_seq = report.anchor.seq
        self._log.info(
            "audit: pruned %d events before %s from %s", report.removed, stamp(cutoff), self.name
        )
        return report

    async def _plan_prune(
        self, conn: asyncpg.Connection, cutoff: float
    ) -> tuple[Anchor | None, Head | None, int]:
        """The current anchor, the last event to remove (None: nothing) and how many."""
        s = self._schema
        old = await self._anchor(conn)
        newer = await conn.fetchval(
            f"SELECT min(seq) FROM {s}.audit_events WHERE time >= $1", to_timestamp(cutoff)
        )
        bound = "" if newer is None else "WHERE seq < $1"
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, max(seq) AS last FROM {s}.audit_events {bound}",
            *(() if newer is None else (newer,)),
        )
        if not row["n"]:
            return old, None, 0
        newest = await conn.fetchval(
            f"SELECT hash FROM {s}.audit_events WHERE seq = $1", row["last"]
        )
        tail = Head(row["last"], newest)
        quick = await self._check(conn, keep_links=False, through=tail.seq)
        if quick.quick_report(old, tail, confirm_anchor=False) is None:
            full = await self._check(conn, keep_links=True, through=tail.seq)
            refuse_unverified_prune(self.name, full.report(old, tail, confirm_anchor=False))
        return old, tail, row["n"]

    async def _apply_prune(
        self,
        conn: asyncpg.Connection,
        cutoff: float,
        event: NewEvent,
        old: Anchor | None,
        tail: Head | None,
        removed: int,
    ) -> PruneReport:
        s = self._schema
        await conn.execute(f"SELECT seq FROM {s}.audit_head FOR UPDATE")
        if await self._anchor(conn) != old:
            raise Conflict(f"audit log {self.name}: another prune ran meanwhile; prune again")
        anchor = Anchor(tail.seq, tail.hash, cutoff) if tail is not None else None
        note = (
            f"{anchor_note(anchor)}; removes {removed} events before {stamp(cutoff)}"
            if anchor
            else f"nothing to remove before {stamp(cutoff)}"
        )
        detail = f"{note}; {event.detail}" if event.detail else note
        (stored,) = await self._insert(conn, [replace(event, detail=detail)])
        if anchor is not None:
            await conn.execute("SET LOCAL autonomy.audit_prune = 'on'")
            await conn.execute(
                f"INSERT INTO {s}.audit_anchor (one, seq, hash, pruned_before) "
                "VALUES (true, $1, $2, $3) ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, "
                "hash = excluded.hash, pruned_before = excluded.pruned_before",
                anchor.seq,
                anchor.hash,
                to_timestamp(cutoff),
            )
            await conn.execute(f"DELETE FROM {s}.audit_events WHERE seq <= $1", anchor.seq)
        return PruneReport(removed, anchor, stored)

    def statistics(self) -> dict[str, Any]:
        return {
            "backend": "postgresql",
            "name": self.name,
            "schema": self._schema,
            "connected": self._pool is not None,
            "events": self._head.seq - self._anchor_seq,
            "last_seq": self._head.seq,
            "anchor_seq": self._anchor_seq,
            "batches": self._commit.batches,
            "last_error": self._last_error,
            **self._stats,
        }
