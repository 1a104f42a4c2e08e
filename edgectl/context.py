"""Where edgectl finds the hub, its operator credential and the node's agent.

A context is a directory holding context.json and the operator credential
(edgecommon/cli/context_dir.py). edgectl uses the first of:

  1. --context DIR, or AUTONOMY_CONTEXT
  2. .edge-dev/ in the current directory or a parent (written by `edgectl dev up`)
  3. $XDG_CONFIG_HOME/edgectl/ (default ~/.config/edgectl/, written by `edgectl login`
     and `edgectl operator bootstrap`)

The hub address is --hub, else AUTONOMY_ORCHESTRATOR_URL, else the context's.
"""

from collections.abc import Mapping
from pathlib import Path

from edgecommon.cli.context_dir import Context
from edgecommon.errors import InvalidArgument

DEV_DIR_NAME = ".edge-dev"
DEFAULT_AGENT_SOCKET = Path("/run/edge-agent/agent.sock")


def user_context_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(
        Path(environ.get("HOME", "~")).expanduser() / ".config"
    )
    return Path(base) / "edgectl"


def find_dev_dir(start: Path) -> Path | None:
    """The nearest dev fleet directory at or above `start` that this user can read (another
    user's dev fleet, 0700, is not this user's context)."""
    for directory in (start, *start.parents):
        try:
            if (directory / DEV_DIR_NAME / "context.json").exists():
                return directory / DEV_DIR_NAME
        except PermissionError:
            continue
    return None


def resolve(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> Context:
    chosen = explicit or environ.get("AUTONOMY_CONTEXT")
    directory = Path(chosen) if chosen else find_dev_dir(cwd) or user_context_dir(environ)
    context = Context.load(directory)
    context.claimed_operator = environ.get("AUTONOMY_OPERATOR", "").strip()
    return context


def hub_address(flag: str | None, environ: Mapping[str, str], context: Context) -> str:
    raw = flag or environ.get("AUTONOMY_ORCHESTRATOR_URL") or context.hub
    if not raw:
        raise InvalidArgument(
            "no hub address: pass --hub HOST:PORT, set AUTONOMY_ORCHESTRATOR_URL, or run "
            "'edgectl login' / 'edgectl dev up'"
        )
    for scheme in ("grpcs://", "https://", "dns:///"):
        raw = raw.removeprefix(scheme)
    return raw.rstrip("/")


def agent_socket(
    socket_flag: str | None, node: str | None, environ: Mapping[str, str], context: Context
) -> tuple[Path, str]:
    """The local agent's socket and a label for messages ('node-1', or the path)."""
    if socket_flag:
        return Path(socket_flag), socket_flag
    if node:
        if node not in context.agents:
            known = ", ".join(sorted(context.agents)) or "none in this context"
            raise InvalidArgument(f"no local agent for node {node!r} (known: {known})")
        return Path(context.agents[node]), node
    if environ.get("AUTONOMY_AGENT_SOCKET"):
        return Path(environ["AUTONOMY_AGENT_SOCKET"]), environ["AUTONOMY_AGENT_SOCKET"]
    if context.agents:
        first = sorted(context.agents)[0]
        return Path(context.agents[first]), first
    return DEFAULT_AGENT_SOCKET, str(DEFAULT_AGENT_SOCKET)
