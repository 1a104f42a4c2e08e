"""Running edge-hub's admin commands (hub/admin.py) for the few edgectl commands that need the
hub's own files: its CA key and store (`operator bootstrap`, `dev up`) or the audit database
read directly (`audit ... --pg-url`).

edgectl speaks to the hub only over the wire and imports no hub code (a test walks the
imports of every command). What must touch the hub's files is done by the hub's own entry
point, started here as a subprocess of the same Python (`python -m hub.main`, as `edgectl
dev up` starts the hub itself). Its output and exit codes are edgectl's (edgecommon/cli).
"""

import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str


def edge_hub_argv(words: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "hub.main", *words]


async def passthrough(words: Sequence[str], environ: Mapping[str, str], cwd: Path) -> int:
    """Run `edge-hub WORDS` on this terminal (stdin, stdout, stderr are ours, so a prompt
    works and an export streams) and return its exit code."""
    proc = await asyncio.create_subprocess_exec(*edge_hub_argv(words), env=dict(environ), cwd=cwd)
    return await proc.wait()


async def captured(words: Sequence[str], environ: Mapping[str, str], cwd: Path) -> Finished:
    """Run `edge-hub WORDS` with its output collected, for a command's inner step."""
    proc = await asyncio.create_subprocess_exec(
        *edge_hub_argv(words),
        env=dict(environ),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    code = await proc.wait()  # communicate() waited for the exit: this only reads its code
    return Finished(code, out.decode(errors="replace"), err.decode(errors="replace"))
