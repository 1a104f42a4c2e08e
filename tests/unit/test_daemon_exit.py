"""How a daemon ends: every failure is one line per problem and a documented exit code
(edgecommon.daemon.run_daemon), never a traceback at the default log level."""

import logging

import pytest

from edgecommon.daemon import run_daemon
from edgecommon.errors import ConfigError, StateError


async def fails(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(
    ("exc", "code", "lines"),
    [
        (StateError("state file /s/hub.db is empty (0 bytes): ..."), 1, ["state file /s/hub.db"]),
        (OSError(98, "address already in use"), 1, ["cannot run: [Errno 98]"]),
        (ConfigError(["a: wrong", "b: wrong"]), 2, ["config error: a: wrong", "config error: b"]),
        (
            ExceptionGroup("g", [OSError("socket"), ConfigError(["c: wrong"])]),
            2,
            ["cannot run: socket", "config error: c: wrong"],
        ),
        (RuntimeError("a bug"), 1, ["stopped by an unexpected error (a bug; "]),
    ],
)
def test_a_failure_is_one_line_per_problem_and_an_exit_code(
    caplog: pytest.LogCaptureFixture, exc: BaseException, code: int, lines: list[str]
) -> None:
    log = logging.getLogger("edge-test")
    with caplog.at_level(logging.INFO, logger="edge-test"):
        assert run_daemon(fails(exc), log) == code
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == len(lines), said
    for message, start in zip(said, lines, strict=True):
        assert message.startswith(start), message
    assert all(r.exc_info is None for r in caplog.records if r.levelno > logging.DEBUG)


def test_a_clean_end_is_zero() -> None:
    async def fine() -> None:
        return None

    assert run_daemon(fine(), logging.getLogger("edge-test")) == 0
