"""Real hub and agent processes on loopback for tests: start, wait, drive edgectl, stop.

Every wait is bounded; every process started is stopped by its fixture.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 30.0


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS = random.Random()  # seeded from the OS: each xdist worker draws its own sequence


def free_port() -> int:
    """A port free now and below the kernel's ephemeral range: a port the kernel handed out
    for port 0 can be handed out again (to another process's outgoing connection or port-0
    listener) before the process under test binds it; ports below the range never are."""
    high = _ephemeral_low() - 1
    for _ in range(200):
        port = _PORTS.randint(20000, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port found below the ephemeral range")


def short_tmpdir() -> Path:
    """Unix socket paths must stay under ~100 characters: pytest's tmp_path can be longer."""
    return Path(tempfile.mkdtemp(prefix="ae-", dir="/tmp"))


def wait_until(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTONOMY_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    offset: int = 0

    def start(self) -> "Proc":
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=ROOT,
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            os.kill(self.pid, signum)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout_s)
        return self.popen.returncode

    def kill(self) -> None:
        if self.running():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(10)

    def output(self) -> str:
        """What this run of the process logged (the log file is shared across restarts)."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")


@dataclass
class Fleet:
    """A hub, its operator context, and the agents a test starts."""

    root: Path
    listen: str = ""
    enroll: str = ""
    hub: Proc | None = None
    agents: dict[str, Proc] = field(default_factory=dict)
    hub_extra: str = ""
    http: str = ""

    @property
    def hub_state(self) -> Path:
        return self.root / "hub" / "state"

    @property
    def hub_toml(self) -> Path:
        return self.root / "hub" / "hub.toml"

    @property
    def context(self) -> Path:
        return self.root / "ctx"

    @property
    def fleet_switch_file(self) -> Path:
        return self.root / "hub" / "autonomy.yaml"

    @property
    def http_token_file(self) -> Path:
        return self.root / "hub" / "http-token"

    def node_switch_file(self, node: str) -> Path:
        return self.agent_dir(node) / "autonomy.yaml"

    def write_hub_config(self, extra: str = "") -> None:
        self.listen = self.listen or f"127.0.0.1:{free_port()}"
        self.enroll = self.enroll or f"127.0.0.1:{free_port()}"
        self.hub_toml.parent.mkdir(parents=True, exist_ok=True)
        self.http = self.http or f"127.0.0.1:{free_port()}"
        self.http_token_file.write_text("test-token-0123456789abcdef\n")
        self.hub_toml.write_text(
            f'[hub]\nstate_dir = "{self.hub_state}"\nlisten = "{self.listen}"\n'
            f'enroll_listen = "{self.enroll}"\n'
            f'[autonomy]\nfile = "{self.fleet_switch_file}"\n'
            f'[http]\nlisten = "{self.http}"\ntoken_file = "{self.http_token_file}"\n'
            + (extra or self.hub_extra)
        )

    def start_hub(
        self, extra: str = "", wait: bool = True, env: dict[str, str] | None = None
    ) -> Proc:
        if not self.hub_toml.exists() or extra:
            self.write_hub_config(extra)
        self.hub = Proc(
            "hub",
            [sys.executable, "-m", "hub.main", "--config", str(self.hub_toml)],
            self.root / "hub" / "hub.log",
            clean_env(**(env or {})),
        ).start()
        if wait:
            wait_until(
                "hub ready", lambda: "hub ready" in self.hub.output() or not self.hub.running()
            )
            assert self.hub.running(), self.hub.output()
        return self.hub

    def edgectl(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout_s: float = 60,
    ) -> Result:
        base = ["--context", str(self.context)] if "--context" not in args else []
        done = subprocess.run(
            [sys.executable, "-m", "edgectl.main", *base, *args],
            capture_output=True,
            text=True,
            env=env or clean_env(),
            cwd=cwd or self.root,
            timeout=timeout_s,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def bootstrap_operator(self, name: str = "admin") -> None:
        result = self.edgectl(
            "operator",
            "bootstrap",
            "--hub-config",
            str(self.hub_toml),
            "--dir",
            str(self.context),
            "--name",
            name,
        )
        assert result.code == 0, result.stderr

    def login_operator(self, name: str, role: str = "", scope: str = "fleet") -> Path:
        """Enroll operator `name` with a token from the admin context; assign `role` if
        given. Returns the new operator's context directory."""
        created = self.edgectl("--output", "json", "token", "create", "--operator", name)
        assert created.code == 0, created.stderr
        directory = self.root / f"op-{name}"
        login = self.edgectl(
            "--context",
            str(directory),
            "login",
            "--token",
            created.json["token"],
            "--hub",
            self.listen,
            "--enroll-address",
            self.enroll,
            "--dir",
            str(directory),
        )
        assert login.code == 0, login.stderr
        if role:
            assigned = self.edgectl("rbac", "assign", name, role, "--scope", scope)
            assert assigned.code == 0, assigned.stderr
        return directory

    def token(self, node: str, group: str = "site-a", ttl: str = "10m") -> str:
        result = self.edgectl(
            "--output", "json", "token", "create", "--node", node, "--group", group, "--ttl", ttl
        )
        assert result.code == 0, result.stderr
        return str(result.json["token"])

    def agent_dir(self, node: str) -> Path:
        return self.root / node

    def socket(self, node: str) -> Path:
        return self.agent_dir(node) / "a.sock"

    def write_agent_config(
        self, node: str, token: str | None, extra: str = "", safety: str = "", link: str = ""
    ) -> Path:
        d = self.agent_dir(node)
        d.mkdir(parents=True, exist_ok=True)
        lines = [
            "[agent]",
            f'state_dir = "{d / "state"}"',
            f'hub = "{self.listen}"',
            f'enroll_address = "{self.enroll}"',
            f'socket = "{self.socket(node)}"',
            f'labels = {{ rack = "r{len(self.agents) + 1}" }}',
        ]
        if token is not None:
            (d / "token").write_text(token)
            lines.append(f'join_token_file = "{d / "token"}"')
        lines.append(f"[link]\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n{link}")
        lines.append(f'[safety]\nnode_switch_file = "{self.node_switch_file(node)}"\n{safety}')
        (d / "agent.toml").write_text("\n".join(lines) + "\n" + extra)
        return d / "agent.toml"

    def start_agent(
        self,
        node: str,
        token: str | None = None,
        extra: str = "",
        config: Path | None = None,
        safety: str = "",
        link: str = "",
    ) -> Proc:
        config = config or self.write_agent_config(node, token, extra, safety, link)
        proc = Proc(
            node,
            [sys.executable, "-m", "agent.main", "--config", str(config)],
            self.agent_dir(node) / "agent.log",
            clean_env(),
        ).start()
        self.agents[node] = proc
        return proc

    def agent_status(self, node: str) -> dict[str, Any] | None:
        result = self.edgectl("--output", "json", "status", "--socket", str(self.socket(node)))
        return result.json if result.code == 0 else None

    def wait_connected(self, node: str) -> dict[str, Any]:
        def connected() -> dict[str, Any] | None:
            status = self.agent_status(node)
            return status if status and status["hub"]["state"] == "connected" else None

        return wait_until(f"{node} connected", connected)

    def fleet_status(self) -> dict[str, Any]:
        result = self.edgectl("--output", "json", "fleet", "status")
        assert result.code == 0, result.stderr
        return result.json

    def node(self, node: str) -> dict[str, Any]:
        result = self.edgectl("--output", "json", "node", "show", node)
        assert result.code == 0, result.stderr
        return result.json

    def stop(self) -> None:
        for proc in self.agents.values():
            proc.stop()
        if self.hub is not None:
            self.hub.stop()


def fleet_fixture() -> Iterator[Fleet]:
    root = short_tmpdir()
    fleet = Fleet(root)
    try:
        yield fleet
    finally:
        fleet.stop()
        if not os.environ.get("AUTONOMY_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


LOG_TAIL_LINES = 60


def log_tails(fleet: Fleet) -> list[tuple[str, str]]:
    """The last lines each process of `fleet` logged, for a failing test's report."""
    procs = ([fleet.hub] if fleet.hub is not None else []) + list(fleet.agents.values())
    tails = []
    for proc in procs:
        lines = proc.output().splitlines()[-LOG_TAIL_LINES:]
        tails.append((f"log of {proc.name} (last {len(lines)} lines)", "\n".join(lines)))
    return tails
