"""The two audit backends against the real thing: files in a temporary directory and the
PostgreSQL server (AUTONOMY_TEST_PG_URL, by default 127.0.0.1:5432, one schema per test).
The contract tests run the same cases on both; INV-AUDIT-01 tampering is done the way an
intruder would (editing the file, or as superuser with triggers off)."""

import asyncio
import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from edgecommon.errors import Conflict, InvalidArgument
from hub.audit.backend import AuditLog
from hub.audit.chain import seal
from hub.audit.event import AuditEvent, AuditFilter, AuditUnavailable
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog, to_timestamp
from tests.audit_support import PG_URL, ev, fill, opened
from tests.fakes import T0, FakeClock


async def _pg_problem() -> str:
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return str(exc) or type(exc).__name__
    await conn.close()
    return ""


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards."""
    problem = asyncio.run(_pg_problem())
    if problem:
        if os.environ.get("AUTONOMY_TEST_PG_URL") or os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} does not answer: {problem}")
        pytest.skip(f"no PostgreSQL at {PG_URL} ({problem}); set AUTONOMY_TEST_PG_URL")
    schema = f"audit_test_{secrets.token_hex(6)}"
    yield schema

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()

    asyncio.run(drop())


# -- how an intruder changes each backend ------------------------------------------------


class FileTamper:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _segment(self) -> Path:
        (only,) = sorted(self.directory.glob("audit-*.jsonl"))
        return only

    def _rows(self) -> list[dict]:
        return [json.loads(line) for line in self._segment().read_text().splitlines()]

    def _store(self, rows: list[dict]) -> None:
        text = "".join(
            json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows
        )
        self._segment().write_text(text)

    async def edit(self, seq: int, **fields: object) -> None:
        self._store([{**r, **fields} if r["seq"] == seq else r for r in self._rows()])

    async def delete(self, seq: int) -> None:
        self._store([r for r in self._rows() if r["seq"] != seq])

    async def swap(self, a: int, b: int) -> None:
        rows = self._rows()
        i, j = (next(k for k, r in enumerate(rows) if r["seq"] == s) for s in (a, b))
        rows[i], rows[j] = rows[j], rows[i]
        self._store(rows)

    async def insert_before(self, seq: int, forged: AuditEvent) -> None:
        rows = self._rows()
        k = next(k for k, r in enumerate(rows) if r["seq"] == seq)
        self._store([*rows[:k], forged.to_dict(), *rows[k:]])


class PgTamper:
    """A superuser with triggers switched off (session_replication_role = replica)."""

    def __init__(self, schema: str) -> None:
        self.table = f"{schema}.audit_events"

    async def _run(self, *statements: tuple) -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute("SET session_replication_role = replica")
            for sql, *args in statements:
                await conn.execute(sql, *args)
        finally:
            await conn.close()

    async def edit(self, seq: int, **fields: object) -> None:
        for name, value in fields.items():
            value = to_timestamp(value) if name == "time" else value
            await self._run((f"UPDATE {self.table} SET {name} = $1 WHERE seq = $2", value, seq))

    async def delete(self, seq: int) -> None:
        await self._run((f"DELETE FROM {self.table} WHERE seq = $1", seq))

    async def swap(self, a: int, b: int) -> None:
        await self._run(
            (f"UPDATE {self.table} SET seq = 1000000 WHERE seq = $1", a),
            (f"UPDATE {self.table} SET seq = $1 WHERE seq = $2", a, b),
            (f"UPDATE {self.table} SET seq = $1 WHERE seq = 1000000", b),
        )

    async def insert_before(self, seq: int, forged: AuditEvent) -> None:
        cols = ", ".join(forged.to_dict())
        values = [to_timestamp(v) if k == "time" else v for k, v in forged.to_dict().items()]
        marks = ", ".join(f"${i + 1}" for i in range(len(values)))
        await self._run(
            (f"UPDATE {self.table} SET seq = seq + 1000000 WHERE seq >= $1", seq),
            (f"UPDATE {self.table} SET seq = seq - 999999 WHERE seq > 1000000",),
            (f"INSERT INTO {self.table} ({cols}) VALUES ({marks})", *values),
        )


@dataclass
class Backend:
    kind: str
    make: Callable[[], AuditLog]
    tamper: FileTamper | PgTamper
    clock: FakeClock


@pytest.fixture(params=["file", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    clock = FakeClock()
    if request.param == "file":
        directory = tmp_path / "audit"
        return Backend("file", lambda: FileAuditLog(directory, clock), FileTamper(directory), clock)
    schema = request.getfixturevalue("pg_schema")
    return Backend("postgresql", lambda: PgAuditLog(PG_URL, clock, schema), PgTamper(schema), clock)


# -- contract: the same behaviour on both backends ---------------------------------------


async def test_append_seals_a_chain_that_reopening_continues(backend: Backend) -> None:
    async with opened(backend.make()) as log:
        first = await log.append([ev(0), ev(1)])
        assert [e.seq for e in first] == [1, 2]
        assert first[0].prev_hash == "0" * 64
        assert first[1].prev_hash == first[0].hash
        assert (first[0].operator, first[0].time) == ("op0", T0)
    async with opened(backend.make()) as log:
        (third,) = await log.append([ev(2)])
        assert (third.seq, third.prev_hash) == (3, first[1].hash)
        report = await log.verify()
        assert report.ok, report.problems
        assert (report.checked, report.first_seq, report.last_seq) == (3, 1, 3)
        assert await log.query(AuditFilter()) == [*first, third]
        assert log.statistics()["last_seq"] == 3
        assert log.statistics()["events"] == 3


async def test_concurrent_appends_share_writes_and_lose_nothing(backend: Backend) -> None:
    async with opened(backend.make()) as log:
        results = await asyncio.gather(*(log.append([ev(i), ev(i + 100)]) for i in range(50)))
        for i, (a, b) in enumerate(results):
            assert (a.request_id, b.request_id) == (f"req-{i}", f"req-{i + 100}")
            assert b.seq == a.seq + 1
        assert sorted(e.seq for pair in results for e in pair) == list(range(1, 101))
        assert log.statistics()["batches"] < 50
        assert (await log.verify()).ok


async def test_query_applies_every_filter_in_seq_order(backend: Backend) -> None:
    async with opened(backend.make()) as log:
        stored = await fill(log, backend.clock, 40)
        cases = [
            AuditFilter(operator="op1"),
            AuditFilter(action="enroll", outcome="denied"),
            AuditFilter(target="node:n3"),
            AuditFilter(since=T0 + 10, until=T0 + 20),
            AuditFilter(after_seq=30),
            AuditFilter(operator="op2", limit=3),
            AuditFilter(operator="nobody"),
        ]
        for f in cases:
            expected = [e for e in stored if f.matches(e)][: f.limit or None]
            assert await log.query(f) == expected, f
        assert len(await log.query(AuditFilter(limit=0))) == 40


async def test_export_streams_every_match(backend: Backend) -> None:
    async with opened(backend.make()) as log:
        stored = await fill(log, backend.clock, 30)
        every = [e async for e in log.export(AuditFilter(limit=0))]
        assert every == stored
        some = [e async for e in log.export(AuditFilter(outcome="success", limit=4))]
        assert some == [e for e in stored if e.outcome == "success"][:4]


async def test_bad_input_is_refused_and_nothing_is_stored(backend: Backend) -> None:
    async with opened(backend.make()) as log:
        await fill(log, backend.clock, 2)
        with pytest.raises(InvalidArgument, match="outcome 'maybe' is unknown"):
            await log.append([ev(5), dataclasses.replace(ev(6), outcome="maybe")])
        with pytest.raises(InvalidArgument, match=r"since .* is after until"):
            await log.query(AuditFilter(since=T0 + 5, until=T0))
        with pytest.raises(InvalidArgument, match="is in the future"):
            await log.prune(T0 + 10_000, ev(9, action="audit.prune"))
        assert [e.seq for e in await log.query(AuditFilter())] == [1, 2]


async def test_prune_leaves_an_anchor_that_verify_accepts(backend: Backend) -> None:
    async with opened(backend.make()) as log:
        stored = await fill(log, backend.clock, 20)
        backend.clock.now = T0 + 100
        report = await log.prune(T0 + 8, ev(0, action="audit.prune", detail="retention 90d"))
        assert report.removed == 8
        assert report.anchor is not None
        assert (report.anchor.seq, report.anchor.hash) == (8, stored[7].hash)
        assert (report.event.seq, report.event.action) == (21, "audit.prune")
        assert report.event.detail.startswith(f"prune anchor seq 8 hash {stored[7].hash}")
        assert report.event.detail.endswith("retention 90d")
        left = await log.query(AuditFilter(limit=0))
        assert [e.seq for e in left] == list(range(9, 22))
        verified = await log.verify()
        assert verified.ok, verified.problems
        assert (verified.first_seq, verified.last_seq) == (9, 21)
        assert (log.statistics()["events"], log.statistics()["anchor_seq"]) == (13, 8)
    async with opened(backend.make()) as log:
        assert (await log.verify()).ok
        again = await log.prune(T0 + 15, ev(1, action="audit.prune"))
        assert (again.removed, again.anchor.seq) == (7, 15)
        nothing = await log.prune(T0 + 15, ev(2, action="audit.prune"))
        assert (nothing.removed, nothing.anchor) == (0, None)
        await log.append([ev(3)])
        report = await log.verify()
        assert report.ok, report.problems
        assert (report.first_seq, report.last_seq) == (16, 24)


async def test_appends_during_a_prune_are_kept(backend: Backend) -> None:
    async with opened(backend.make()) as log:
        await fill(log, backend.clock, 200)
        backend.clock.now = T0 + 1000
        pruned, *appended = await asyncio.gather(
            log.prune(T0 + 100, ev(0, action="audit.prune")),
            *(log.append([ev(i)]) for i in range(300, 320)),
        )
        assert pruned.removed == 100
        left = {e.request_id for e in await log.query(AuditFilter(limit=0))}
        assert {e.request_id for (e,) in appended} <= left
        assert len(left) == 100 + 20 + 1
        report = await log.verify()
        assert report.ok, report.problems


@pytest.mark.parametrize("kind", ["edited", "deleted", "reordered", "inserted"])
async def test_inv_audit_01_tampering_is_detected_and_named(backend: Backend, kind: str) -> None:
    async with opened(backend.make()) as log:
        stored = await fill(log, backend.clock, 10)
        assert (await log.verify()).ok
    tamper = backend.tamper
    if kind == "edited":
        await tamper.edit(4, reason="nothing happened")
        expected = ["event 4 was edited"]
    elif kind == "deleted":
        await tamper.delete(6)
        expected = ["event 6 was deleted"]
    elif kind == "reordered":
        await tamper.swap(3, 4)
        expected = ["reordered", "event 4"] if backend.kind == "file" else ["event 3 was reordered"]
    else:
        forged = seal(ev(99, operator="mallory"), 5, T0 + 4.5, stored[3].hash)
        await tamper.insert_before(5, forged)
        expected = ["an event was inserted as seq 5"]
    async with opened(backend.make()) as log:
        report = await log.verify()
    assert not report.ok
    assert any(all(w in p for w in expected) for p in report.problems), report.problems


async def test_prune_refuses_to_remove_events_that_do_not_verify(backend: Backend) -> None:
    async with opened(backend.make()) as log:
        await fill(log, backend.clock, 10)
    await backend.tamper.edit(3, operator="nobody")
    async with opened(backend.make()) as log:
        backend.clock.now = T0 + 100
        with pytest.raises(Conflict, match=r"prune refused.*event 3 was edited"):
            await log.prune(T0 + 5, ev(0, action="audit.prune"))
        assert len(await log.query(AuditFilter())) == 10
        report = await log.prune(T0 + 2, ev(0, action="audit.prune"))
        assert report.removed == 2


# -- PostgreSQL only ----------------------------------------------------------------------


async def test_inv_audit_01_direct_sql_cannot_change_audit_events(pg_schema: str) -> None:
    async with opened(PgAuditLog(PG_URL, FakeClock(), pg_schema)) as log:
        await log.append([ev(0), ev(1)])
    conn = await asyncpg.connect(PG_URL)
    try:
        table = f"{pg_schema}.audit_events"
        for sql in (
            f"UPDATE {table} SET reason = 'x' WHERE seq = 1",
            f"DELETE FROM {table} WHERE seq = 1",
            f"TRUNCATE {table}",
            f"DELETE FROM {pg_schema}.audit_head",
            f"INSERT INTO {pg_schema}.audit_anchor VALUES (true, 1, 'x', now())",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2
        assert await conn.fetchval(f"SELECT reason FROM {table} WHERE seq = 1") == ""
    finally:
        await conn.close()


async def test_two_hubs_on_one_database_extend_one_chain(pg_schema: str) -> None:
    clock = FakeClock()
    async with (
        opened(PgAuditLog(PG_URL, clock, pg_schema)) as a,
        opened(PgAuditLog(PG_URL, clock, pg_schema)) as b,
    ):
        await asyncio.gather(*(log.append([ev(i)]) for i in range(40) for log in (a, b)))
        report = await a.verify()
        assert report.ok, report.problems
        assert report.last_seq == 80


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_postgresql_is_a_clear_error() -> None:
    log = PgAuditLog(f"postgresql://audit:secret@127.0.0.1:{free_port()}/x", FakeClock())
    assert "secret" not in log.name
    with pytest.raises(AuditUnavailable, match=r"PostgreSQL audit log postgresql://127\.0\.0\.1"):
        await log.append([ev(0)])
    assert log.statistics()["errors"] == 1
    await log.close()
    with pytest.raises(AuditUnavailable, match="is closed"):
        await log.append([ev(0)])
    with pytest.raises(InvalidArgument, match="must start with postgresql://"):
        PgAuditLog("mysql://root@127.0.0.1/x", FakeClock())
    with pytest.raises(InvalidArgument, match="plain lower-case SQL name"):
        PgAuditLog(PG_URL, FakeClock(), "x; drop table y")


# -- a hub killed while appending loses nothing it acknowledged -----------------------------

WRITER = """
import asyncio, sys
from pathlib import Path
from edgecommon.clock import SystemClock
from hub.audit.event import NewEvent
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog

async def main():
    kind, where = sys.argv[1], sys.argv[2]
    if kind == "file":
        log = FileAuditLog(Path(where), SystemClock(), rotate_bytes=8192)
    else:
        log = PgAuditLog(sys.argv[3], SystemClock(), where)
    await log.open()

    async def writer(w):
        for i in range(100000):
            new = NewEvent("alice", "estop.engage", "fleet", "fleet", "attempt", f"{w}-{i}")
            (event,) = await log.append([new])
            print(event.seq, event.request_id, flush=True)

    await asyncio.gather(*(writer(w) for w in range(4)))

asyncio.run(main())
"""


def test_killed_writer_loses_no_acknowledged_event(backend: Backend, tmp_path: Path) -> None:
    """SIGKILL in the middle of group-committed appends (4 concurrent writers)."""
    if backend.kind == "file":
        args = ["file", str(backend.tamper.directory)]
    else:
        args = ["postgresql", backend.tamper.table.split(".")[0], PG_URL]
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, *args],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    acked: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acked.append(line.split()[1])
            if len(acked) >= 300:
                break
    finally:
        child.kill()
        rest, _ = child.communicate(timeout=30)
    acked += [line.split()[1] for line in rest.splitlines() if len(line.split()) == 2]
    assert len(acked) >= 300

    async def check() -> None:
        async with opened(backend.make()) as log:
            report = await log.verify()
            assert report.ok, report.problems
            stored = {e.request_id for e in await log.query(AuditFilter(limit=0))}
            assert set(acked) <= stored
            assert report.checked == len(stored)

    asyncio.run(check())
