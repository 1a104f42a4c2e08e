"""The exit codes of edgectl and of edge-hub's admin commands (documented in docs/edgectl.md),
and the one mapping from the error tree (edgecommon/errors.py) to them."""

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any

from edgecommon import errors

OK = 0
FAILED = 1
USAGE = 2
UNREACHABLE = 3
DENIED = 4
PARTIAL = 5


def exit_code(exc: errors.EdgeError) -> int:
    if isinstance(exc, errors.Unreachable):
        return UNREACHABLE
    if isinstance(exc, errors.Unauthenticated | errors.PermissionDenied):
        return DENIED
    if isinstance(exc, errors.InvalidArgument | errors.ConfigError):
        return USAGE
    return FAILED


def run(prog: str, command: Coroutine[Any, Any, int]) -> int:
    """Run one command to its exit code. An EdgeError is one line on stderr naming what is
    wrong (never a traceback); Ctrl-C and a reader that went away are plain failures."""
    try:
        return asyncio.run(command)
    except errors.EdgeError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return FAILED
    except BrokenPipeError:
        # The reader went away (edgectl ... | head): say nothing more, as a pipe expects.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
