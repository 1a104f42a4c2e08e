"""The two audit backends against the real thing: files in a temporary directory and the
PostgreSQL server (AUTONOMY_TEST_PG_URL, by default 127.0.0.1:5432, one schema per test).
The contract tests run the same cases on both; INV-AUDIT-01 tampering is done the way an
intruder would (editing the file, or as superuser with triggers off)."""

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecommon.errors import Conflict, InvalidArgument
from hub.audit.backend import AuditLog
from hub.audit.chain import seal
from hub.audit.event import AuditEvent, AuditFilter, AuditUnavailable, NewEvent
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog, to_timestamp

PG_URL = os.environ.get("AUTONOMY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = 1_790_000_000.0


class FakeClock:
    def __init__(self, wall: float = T0) -> None:
        self.now = wall

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - T0


def ev(i: int, **kw: str) -> NewEvent:
    base = {
        "operator": f"op{i % 3}",
        "action": ("estop.engage", "rbac.assign", "enroll")[i % 3],
        "target": f"node:n{i % 5}",
        "scope": "fleet",
        "outcome": ("attempt", "success", "denied", "failure")[i % 4],
        "request_id": f"req-{i}",
    }
    return NewEvent(**{**base, **kw})


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


@contextlib.asynccontextmanager
async def opened(log: AuditLog) -> AsyncIterator[AuditLog]:
    await log.open()
    try:
        yield log
    finally:
        await log.close()


async def fill(log: AuditLog, clock: FakeClock, n: int, start: int = 0) -> list[AuditEvent]:
    stored = []
    for i in range(start, start + n):
        clock.now = T0 + i
        stored += await log.append([ev(i)])
    return stored


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


# -- file only ------------------------------------------------------------------------------


async def test_rotation_keeps_one_chain_across_segments(tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened(FileAuditLog(tmp_path, clock, rotate_bytes=4096)) as log:
        stored = await fill(log, clock, 60)
        assert log.statistics()["segments"] > 2
    segments = sorted(tmp_path.glob("audit-*.jsonl"))
    firsts = [int(p.stem.split("-")[1]) for p in segments]
    assert firsts[0] == 1
    assert firsts == sorted(firsts)
    async with opened(FileAuditLog(tmp_path, clock, rotate_bytes=4096)) as log:
        await log.append([ev(60)])
        assert (await log.verify()).ok
        assert await log.query(AuditFilter(after_seq=55)) == [
            *stored[55:],
            *await log.query(AuditFilter(after_seq=60)),
        ]
        clock.now = T0 + 500
        report = await log.prune(T0 + 30, ev(0, action="audit.prune"))
        assert report.removed == 30
        assert (await log.verify()).ok
        assert len(sorted(tmp_path.glob("audit-*.jsonl"))) < len(segments)


async def test_time_queries_skip_segments_but_find_every_match(tmp_path: Path) -> None:
    """Segments remember their time range; the tail's grows as events arrive, and an
    event whose clock went backwards is still found."""
    clock = FakeClock()
    async with opened(FileAuditLog(tmp_path, clock, rotate_bytes=4096)) as log:
        stored = await fill(log, clock, 120)
        windows = [(T0 + 10, T0 + 12), (T0 + 50, T0 + 90), (T0 + 119, None), (None, T0 + 3)]
        for since, until in windows:
            f = AuditFilter(since=since, until=until, limit=0)
            assert await log.query(f) == [e for e in stored if f.matches(e)]
        stored += await fill(log, clock, 10, start=120)
        clock.now = T0 + 11.5
        stored += await log.append([ev(999)])
        for since, until in [*windows, (T0 + 125, T0 + 200)]:
            f = AuditFilter(since=since, until=until, limit=0)
            assert await log.query(f) == [e for e in stored if f.matches(e)]
        assert any(
            e.request_id == "req-999"
            for e in await log.query(AuditFilter(since=T0 + 11, until=T0 + 12))
        )


async def test_time_queries_read_only_the_spans_they_need(tmp_path: Path) -> None:
    """One large segment: its time index has several spans, and a query is still exact."""
    clock = FakeClock()
    stored: list[AuditEvent] = []
    async with opened(FileAuditLog(tmp_path, clock)) as log:
        for batch in range(60):
            clock.now = T0 + batch
            stored += await log.append([ev(batch * 50 + i) for i in range(50)])
            if batch == 30:
                f = AuditFilter(since=T0 + 20, until=T0 + 22, limit=0)
                assert await log.query(f) == [e for e in stored if f.matches(e)]
        for since, until in [(T0 + 3, T0 + 4), (T0 + 29, T0 + 41), (T0 + 59, None), (None, T0)]:
            f = AuditFilter(since=since, until=until, limit=0)
            assert await log.query(f) == [e for e in stored if f.matches(e)], (since, until)
        (spans,) = [len(index.spans) for index in log._time_index.values()]
        assert spans >= 2


async def test_torn_last_line_is_set_aside_and_reported(tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened(FileAuditLog(tmp_path, clock)) as log:
        await fill(log, clock, 3)
    (segment,) = tmp_path.glob("audit-*.jsonl")
    with segment.open("ab") as f:
        f.write(b'{"seq":4,"time":179')
    async with opened(FileAuditLog(tmp_path, clock)) as log:
        assert log.statistics()["torn_tails"] == 1
        (torn,) = tmp_path.glob("torn-*.partial")
        assert torn.read_bytes() == b'{"seq":4,"time":179'
        (fourth,) = await log.append([ev(3)])
        assert fourth.seq == 4
        assert (await log.verify()).ok


async def test_damaged_last_line_refuses_to_open(tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened(FileAuditLog(tmp_path, clock)) as log:
        await fill(log, clock, 2)
    (segment,) = tmp_path.glob("audit-*.jsonl")
    good = segment.read_bytes()
    segment.write_bytes(good + b"not json\n")
    refused = FileAuditLog(tmp_path, clock)
    with pytest.raises(AuditUnavailable, match=r"last event in audit-000000000001\.jsonl is not"):
        await refused.open()
    segment.write_bytes(good)
    async with opened(FileAuditLog(tmp_path, clock)) as log:
        assert (await log.verify()).ok
    with pytest.raises(AuditUnavailable, match="is not open"):
        await refused.append([ev(0)])


async def test_an_edited_line_that_no_longer_parses_is_named(tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened(FileAuditLog(tmp_path, clock)) as log:
        await fill(log, clock, 4)
    (segment,) = tmp_path.glob("audit-*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"seq": 2}\n'
    segment.write_bytes(b"".join(lines))
    async with opened(FileAuditLog(tmp_path, clock)) as log:
        report = await log.verify()
        assert len(await log.query(AuditFilter())) == 3
    assert any("line 2 is not a valid event" in p for p in report.problems), report.problems
    assert any("event 2 was deleted" in p for p in report.problems), report.problems


async def test_one_process_owns_a_directory(tmp_path: Path) -> None:
    async with opened(FileAuditLog(tmp_path, FakeClock())):
        with pytest.raises(AuditUnavailable, match="in use by another process"):
            await FileAuditLog(tmp_path, FakeClock()).open()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(AuditUnavailable, match="cannot open"):
        await FileAuditLog(not_a_dir, FakeClock()).open()


async def test_open_finishes_an_interrupted_prune(tmp_path: Path) -> None:
    """A crash after anchor.json was written but before old segments were removed."""
    clock = FakeClock()
    async with opened(FileAuditLog(tmp_path, clock, rotate_bytes=4096)) as log:
        await fill(log, clock, 40)
        saved = {p.name: p.read_bytes() for p in tmp_path.glob("audit-*.jsonl")}
        clock.now = T0 + 100
        await log.prune(T0 + 25, ev(0, action="audit.prune"))
    for name, data in saved.items():
        if not (tmp_path / name).exists():
            (tmp_path / name).write_bytes(data)
    async with opened(FileAuditLog(tmp_path, clock, rotate_bytes=4096)) as log:
        report = await log.verify()
        assert report.ok, report.problems
        assert report.first_seq == 26


async def test_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    async with opened(FileAuditLog(directory, FakeClock())) as log:
        await log.append([ev(0)])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# -- model: random appends, reopens and prunes keep a log that verifies --------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 12)),
        st.tuples(st.just("reopen"), st.just(0)),
        st.tuples(st.just("prune"), st.integers(0, 40)),
    ),
    min_size=1,
    max_size=12,
)


async def _run_model(directory: Path, ops: list[tuple[str, int]]) -> None:
    clock = FakeClock()
    model: list[AuditEvent] = []
    log = FileAuditLog(directory, clock, rotate_bytes=4096)
    await log.open()
    try:
        for op, n in ops:
            clock.now += 1
            if op == "append":
                model += await log.append([ev(len(model) + i) for i in range(n)])
            elif op == "reopen":
                await log.close()
                log = FileAuditLog(directory, clock, rotate_bytes=4096)
                await log.open()
            else:
                cutoff = min(clock.now, T0 + n)
                report = await log.prune(cutoff, ev(0, action="audit.prune"))
                removed = [e for e in model if e.time < cutoff]
                assert report.removed == len(removed)
                model = [e for e in model if e.time >= cutoff] + [report.event]
            assert await log.query(AuditFilter(limit=0)) == model
            verified = await log.verify()
            assert verified.ok, verified.problems
    finally:
        await log.close()


@settings(max_examples=25, deadline=None)
@given(OPS)
def test_inv_audit_01_random_appends_reopens_and_prunes_always_verify(
    ops: list[tuple[str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_run_model(Path(directory), ops))


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


# -- a full disk: refused, nothing acknowledged lost, and it recovers ------------------------

FULL_DISK = """
import asyncio, os, subprocess, sys, tempfile
from pathlib import Path
from edgecommon.clock import SystemClock
from hub.audit.event import AuditFilter, AuditUnavailable, NewEvent
from hub.audit.file_log import FileAuditLog

root = Path(tempfile.mkdtemp())
if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(root)]).returncode:
    root.rmdir()
    sys.exit(77)

async def main():
    log = FileAuditLog(root / "audit", SystemClock(), rotate_bytes=8192)
    await log.open()
    filler = root / "filler"
    filler.write_bytes(b"x" * 32768)
    acked, error = [], ""
    for i in range(5000):
        new = NewEvent("alice", "estop.engage", "fleet", "fleet", "attempt", f"r{i}")
        try:
            await log.append([new])
        except AuditUnavailable as exc:
            error = str(exc)
            break
        acked.append(f"r{i}")
    assert "No space left" in error and "AUTONOMY_AUDIT_DIR" in error, error
    filler.unlink()
    await log.append([NewEvent("alice", "estop.engage", "fleet", "fleet", "success", "after")])
    report = await log.verify()
    assert report.ok, report.problems
    stored = [e.request_id for e in await log.query(AuditFilter(limit=0))]
    assert stored == acked + ["after"], (len(stored), len(acked))
    assert log.statistics()["errors"] == 1
    await log.close()
    print("ok", len(acked))

try:
    asyncio.run(main())
finally:
    subprocess.run(["umount", str(root)])
    root.rmdir()
"""


def test_a_full_disk_refuses_appends_and_loses_nothing_acknowledged() -> None:
    """In a private mount namespace with a small tmpfs (needs root and unshare)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a small tmpfs in a mount namespace")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [unshare, "--mount", sys.executable, "-c", FULL_DISK],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    if done.returncode == 77:
        pytest.skip("mounting a tmpfs is not permitted here")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok ")
    assert int(done.stdout.split()[1]) > 10
