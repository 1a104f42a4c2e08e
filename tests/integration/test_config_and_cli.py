"""Daemon configuration errors, edgectl usage, operator login and the dev fleet."""

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.procs import ROOT, Fleet, clean_env


def run_daemon(module: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("module", "text", "expected"),
    [
        ("hub.main", "[hub]\nlisten_port = 1\n", "unknown key [hub].listen_port"),
        ("hub.main", "[hub]\nlisten = 7443\n", "[hub].listen: expected a string, got 7443"),
        ("hub.main", "[link]\nheartbeat_interval_s = -1\n", "expected a number greater than 0"),
        ("hub.main", "[hubb]\n", "unknown section [hubb]"),
        ("hub.main", "[hub\n", "not valid TOML"),
        ("hub.main", "[link]\noffline_after_s = 0.5\n", "offline_after_s must be greater"),
        ("hub.main", "[lease]\nttl_s = 3\nrenew_interval_s = 2\n", "timing rule broken"),
        ("hub.main", "[lease]\nttl_s = 1\n", "[lease].ttl_s: expected a number >= 2.0"),
        ("agent.main", "[agent]\nhub = 'nowhere'\n", "[agent].hub: expected HOST:PORT"),
        ("agent.main", "[agent]\nlabels = 3\n", "[agent].labels: expected a table of strings"),
        (
            "agent.main",
            "[link]\nreconnect_max_s = 'x'\n",
            "[link].reconnect_max_s: expected a number",
        ),
    ],
)
def test_malformed_config_stops_the_daemon_with_one_line(
    tmp_path: Path, module: str, text: str, expected: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    done = run_daemon(module, "--config", str(config))
    assert done.returncode == 2
    assert expected in done.stderr
    assert str(config) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[hub]\nlisten = 1\ntrust_domain = 'UPPER'\n[link]\nfoo = 1\n")
    done = run_daemon("hub.main", "--config", str(config))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 3


def test_environment_overrides_are_validated(tmp_path: Path) -> None:
    done = run_daemon(
        "hub.main", "--check-config", env=clean_env(AUTONOMY_LINK_HEARTBEAT_INTERVAL_S="fast")
    )
    assert done.returncode == 2
    assert "AUTONOMY_LINK_HEARTBEAT_INTERVAL_S" in done.stderr
    good = run_daemon(
        "hub.main", "--check-config", env=clean_env(AUTONOMY_LINK_HEARTBEAT_INTERVAL_S="0.5")
    )
    assert good.returncode == 0, good.stderr


def test_agent_check_config_reports_missing_token(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    done = run_daemon("agent.main", "--config", str(config), "--check-config")
    assert done.returncode == 2
    assert "not enrolled and has no join token" in done.stderr


def test_edgectl_usage_errors_exit_2(fleet: Fleet) -> None:
    assert fleet.edgectl("no-such-command").code == 2
    assert (
        fleet.edgectl("token", "create", "--node", "n", "--group", "g", "--ttl", "soon").code == 2
    )
    assert fleet.edgectl("--timeout", "0", "status").code == 2


def test_edgectl_unreachable_hub_exits_3(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.hub.stop()
    result = fleet.edgectl("fleet", "status", "--timeout", "2")
    assert result.code == 3
    assert "unreachable" in result.stderr


def test_further_operator_logs_in_with_a_token(running_fleet: Fleet) -> None:
    fleet = running_fleet
    created = fleet.edgectl("--output", "json", "token", "create", "--operator", "bob")
    assert created.code == 0, created.stderr
    bob = fleet.root / "bob"
    login = fleet.edgectl(
        "--context",
        str(bob),
        "login",
        "--token",
        created.json["token"],
        "--hub",
        fleet.listen,
        "--enroll-address",
        fleet.enroll,
        "--dir",
        str(bob),
    )
    assert login.code == 0, login.stderr
    who = fleet.edgectl("--context", str(bob), "--output", "json", "operator", "whoami")
    assert who.code == 0, who.stderr
    assert who.json["operator"] == "bob"
    again = fleet.edgectl(
        "--context",
        str(bob),
        "login",
        "--token",
        created.json["token"],
        "--hub",
        fleet.listen,
        "--dir",
        str(bob),
    )
    assert again.code == 2
    assert "--force" in again.stderr


def test_edge_hub_bootstraps_an_operator_and_edgectl_bootstrap_runs_it(fleet: Fleet) -> None:
    fleet.start_hub()
    direct = fleet.root / "direct"
    done = run_daemon(
        "hub.main",
        "bootstrap-operator",
        "--config",
        str(fleet.hub_toml),
        "--name",
        "alice",
        "--dir",
        str(direct),
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert written == {
        "operator": "alice",
        "context": str(direct),
        "hub": fleet.listen,
        "role": "admin",
    }
    assert sorted(p.name for p in direct.iterdir()) == [
        "ca.crt",
        "context.json",
        "operator.crt",
        "operator.key",
    ]
    assert (direct / "operator.key").stat().st_mode & 0o777 == 0o600
    who = fleet.edgectl("--context", str(direct), "-o", "json", "operator", "whoami")
    assert who.code == 0, who.stderr
    assert who.json["operator"] == "alice"

    words = ("operator", "bootstrap", "--hub-config", str(fleet.hub_toml), "--dir", str(direct))
    again = fleet.edgectl(*words, "--name", "bob")
    assert again.code == 2
    assert "--force" in again.stderr
    replaced = fleet.edgectl(*words, "--name", "bob", "--force")
    assert replaced.code == 0, replaced.stderr
    assert f"operator bob credential written to {direct}" in replaced.stdout
    who = fleet.edgectl("--context", str(direct), "-o", "json", "operator", "whoami")
    assert who.json["operator"] == "bob"


def test_autonomy_is_the_same_cli(tmp_path: Path) -> None:
    autonomy = Path(sys.executable).with_name("autonomy")
    if not autonomy.exists():
        pytest.skip("console scripts are not installed in this environment")
    done = subprocess.run([str(autonomy), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "fleet" in done.stdout


def test_dev_up_runs_a_fleet_and_dev_down_leaves_nothing_running(fleet: Fleet) -> None:
    work = fleet.root / "work"
    work.mkdir()
    env = clean_env(HOME=str(fleet.root / "home"))
    up = fleet.edgectl(
        "--context",
        str(work / ".edge-dev"),
        "--output",
        "json",
        "dev",
        "up",
        "--nodes",
        "2",
        cwd=work,
        env=env,
        timeout_s=120,
    )
    assert up.code == 0, up.stderr
    pids = [p["pid"] for p in up.json["processes"]]
    assert len(pids) == 3
    try:
        # No --context from here on: edgectl finds the dev fleet from the directory.
        status = subprocess.run(
            [sys.executable, "-m", "edgectl.main", "--output", "json", "fleet", "status"],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        nodes = json.loads(status.stdout)["nodes"]
        assert sorted(n["node_id"] for n in nodes) == ["node-1", "node-2"]
        node = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgectl.main",
                "--output",
                "json",
                "status",
                "--node",
                "node-2",
            ],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=60,
        )
        assert json.loads(node.stdout)["node_id"] == "node-2"
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "edgectl.main", "dev", "down"],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=60,
        )
    assert down.returncode == 0, down.stderr
    assert not [
        pid
        for pid in pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
