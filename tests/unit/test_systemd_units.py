"""The systemd units, sysusers.d and tmpfiles.d files under systemd/, checked by systemd's tools.

`systemd-analyze verify` reports most problems (unknown keys, unparsable values) on stderr
and still exits 0, so every check here fails on any stderr output. Its one complaint we
expect, that /usr/bin/edge-* does not exist on a development machine, is handled by
verifying a copy whose ExecStart=/ExecStartPre= point at a stub script, so that every other
warning still fails.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ("edge-hub.service", "edge-agent.service")
SYSUSERS = SYSTEMD_DIR / "sysusers.d" / "autonomyops-edge.conf"
TMPFILES = SYSTEMD_DIR / "tmpfiles.d" / "autonomyops-edge.conf"
MAX_EXPOSURE = 2.0
TOOL_TIMEOUT_S = 60
EXEC_LINE = re.compile(r"^(ExecStart(?:Pre)?=)(\S+)", re.MULTILINE)
EXPOSURE_LINE = re.compile(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?) (\w+)")

Unit = dict[str, dict[str, list[str]]]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (it comes with systemd)")
    return path


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=TOOL_TIMEOUT_S,
        check=False,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"},
    )


def parse_unit(text: str) -> Unit:
    """Sections -> key -> every assignment in order (systemd keys may repeat)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"assignment outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def last(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def sysusers_entries() -> list[list[str]]:
    lines = SYSUSERS.read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def name_to_id(db: Path) -> dict[str, int]:
    """/etc/passwd or /etc/group -> name: numeric id."""
    rows = [line.split(":") for line in db.read_text().splitlines() if line]
    return {row[0]: int(row[2]) for row in rows}


@pytest.fixture(params=UNITS)
def unit_path(request: pytest.FixtureRequest) -> Path:
    return SYSTEMD_DIR / request.param


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    path = tmp_path / "stub"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_verify_reports_nothing_but_the_missing_binaries(unit_path: Path) -> None:
    analyze = tool("systemd-analyze")
    binaries = {m.group(2) for m in EXEC_LINE.finditer(unit_path.read_text())}
    expected = {
        f"{unit_path.name}: Command {b} is not executable: No such file or directory"
        for b in binaries
        if not os.access(b, os.X_OK)
    }

    result = run(analyze, "verify", unit_path)

    assert set(result.stderr.splitlines()) == expected, result.stderr


def test_verify_is_silent_with_stubbed_binaries(
    unit_path: Path, stub: Path, tmp_path: Path
) -> None:
    analyze = tool("systemd-analyze")
    text, replaced = EXEC_LINE.subn(lambda m: f"{m.group(1)}{stub}", unit_path.read_text())
    assert replaced == 2, "expected exactly one ExecStartPre= and one ExecStart="
    copy = tmp_path / unit_path.name
    copy.write_text(text)

    result = run(analyze, "verify", copy)

    assert result.stderr == ""
    assert result.returncode == 0, result.stdout


def test_security_exposure_is_low(unit_path: Path) -> None:
    analyze = tool("systemd-analyze")

    result = run(analyze, "security", "--offline=true", unit_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    match = EXPOSURE_LINE.search(result.stdout)
    assert match is not None, result.stdout
    assert match.group(1) == unit_path.name
    assert float(match.group(2)) <= MAX_EXPOSURE, result.stdout


def test_security_threshold_agrees(unit_path: Path) -> None:
    """systemd's own threshold (score x 10) must agree with the parsed score."""
    analyze = tool("systemd-analyze")
    threshold = f"--threshold={round(MAX_EXPOSURE * 10)}"

    result = run(analyze, "security", "--offline=true", threshold, unit_path)

    assert result.returncode == 0, result.stdout


def test_unit_has_the_required_settings(unit_path: Path) -> None:
    unit = parse_unit(unit_path.read_text())

    assert last(unit, "Service", "Type") == "notify"
    assert last(unit, "Service", "NotifyAccess") == "main"
    assert last(unit, "Service", "WatchdogSec") == "30s"
    assert last(unit, "Service", "Restart") == "on-failure"
    assert last(unit, "Service", "NoNewPrivileges") == "yes"
    assert last(unit, "Service", "ProtectSystem") == "strict"
    assert last(unit, "Service", "ProtectHome") == "yes"
    assert last(unit, "Service", "PrivateTmp") == "yes"
    assert last(unit, "Service", "CapabilityBoundingSet") == ""
    assert last(unit, "Service", "AmbientCapabilities") == ""
    assert last(unit, "Service", "MemoryDenyWriteExecute") == "yes"
    assert last(unit, "Service", "UMask") == "0077"
    assert unit["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert last(unit, "Unit", "StartLimitIntervalSec") == "300"
    assert last(unit, "Unit", "StartLimitBurst") == "5"


def test_exec_start_pre_checks_the_same_config(unit_path: Path) -> None:
    unit = parse_unit(unit_path.read_text())
    daemon = unit_path.stem
    start = last(unit, "Service", "ExecStart")

    assert start.startswith(f"/usr/bin/{daemon} --config /etc/{daemon}/")
    assert last(unit, "Service", "ExecStartPre") == f"{start} --check-config"


def test_unit_user_and_group_come_from_sysusers(unit_path: Path) -> None:
    unit = parse_unit(unit_path.read_text())
    users = {fields[1] for fields in sysusers_entries() if fields[0] == "u"}

    assert last(unit, "Service", "User") == unit_path.stem
    assert last(unit, "Service", "Group") == unit_path.stem
    assert unit_path.stem in users


def test_agent_socket_directory_is_writable_and_made_by_tmpfiles() -> None:
    unit = parse_unit((SYSTEMD_DIR / "edge-agent.service").read_text())
    tmpfiles = [line.split() for line in TMPFILES.read_text().splitlines()]
    made = {fields[1]: fields for fields in tmpfiles if fields and fields[0] == "d"}

    assert last(unit, "Service", "ReadWritePaths") == "/run/edge-agent"
    assert made["/run/edge-agent"][2:5] == ["2750", "edge-agent", "edge-workloads"]


def test_sysusers_and_tmpfiles_apply_to_a_fresh_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles needs root to chown inside a scratch root")
    sysusers = tool("systemd-sysusers")
    tmpfiles = tool("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)

    made_users = run(sysusers, f"--root={root}", SYSUSERS)
    assert made_users.returncode == 0, made_users.stderr
    made_dirs = run(tmpfiles, f"--root={root}", "--create", TMPFILES)
    assert made_dirs.returncode == 0, made_dirs.stderr
    assert made_dirs.stderr == ""

    uids = name_to_id(root / "etc/passwd")
    gids = name_to_id(root / "etc/group")
    assert {"edge-hub", "edge-agent"} <= uids.keys()
    assert {"edge-hub", "edge-agent", "edge-operators", "edge-workloads"} <= gids.keys()
    for path, mode, owner, group in [
        ("etc/edge-hub", 0o750, "root", "edge-hub"),
        ("etc/edge-agent", 0o750, "root", "edge-agent"),
        ("run/edge-agent", 0o2750, "edge-agent", "edge-workloads"),
    ]:
        st = (root / path).stat()
        assert stat.S_IMODE(st.st_mode) == mode, path
        assert st.st_uid == uids.get(owner, 0), path
        assert st.st_gid == gids[group], path
