"""Benchmark the audit log: durable appends and queries over a large log.

    .venv/bin/python bench/audit.py [--events 1000000] [--appends 4000] [--repeats 20]
        [--file-repeats 3] [--pg-url URL] [--skip-pg]  (and harness.py's options)

Prints (median, p99, max where it is a distribution):
  - events/s appended to the file log with durability (write + fdatasync before each
    append returns), by 1 writer and by 16 concurrent writers (group commit), and the
    latency of one append;
  - the same for PostgreSQL (committed before each append returns);
  - query time over --events events for the usual filters (operator, action, time
    range, outcome; the default page of 1000), on PostgreSQL with its indexes and on the
    file log (a scan: no index);
  - `audit verify` over the large log, on each backend.
The large log is generated with the real chain (sealed in Python) and loaded by writing
segment files / COPY into a bench-only schema; everything is removed at the end. The file
log lives in the bench's temporary directory (--dir, on disk by default: not tmpfs, fsync
must reach the disk). No floor.
"""

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import harness
from harness import BenchError, Run, Section, at_least, progress

from edgecommon.clock import SystemClock
from hub.audit.chain import seal_all
from hub.audit.event import GENESIS_HASH, AuditEvent, AuditFilter, NewEvent
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import EVENT_FIELDS, PgAuditLog, to_timestamp
from hub.audit.segments import encode, segment_name

PG_URL = os.environ.get("AUTONOMY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ACTIONS = (
    "estop.engage",
    "estop.release",
    "leader.resign",
    "cert.issue",
    "enroll",
    "renew",
    "rbac.assign",
    "rbac.check",
    "autonomy.set",
    "request.denied",
    "audit.query",
    "cert.revoke",
)
ACTION_WEIGHTS = (5, 5, 3, 10, 10, 40, 3, 10, 5, 6, 2, 1)
OUTCOMES = ("success",) * 6 + ("attempt",) * 3 + ("failure", "denied")
SPAN_S = 90 * 86400.0
SEGMENT_BYTES = 64 * 1024 * 1024
SMOKE = {"events": 16, "appends": 32, "repeats": 1, "file_repeats": 1}
AuditLog = FileAuditLog | PgAuditLog


WEIGHTED = [a for a, w in zip(ACTIONS, ACTION_WEIGHTS, strict=True) for _ in range(w)]


def sample_event(i: int) -> NewEvent:
    x = ((i + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 29
    return NewEvent(
        operator=f"op{x % 50:02d}",
        action=WEIGHTED[(x >> 8) % len(WEIGHTED)],
        target=f"node:n{(x >> 20) % 1000}",
        scope=f"group:site-{(x >> 20) % 1000 // 50}",
        outcome=OUTCOMES[(x >> 40) % len(OUTCOMES)],
        request_id=f"{i:016x}",
        reason="scheduled maintenance" if i % 10 == 0 else "",
    )


def generate(count: int, chunk: int = 50_000) -> Iterator[list[AuditEvent]]:
    """Sealed events over 90 days, in chunks (the chain continues across chunks)."""
    end = time.time()
    step = SPAN_S / count
    seq, prev = 0, GENESIS_HASH
    for first in range(0, count, chunk):
        events = []
        for i in range(first, min(count, first + chunk)):
            (event,) = seal_all([sample_event(i)], seq, prev, end - SPAN_S + i * step)
            events.append(event)
            seq, prev = event.seq, event.hash
        yield events


async def load(count: int, directory: Path, pg: asyncpg.Connection | None, schema: str) -> float:
    directory.mkdir(parents=True)
    segment, size = None, 0
    start = time.perf_counter()
    try:
        for events in generate(count):
            for e in events:
                line = encode(e)
                if segment is None or size >= SEGMENT_BYTES:
                    if segment is not None:
                        segment.close()
                    segment = (directory / segment_name(e.seq)).open("wb")
                    size = 0
                segment.write(line)
                size += len(line)
            if pg is not None:
                await pg.copy_records_to_table(
                    "audit_events",
                    schema_name=schema,
                    columns=EVENT_FIELDS,
                    records=[
                        tuple(
                            to_timestamp(e.time) if f == "time" else getattr(e, f)
                            for f in EVENT_FIELDS
                        )
                        for e in events
                    ],
                )
        if pg is not None:
            last = events[-1]
            await pg.execute(
                f"UPDATE {schema}.audit_head SET seq = $1, hash = $2", last.seq, last.hash
            )
            await pg.execute(f"ANALYZE {schema}.audit_events")
    finally:
        if segment is not None:
            segment.close()
    return time.perf_counter() - start


def query_cases() -> dict[str, AuditFilter]:
    end = time.time()
    middle = end - SPAN_S / 2
    return {
        "operator": AuditFilter(operator="op07"),
        "action (rare: cert.revoke)": AuditFilter(action="cert.revoke"),
        "time range (1 h, mid-log)": AuditFilter(since=middle, until=middle + 3600),
        "outcome (denied)": AuditFilter(outcome="denied"),
        "operator+action+90 days": AuditFilter(
            operator="op07", action="enroll", since=end - SPAN_S
        ),
    }


async def measure_appends(
    append: Callable[[list[NewEvent]], Awaitable[list[AuditEvent]]], writers: int, total: int
) -> tuple[float, list[float]]:
    """Events per second and the latency of each append call, one event per call."""
    per_writer = total // writers
    latencies: list[float] = []

    async def writer(w: int) -> None:
        for i in range(per_writer):
            start = time.perf_counter()
            await append([sample_event(w * per_writer + i)])
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return per_writer * writers / (time.perf_counter() - start), latencies


async def append_figures(
    section: Section, backend: str, make: Callable[[int], AuditLog], total: int
) -> None:
    """1 and 16 concurrent writers, each on a fresh log; the log must verify afterwards."""
    for writers in (1, 16):
        log = make(writers)
        await log.open()
        try:
            rate, latencies = await measure_appends(log.append, writers, total)
            batches = log.statistics()["batches"]
            report = await log.verify()
            if not report.ok:
                raise BenchError(
                    f"the bench's {backend} log does not verify: {report.problems[:3]}"
                )
        finally:
            await log.close()
        name = f"append {backend}, {writers} writer(s)"
        section.add(f"{name}: events", "/s", harness.one(rate))
        section.add(f"{name}: latency ({batches} writes)", "ms", harness.summarize(latencies, 1e3))


async def query_figures(section: Section, backend: str, log: AuditLog, repeats: int) -> None:
    for name, audit_filter in query_cases().items():
        times, found = [], 0
        for _ in range(repeats):
            start = time.perf_counter()
            found = len(await log.query(audit_filter))
            times.append(time.perf_counter() - start)
        label = f"query {backend}: {name} ({found} returned)"
        section.add(label, "ms", harness.summarize(times, 1e3))
    start = time.perf_counter()
    report = await log.verify()
    took = time.perf_counter() - start
    if not report.ok:
        raise BenchError(f"audit verify on {backend} found problems: {report.problems[:3]}")
    section.add(f"verify {backend}: {report.checked} events", "s", harness.one(took))


async def connect_pg(run: Run) -> asyncpg.Connection | None:
    """The admin connection, or None with --skip-pg. A --smoke run without a PostgreSQL
    skips its figures with a note, as the suite's PostgreSQL tests do, unless
    AUTONOMY_TEST_PG_URL is set or CI=true (then it must answer)."""
    if run.args.skip_pg:
        return None
    try:
        return await asyncpg.connect(run.args.pg_url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        required = os.environ.get("AUTONOMY_TEST_PG_URL") or os.environ.get("CI") == "true"
        if run.args.smoke and not required:
            run.report.note(f"no PostgreSQL at {run.args.pg_url} ({exc}): its figures skipped")
            return None
        raise BenchError(f"PostgreSQL at {run.args.pg_url} does not answer: {exc}") from None


async def scenario(run: Run) -> None:
    args = run.args
    clock = SystemClock()
    schema = f"audit_bench_{secrets.token_hex(4)}"
    admin = await connect_pg(run)
    section = run.report.section(
        f"audit log on {harness.filesystem_of(run.root)}; queries over {args.events} events "
        f"({args.repeats} runs PostgreSQL, {args.file_repeats} file log)"
    )
    try:
        await append_figures(
            section,
            "file log",
            lambda w: harness.audit_log(clock, directory=run.root / f"append-{w}"),
            args.appends,
        )
        if admin is not None:
            await append_figures(
                section,
                "PostgreSQL",
                lambda w: harness.audit_log(clock, pg_url=args.pg_url, schema=f"{schema}_{w}"),
                args.appends // 2,
            )
        bench = None
        if admin is not None:  # opening it creates the bench's schema, which load fills
            bench = harness.audit_log(clock, pg_url=args.pg_url, schema=schema)
            await bench.open()
        try:
            progress(f"loading {args.events} events ...")
            took = await load(args.events, run.root / "big", admin, schema)
            section.notes.append(f"loaded {args.events} events in {took:.0f} s")
            if bench is not None:
                await query_figures(section, "PostgreSQL", bench, args.repeats)
        finally:
            if bench is not None:
                await bench.close()
        big = harness.audit_log(clock, directory=run.root / "big")
        await big.open()
        try:
            await query_figures(section, "file log", big, args.file_repeats)
        finally:
            await big.close()
    finally:
        if admin is not None:
            for name in await admin.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{schema}%"
            ):
                await admin.execute(f"DROP SCHEMA {name['nspname']} CASCADE")
            await admin.close()
    run.report.print_section(section)


def parser() -> argparse.ArgumentParser:
    p = harness.options(__doc__ or "")
    p.add_argument("--events", type=at_least(16), default=1_000_000)
    p.add_argument("--appends", type=at_least(16), default=4000)
    p.add_argument("--repeats", type=at_least(1), default=20)
    p.add_argument("--file-repeats", type=at_least(1), default=3)
    p.add_argument("--pg-url", default=PG_URL)
    p.add_argument("--skip-pg", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(harness.main(parser(), SMOKE, scenario))
