"""Every bench script runs at its smallest (--smoke) and prints its figures.

A bench that stops measuring the product (a renamed API, a hub that now refuses the bench's
operator, a wiring change) fails here instead of rotting silently: the harness makes a
failed phase exit 1. No timing is asserted: --smoke is the smallest N, one trial and short
windows on a shared machine. The scripts are discovered: every bench/*.py except the
harness's own modules (harness.py and the files whose name starts with "_"), so a new bench
is covered without touching this file.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT, clean_env, short_tmpdir

BENCH = ROOT / "bench"
SCRIPTS = sorted(
    p for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.name != "harness.py"
)
TIMEOUT_S = 240
# A table's header, then its rows: "figure  unit  median p99 max | floor ... | ratio".
HEADER = re.compile(r"^figure\s+unit\s+median\s+p99\s+max \|")
ROW_WITH_MEDIAN = re.compile(r"\s-?\d[\d.e+-]*\s+\S+\s+\S+\s*$")


def figure_rows(stdout: str) -> list[str]:
    """The rows of every table printed, each cut at the floor's columns."""
    rows, in_table = [], False
    for line in stdout.splitlines():
        if HEADER.match(line):
            in_table = True
        elif in_table and " | " in line:
            rows.append(line.split(" | ")[0])
        else:
            in_table = False
    return rows


def test_the_scripts_are_found() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"link.py", "estop_fanout.py", "failover.py", "audit.py"} <= names
    assert not names & {"harness.py", "_agents.py", "_floor.py", "_worker.py"}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_bench_runs_and_prints_its_figures(script: Path) -> None:
    directory = short_tmpdir()  # the agents' Unix socket paths must stay short
    try:
        run_smoke(script, directory)
        assert not list(directory.iterdir()), "the bench left its temporary directory behind"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_smoke(script: Path, directory: Path) -> None:
    env = clean_env()
    if pg_url := os.environ.get("AUTONOMY_TEST_PG_URL"):
        env["AUTONOMY_TEST_PG_URL"] = pg_url
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", "--dir", str(directory)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=TIMEOUT_S,
    )
    said = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, said
    start = rf"^bench {script.stem}: \d+ cores, nice \d+, load average [\d. /]+ at start"
    assert re.search(start, done.stdout, re.M), said
    assert re.search(r"^load average [\d. /]+ at end$", done.stdout, re.M), said
    rows = figure_rows(done.stdout)
    assert any(ROW_WITH_MEDIAN.search(row) for row in rows), said
