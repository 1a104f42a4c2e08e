"""The audit emitter: PostgreSQL first, the file log when it fails; nothing is lost, the
outage is reported once at each end, and only a double failure refuses events."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.audit.emitter import AuditEmitter
from hub.audit.event import AuditFilter, AuditUnavailable, NewEvent
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog
from tests.fakes import FakeClock
from tests.integration.test_audit_logs import PG_URL, ev, free_port, pg_schema
from tests.tcpproxy import TcpProxy

__all__ = ["pg_schema"]  # the fixture, imported for this module's tests

LOG = logging.getLogger("test.audit")


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A cuttable link to the test PostgreSQL server."""
    host, port = PG_URL.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    link = TcpProxy(host, int(port)).start()
    yield link
    link.stop()


def via(proxy: TcpProxy) -> str:
    user = PG_URL.split("://", 1)[1].split("@", 1)[0]
    database = PG_URL.rsplit("/", 1)[1]
    return f"postgresql://{user}@{proxy.address}/{database}"


async def test_without_postgresql_events_go_to_the_file_log(tmp_path: Path) -> None:
    emitter = AuditEmitter(None, FileAuditLog(tmp_path, FakeClock()), LOG)
    await emitter.open()
    try:
        result = await emitter.emit([ev(0), ev(1)])
        assert (result.stored_in, result.fell_back, result.error) == (f"file:{tmp_path}", False, "")
        assert [e.seq for e in result.events] == [1, 2]
        assert emitter.backend_for_reads is emitter.fallback
        assert emitter.statistics()["emitted"] == 2
    finally:
        await emitter.close()


async def test_with_postgresql_events_go_there(tmp_path: Path, pg_schema: str) -> None:
    clock = FakeClock()
    primary = PgAuditLog(PG_URL, clock, pg_schema)
    emitter = AuditEmitter(primary, FileAuditLog(tmp_path, clock), LOG, clock)
    await emitter.open()
    try:
        result = await emitter.emit([ev(0)])
        assert (result.stored_in, result.fell_back) == (primary.name, False)
        assert emitter.backend_for_reads is primary
        assert await emitter.fallback.query(AuditFilter()) == []
        assert await primary.query(AuditFilter()) == list(result.events)
    finally:
        await emitter.close()


async def test_refused_postgresql_falls_back_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    primary = PgAuditLog(f"postgresql://postgres@127.0.0.1:{free_port()}/test", clock)
    emitter = AuditEmitter(primary, FileAuditLog(tmp_path, clock), LOG, clock, retry_after_s=5)
    with caplog.at_level(logging.WARNING, logger="test.audit"):
        await emitter.open()
        try:
            results = [await emitter.emit([ev(i)]) for i in range(3)]
            clock.now += 6
            results.append(await emitter.emit([ev(3), ev(4)]))
            stats = emitter.statistics()
            stored = await emitter.fallback.query(AuditFilter())
        finally:
            await emitter.close()
    assert all(r.fell_back and r.stored_in == f"file:{tmp_path}" for r in results)
    assert all("PostgreSQL audit log postgresql://127.0.0.1" in r.error for r in results)
    assert [e.request_id for e in stored] == [f"req-{i}" for i in range(5)]
    # one failure at open, one retry after the retry interval; the events between skip it
    assert primary.statistics()["errors"] == 2
    assert (stats["fallback_events"], stats["outages"], stats["primary_failures"]) == (5, 1, 2)
    assert stats["outage_since"] == pytest.approx(1_790_000_000.0)
    assert len([r for r in caplog.records if "until it answers" in r.message]) == 1


async def test_an_outage_ends_when_postgresql_answers_again(
    tmp_path: Path, pg_schema: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    primary = PgAuditLog(via(proxy), clock, pg_schema)
    emitter = AuditEmitter(primary, FileAuditLog(tmp_path, clock), LOG, clock, retry_after_s=5)
    await emitter.open()
    try:
        assert not (await emitter.emit([ev(0)])).fell_back
        proxy.cut()
        with caplog.at_level(logging.WARNING, logger="test.audit"):
            during = [await emitter.emit([ev(i)]) for i in range(1, 4)]
            proxy.heal()
            clock.now += 6
            after = await emitter.emit([ev(4)])
        assert all(r.fell_back for r in during)
        assert not after.fell_back
        assert [e.request_id for e in await emitter.fallback.query(AuditFilter())] == [
            "req-1",
            "req-2",
            "req-3",
        ]
        assert [e.request_id for e in await primary.query(AuditFilter())] == ["req-0", "req-4"]
        assert emitter.statistics()["outage_since"] is None
        (ended,) = [r for r in caplog.records if "answers again" in r.message]
        assert "3 events were written to file:" in ended.message
        assert (await primary.verify()).ok
        assert (await emitter.fallback.verify()).ok
    finally:
        await emitter.close()


async def test_when_both_logs_fail_emit_refuses(tmp_path: Path) -> None:
    clock = FakeClock()
    primary = PgAuditLog(f"postgresql://postgres@127.0.0.1:{free_port()}/test", clock)
    fallback = FileAuditLog(tmp_path, clock)
    emitter = AuditEmitter(primary, fallback, LOG, clock)
    with pytest.raises(AuditUnavailable, match="could not be written: PostgreSQL audit log"):
        await emitter.emit([NewEvent("alice", "estop.engage", "fleet", "fleet", "attempt", "r")])
    alone = AuditEmitter(None, fallback, LOG)
    with pytest.raises(AuditUnavailable, match="is not open"):
        await alone.emit([ev(0)])
