"""Benchmark the audit log: durable appends and queries over a large log.

    .venv/bin/python bench/audit.py [--events 1000000] [--appends 4000] [--pg-url URL]
                                    [--skip-pg] [--json]

Prints (median, p99, max where it is a distribution):
  - events/s appended to the file log with durability (write + fdatasync before each
    append returns), by 1 writer and by 16 concurrent writers (group commit), and the
    latency of one append;
  - the same for PostgreSQL (committed before each append returns);
  - query time over --events events for the usual filters (operator, action, time
    range, outcome; the default page of 1000), on PostgreSQL with its indexes and on the
    file log (a scan: no index).
The large log is generated with the real chain (sealed in Python) and loaded by writing
segment files / COPY into a bench-only schema; everything is removed at the end. The
file log lives in a temporary directory on the same filesystem as the repository (not
tmpfs: fsync must reach the disk).
"""

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgecommon.clock import SystemClock  # noqa: E402
from hub.audit.chain import seal_all  # noqa: E402
from hub.audit.event import GENESIS_HASH, AuditEvent, AuditFilter, NewEvent  # noqa: E402
from hub.audit.file_log import FileAuditLog  # noqa: E402
from hub.audit.pg_log import EVENT_FIELDS, PgAuditLog, to_timestamp  # noqa: E402
from hub.audit.segments import encode, segment_name  # noqa: E402

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


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": statistics.median(ordered), "p99": p99, "max": ordered[-1], "n": len(ordered)}


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


class SteppingClock:
    """Wall time for the generated log: evenly spread over 90 days, ending now."""

    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start, step

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


async def measure_appends(
    append: Callable[[list[NewEvent]], Awaitable[list[AuditEvent]]], writers: int, total: int
) -> dict[str, object]:
    per_writer = total // writers
    latencies: list[float] = []

    async def writer(w: int) -> None:
        for i in range(per_writer):
            start = time.perf_counter()
            await append([sample_event(w * per_writer + i)])
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    return {"events_per_s": per_writer * writers / elapsed, "latency_s": stats(latencies)}


async def append_figures(
    log_factory: Callable[[Path | None], object], total: int, tmp: Path
) -> dict[str, object]:
    out: dict[str, object] = {}
    for writers in (1, 16):
        log = log_factory(tmp / f"append-{writers}")
        await log.open()
        try:
            out[f"{writers}_writers"] = await measure_appends(log.append, writers, total)
            out[f"{writers}_writers"]["batches"] = log.statistics()["batches"]
            report = await log.verify()
            if not report.ok:
                raise SystemExit(f"bench log does not verify: {report.problems[:3]}")
        finally:
            await log.close()
    return out


def generate(count: int, chunk: int = 50_000):
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


def query_cases(count: int) -> dict[str, AuditFilter]:
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


async def verify_figure(log: object) -> dict[str, object]:
    start = time.perf_counter()
    report = await log.verify()
    return {"seconds": time.perf_counter() - start, "ok": report.ok, "checked": report.checked}


async def query_figures(
    log: object, cases: dict[str, AuditFilter], repeats: int
) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, f in cases.items():
        times, found = [], 0
        for _ in range(repeats):
            start = time.perf_counter()
            found = len(await log.query(f))
            times.append(time.perf_counter() - start)
        out[name] = {"seconds": stats(times), "returned": found}
    return out


def machine() -> dict[str, object]:
    fs = subprocess.run(
        ["stat", "-f", "-c", "%T", str(ROOT)], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {"cores": os.cpu_count(), "load_average": os.getloadavg(), "filesystem": fs}


async def run(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {"machine": machine(), "events": args.events}
    clock = SystemClock()
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=ROOT.parent))
    schema = f"audit_bench_{secrets.token_hex(4)}"
    admin = None if args.skip_pg else await asyncpg.connect(args.pg_url)
    try:
        results["append_file"] = await append_figures(
            lambda d: FileAuditLog(d, clock), args.appends, tmp
        )
        if admin is not None:
            counter = iter(range(100))
            results["append_postgresql"] = await append_figures(
                lambda _d: PgAuditLog(args.pg_url, clock, f"{schema}_{next(counter)}"),
                args.appends // 2,
                tmp,
            )
            bench = PgAuditLog(args.pg_url, clock, schema)
            await bench.open()
        print(f"loading {args.events} events ...", file=sys.stderr)
        results["load_s"] = await load(args.events, tmp / "big", admin, schema)
        cases = query_cases(args.events)
        big = FileAuditLog(tmp / "big", clock)
        await big.open()
        try:
            results["query_file"] = await query_figures(big, cases, args.file_repeats)
            results["verify_file"] = await verify_figure(big)
        finally:
            await big.close()
        if admin is not None:
            try:
                results["query_postgresql"] = await query_figures(bench, cases, args.repeats)
                results["verify_postgresql"] = await verify_figure(bench)
            finally:
                await bench.close()
        results["load_average_after"] = os.getloadavg()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if admin is not None:
            for name in await admin.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{schema}%"
            ):
                await admin.execute(f"DROP SCHEMA {name['nspname']} CASCADE")
            await admin.close()
    return results


def show_verify(results: dict[str, object]) -> None:
    for backend in ("postgresql", "file"):
        fig = results.get(f"verify_{backend}")
        if fig:
            state = "ok" if fig["ok"] else "PROBLEMS"
            print(f"verify {backend}: {fig['checked']} events in {fig['seconds']:.1f} s ({state})")


def show(results: dict[str, object]) -> None:
    m = results["machine"]
    print(
        f"machine: {m['cores']} cores, load average {m['load_average'][0]:.2f} at start, "
        f"{results['load_average_after'][0]:.2f} at end; filesystem {m['filesystem']}"
    )
    for backend in ("file", "postgresql"):
        figures = results.get(f"append_{backend}")
        if not figures:
            continue
        for writers, fig in figures.items():
            lat = fig["latency_s"]
            print(
                f"append {backend:<10} {writers:<10} {fig['events_per_s']:>9.0f} events/s   "
                f"latency ms median {lat['median'] * 1e3:.2f} p99 {lat['p99'] * 1e3:.2f} "
                f"max {lat['max'] * 1e3:.2f} ({fig['batches']} writes)"
            )
    print(f"loaded {results['events']} events in {results['load_s']:.0f} s")
    print(
        f"{'query over ' + str(results['events']) + ' events':<48} {'median':>9} {'p99':>9} "
        f"{'max':>9} {'returned':>9}"
    )
    for backend in ("postgresql", "file"):
        for name, fig in (results.get(f"query_{backend}") or {}).items():
            s = fig["seconds"]
            print(
                f"{backend + ': ' + name:<48} {s['median'] * 1e3:>7.1f}ms {s['p99'] * 1e3:>7.1f}ms "
                f"{s['max'] * 1e3:>7.1f}ms {fig['returned']:>9}"
            )
    show_verify(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--file-repeats", type=int, default=3)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for name, least in (("events", 16), ("appends", 16), ("repeats", 1), ("file_repeats", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}")
    with contextlib.suppress(KeyboardInterrupt):
        results = asyncio.run(run(args))
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            show(results)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
