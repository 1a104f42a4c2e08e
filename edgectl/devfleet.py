"""A dev fleet on loopback: one hub and N agents of one group, under .edge-dev/.

    .edge-dev/context.json, operator.key, operator.crt, ca.crt   the edgectl context
    .edge-dev/processes.json                                     what `dev down` stops
    .edge-dev/hub/{hub.toml,hub.log,state/}
    .edge-dev/<node>/{agent.toml,agent.log,join-token,agent.sock,state/}

Processes are started detached (their own session) and recorded with their start time,
so `dev down` stops exactly them and never a process that reused a pid.

hub.toml is written by `dev up` and read back here with tomllib, only for the addresses and
the state directory `dev up` put there: edgectl does not import the hub's config loader.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from edgecommon import pki
from edgecommon.errors import EdgeError

STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Managed:
    name: str
    pid: int
    create_time: float
    log: str


@dataclass(frozen=True)
class DevHub:
    """Where the dev hub listens and keeps its state, as `dev up` wrote it into hub.toml."""

    file: Path
    state_dir: Path
    listen: str
    enroll_listen: str
    http_listen: str

    @property
    def ca_cert(self) -> Path:
        """The hub's CA certificate, written under its state directory at its first start."""
        return self.state_dir / "pki" / "ca.crt"

    @classmethod
    def read(cls, file: Path) -> "DevHub":
        try:
            data = tomllib.loads(file.read_text())
            hub, http = data["hub"], data["http"]
            return cls(
                file,
                Path(hub["state_dir"]),
                str(hub["listen"]),
                str(hub["enroll_listen"]),
                str(http["listen"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EdgeError(
                f"{file} is not the dev hub's file as 'edgectl dev up' writes it ({exc!r}); "
                "'edgectl dev down --purge' starts over"
            ) from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether a server could listen on the port (as grpc does, with SO_REUSEADDR, so that
    connections of a previous run in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ProcessTable:
    def __init__(self, directory: Path) -> None:
        self.file = directory / "processes.json"

    def load(self) -> list[Managed]:
        try:
            return [Managed(**p) for p in json.loads(self.file.read_text())]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError) as exc:
            raise EdgeError(f"{self.file} is corrupt ({exc}); stop the processes by hand") from None

    def save(self, processes: list[Managed]) -> None:
        data = json.dumps([asdict(p) for p in processes], indent=2) + "\n"
        pki.atomic_write(self.file, data.encode(), 0o600)

    def clear(self) -> None:
        self.file.unlink(missing_ok=True)


def alive(p: Managed) -> bool:
    try:
        proc = psutil.Process(p.pid)
        return (
            abs(proc.create_time() - p.create_time) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return False


def start(name: str, argv: list[str], log: Path, cwd: Path) -> Managed:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Managed(name, proc.pid, psutil.Process(proc.pid).create_time(), str(log))


def python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def stop_all(processes: list[Managed], timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """SIGTERM every live managed process, SIGKILL what is left after `timeout_s`."""
    running = [p for p in processes if alive(p)]
    for p in running:
        os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in running):
        time.sleep(0.05)
    killed = []
    for p in running:
        if alive(p):
            os.kill(p.pid, signal.SIGKILL)
            killed.append(p.name)
    return killed


def log_tail(path: str, lines: int = 5) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
