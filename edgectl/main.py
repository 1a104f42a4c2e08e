"""edgectl (also `autonomy`): the operator CLI.

Node commands talk to the local agent's socket; fleet commands to the hub with the
operator's credential. Exit codes: 0 ok, 1 failed, 2 usage, 3 unreachable, 4 denied,
5 partial.
"""

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edgecommon.cli import exitcodes
from edgecommon.cli.output import Renderer
from edgecommon.version import PRODUCT_VERSION
from edgectl.app import App

EPILOG = (
    "exit codes: 0 ok, 1 failed, 2 usage, 3 unreachable, 4 denied, 5 partial. "
    "Hub address: --hub or AUTONOMY_ORCHESTRATOR_URL or the current context."
)
GLOBAL_DEFAULTS: dict[str, object] = {
    "output": "table",
    "hub": None,
    "context": None,
    "node": None,
    "socket": None,
    "timeout": 10.0,
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(exitcodes.USAGE, f"{self.prog}: error: {message}\n")


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes, before or after the command words. A command that
    gives one of these names its own meaning (token create --node) keeps its own."""
    taken = set(parser._option_string_actions)

    def default(name: str) -> object:
        return argparse.SUPPRESS if suppress else GLOBAL_DEFAULTS[name]

    class _Guard:
        def add_argument(self, *flags: str, **kwargs: object) -> None:
            if not taken.intersection(flags):
                parser.add_argument(*flags, **kwargs)  # type: ignore[arg-type]

    guard = _Guard()
    guard.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default=default("output"),
        help="table for people (default), json for scripts",
    )
    guard.add_argument(
        "--hub",
        default=default("hub"),
        help="hub address HOST:PORT (default: AUTONOMY_ORCHESTRATOR_URL or the context's)",
    )
    guard.add_argument(
        "--context",
        default=default("context"),
        help="context directory (default: ./.edge-dev if present, else ~/.config/edgectl)",
    )
    guard.add_argument(
        "--node",
        default=default("node"),
        help="for node commands: which local agent of the context",
    )
    guard.add_argument(
        "--socket", default=default("socket"), help="for node commands: the agent's socket path"
    )
    guard.add_argument(
        "--timeout",
        type=float,
        default=default("timeout"),
        help="deadline in seconds for each call (default 10)",
    )


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for child in subs[0].choices.values() for leaf in leaf_parsers(child)]


# Command words and the module that registers each, in help order. Only the module of the
# command being run is imported: a command should not pay for every other's dependencies
# (PostgreSQL driver, hub store, psutil): edgectl is run in loops during incidents.
COMMAND_MODULES = {
    "status": "cmd_node",
    "fleet": "cmd_fleet",
    "node": "cmd_fleet",
    "token": "cmd_token",
    "estop": "cmd_estop",
    "autonomy": "cmd_autonomy",
    "permit": "cmd_permit",
    "leader": "cmd_leader",
    "operator": "cmd_operator",
    "login": "cmd_operator",
    "rbac": "cmd_rbac",
    "audit": "cmd_audit",
    "dev": "cmd_dev",
    "cert": "cmd_cert",
    "ca": "cmd_ca",
    "journal": "cmd_journal",
    "quorum": "cmd_quorum",
    "replica": "cmd_replica",
}
VALUE_OPTIONS = frozenset(
    {"--output", "-o", "--hub", "--context", "--node", "--socket", "--timeout"}
)


def command_word(argv: Sequence[str]) -> str | None:
    """The command being run: the first word that is neither an option nor its value."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in VALUE_OPTIONS:
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def _modules_for(only: str | None) -> list[str]:
    if only in COMMAND_MODULES:
        return [COMMAND_MODULES[only]]
    return list(dict.fromkeys(COMMAND_MODULES.values()))


def build_parser(prog: str = "edgectl", only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or only for command word `only` (faster to start)."""
    parser = Parser(prog=prog, description=__doc__, epilog=EPILOG)
    add_global_options(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"edgectl {PRODUCT_VERSION}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for name in _modules_for(only):
        importlib.import_module(f"edgectl.{name}").register(sub)
    for leaf in leaf_parsers(parser):
        add_global_options(leaf, suppress=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    prog = Path(sys.argv[0]).name if argv is None else "edgectl"
    prog = prog if prog in ("edgectl", "autonomy") else "edgectl"
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(prog, command_word(words)).parse_args(words)
    if args.timeout <= 0:
        print(f"{prog}: error: --timeout must be greater than 0", file=sys.stderr)
        return exitcodes.USAGE
    app = App(args, Renderer(args.output), os.environ, Path.cwd())
    return exitcodes.run(prog, args.func(app))


if __name__ == "__main__":
    sys.exit(main())
