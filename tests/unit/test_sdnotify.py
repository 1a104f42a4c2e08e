"""edgecommon.sdnotify against real AF_UNIX datagram sockets and a scripted health check."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecommon.sdnotify import notify, run_watchdog, watchdog_interval

RECV_TIMEOUT_S = 5.0
MAX_WAIT_CYCLES = 1000  # bounds every wait loop below; each cycle yields ~10 ms


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = str(tmp_path / "n.sock")
    assert len(path.encode()) < 108, f"AF_UNIX path too long for this test: {path}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(RECV_TIMEOUT_S)
        yield sock, path


def test_ready_arrives_verbatim(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    message = "READY=1\nSTATUS=serving 3 workloads"

    assert notify(message, {"NOTIFY_SOCKET": path}) is True

    assert sock.recv(4096) == message.encode()


def test_abstract_socket_with_leading_at() -> None:
    name = f"autonomyops-sdnotify-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECV_TIMEOUT_S)

        assert notify("READY=1", {"NOTIFY_SOCKET": f"@{name}"}) is True

        assert sock.recv(4096) == b"READY=1"


def test_unset_notify_socket_returns_false() -> None:
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": ""}) is False


def test_default_environ_is_process_environment(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)

    assert notify("STOPPING=1") is True
    assert sock.recv(4096) == b"STOPPING=1"


def test_send_failure_returns_false_and_logs_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edgecommon.sdnotify")

    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent.sock")}) is False

    records = [r for r in caplog.records if r.name == "edgecommon.sdnotify"]
    assert [r.levelno for r in records] == [logging.DEBUG]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "1"}, 0.0000005),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_PID": "4242"}, None),
    ],
)
def test_watchdog_interval_rules(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ, pid=4242) == expected


def test_watchdog_interval_defaults_to_our_pid() -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) == 1.0
    env["WATCHDOG_PID"] = str(os.getpid() + 1)
    assert watchdog_interval(env) is None


class ScriptedHealth:
    """Health answers taken from a script; past its end it reports unhealthy and says so."""

    def __init__(self, script: list[bool | Exception]) -> None:
        self.script = list(script)
        self.calls = 0
        self.exhausted = asyncio.Event()

    def __call__(self) -> bool:
        index = self.calls
        self.calls += 1
        if index >= len(self.script):
            self.exhausted.set()
            return False
        answer = self.script[index]
        if isinstance(answer, Exception):
            raise answer
        return answer


class RecordingSend:
    def __init__(self, health: ScriptedHealth) -> None:
        self.health = health
        self.sent: list[tuple[int, str]] = []  # (health cycle, message)

    def __call__(self, message: str) -> bool:
        self.sent.append((self.health.calls - 1, message))
        return True


async def run_until_script_ends(health: ScriptedHealth, send: RecordingSend) -> None:
    task = asyncio.create_task(run_watchdog(0.01, health, send))
    for _ in range(MAX_WAIT_CYCLES):
        if health.exhausted.is_set() or task.done():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert health.exhausted.is_set(), "watchdog loop did not get through the health script"


async def test_run_watchdog_pings_only_while_healthy() -> None:
    health = ScriptedHealth([True, True, True, False, False, False, True])
    send = RecordingSend(health)

    await run_until_script_ends(health, send)

    assert send.sent == [(0, "WATCHDOG=1"), (1, "WATCHDOG=1"), (2, "WATCHDOG=1"), (6, "WATCHDOG=1")]


async def test_run_watchdog_treats_a_raising_health_check_as_unhealthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = ScriptedHealth([True, RuntimeError("db gone"), True])
    send = RecordingSend(health)

    await run_until_script_ends(health, send)

    assert [cycle for cycle, _ in send.sent] == [0, 2]
    assert "health check raised" in caplog.text


async def test_run_watchdog_never_pings_when_never_healthy() -> None:
    health = ScriptedHealth([False] * 5)
    send = RecordingSend(health)

    await run_until_script_ends(health, send)

    assert send.sent == []


async def test_run_watchdog_reraises_cancellation() -> None:
    health = ScriptedHealth([True] * 3)
    send = RecordingSend(health)
    task = asyncio.create_task(run_watchdog(3600.0, health, send))
    for _ in range(MAX_WAIT_CYCLES):
        if send.sent:
            break
        await asyncio.sleep(0.01)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert send.sent == [(0, "WATCHDOG=1")]


async def test_run_watchdog_rejects_nonpositive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await run_watchdog(0.0, lambda: True, lambda _message: True)


async def test_run_watchdog_reaches_a_real_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    sock.setblocking(False)
    loop = asyncio.get_running_loop()

    task = asyncio.create_task(
        run_watchdog(0.01, lambda: True, lambda msg: notify(msg, {"NOTIFY_SOCKET": path}))
    )
    try:
        datagram = await asyncio.wait_for(loop.sock_recv(sock, 4096), RECV_TIMEOUT_S)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert datagram == b"WATCHDOG=1"
