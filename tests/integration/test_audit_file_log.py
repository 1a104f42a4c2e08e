"""The file audit log on its own: rotation, time index, torn and damaged tails, the
directory lock, interrupted prunes, permissions, a random model of appends, reopens and
prunes, and a real full disk."""

import asyncio
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.audit.event import AuditEvent, AuditFilter, AuditUnavailable
from hub.audit.file_log import FileAuditLog
from tests.audit_support import ev, fill, opened
from tests.fakes import T0, FakeClock

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
