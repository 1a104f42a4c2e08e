"""Every daemon exits non-zero, without a traceback, on any start-up failure: one line
that says what is wrong (the damaged-state-file cases are in test_state_files.py)."""

import datetime as dt
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgecommon import pki, tokens
from edgecommon.identity import Identity, Kind
from tests.procs import ROOT, clean_env, free_port, short_tmpdir

BOUND_S = 20.0
GRPC_CORE_LINE = re.compile(r"^[EWID]\d{4} ")  # grpc's C core logs to stderr by itself


@pytest.fixture
def root() -> Iterator[Path]:
    directory = short_tmpdir()
    yield directory
    subprocess.run(["rm", "-rf", str(directory)], check=False)


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def hub_toml(root: Path, listen: str = "", http: str = "", state: Path | None = None) -> Path:
    listen = listen or f"127.0.0.1:{free_port()}"
    lines = [
        "[hub]",
        f'state_dir = "{state or root / "hub-state"}"',
        f'listen = "{listen}"',
        f'enroll_listen = "127.0.0.1:{free_port()}"',
    ]
    if http:
        (root / "token").write_text("test-token-0123456789abcdef\n")
        lines += ["[http]", f'listen = "{http}"', f'token_file = "{root / "token"}"']
    path = root / "hub.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def a_join_token() -> str:
    """A well-formed token for a hub that is not there: the agent starts and enrolls."""
    now = dt.datetime.now(dt.UTC)
    _, ca = pki.create_ca("edge", now, dt.timedelta(days=1))
    return tokens.new_token(Identity(Kind.NODE, "node-1", "site-a"), "edge", ca).encode()


def agent_toml(
    root: Path, socket_path: Path | None = None, state: Path | None = None, token: bool = True
) -> Path:
    lines = [
        "[agent]",
        f'state_dir = "{state or root / "agent-state"}"',
        f'hub = "127.0.0.1:{free_port()}"',
        f'socket = "{socket_path or root / "a.sock"}"',
    ]
    if token:
        (root / "token").write_text(a_join_token())
        lines.append(f'join_token_file = "{root / "token"}"')
    path = root / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def a_file(root: Path) -> Path:
    path = root / "plain-file"
    path.write_text("x")
    return path


# Each case: the daemon, and its arguments built in a fresh root.
CASES: dict[str, tuple[str, Callable[[Path, int], list[str]]]] = {
    "hub: listen address in use": (
        "hub",
        lambda r, port: ["--config", str(hub_toml(r, listen=f"127.0.0.1:{port}"))],
    ),
    "hub: HTTP address in use": (
        "hub",
        lambda r, port: ["--config", str(hub_toml(r, http=f"127.0.0.1:{port}"))],
    ),
    "hub: listen address not on this host": (
        "hub",
        lambda r, port: ["--config", str(hub_toml(r, listen="192.0.2.1:7443"))],
    ),
    "hub: state dir cannot be made": (
        "hub",
        lambda r, port: ["--config", str(hub_toml(r, state=a_file(r) / "state"))],
    ),
    "hub: config file missing": ("hub", lambda r, port: ["--config", str(r / "none.toml")]),
    "hub: config path is a directory": ("hub", lambda r, port: ["--config", str(r)]),
    "agent: local socket cannot be made": (
        "agent",
        lambda r, port: ["--config", str(agent_toml(r, socket_path=a_file(r) / "a.sock"))],
    ),
    "agent: state dir cannot be made": (
        "agent",
        lambda r, port: ["--config", str(agent_toml(r, state=a_file(r) / "state"))],
    ),
    "agent: no join token and not enrolled": (
        "agent",
        lambda r, port: ["--config", str(agent_toml(r, token=False))],
    ),
    "agent: config file missing": ("agent", lambda r, port: ["--config", str(r / "none.toml")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_start_up_failure_is_one_line_and_a_non_zero_exit(
    root: Path, taken: int, case: str
) -> None:
    daemon, args = CASES[case]
    module = "hub.main" if daemon == "hub" else "agent.main"
    done = subprocess.run(
        [sys.executable, "-m", module, *args(root, taken)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=ROOT,
        timeout=BOUND_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    ours = [
        line
        for line in output.splitlines()
        if line.strip()
        and not GRPC_CORE_LINE.match(line)
        and " INFO " not in line
        and " WARNING " not in line
    ]
    assert len(ours) == 1, f"expected one line, got:\n{output}"
