"""edge-hub: the fleet's central service, and the admin commands that need its own files.

Without a command, edge-hub runs the service. The commands (hub/admin.py) run on the hub
host as the hub's user and exit: `bootstrap-operator` writes the first operator's
credential, `audit` reads or prunes the PostgreSQL audit log directly. edgectl runs them
as a subprocess for `operator bootstrap`, `audit ... --pg-url` and `dev up`.
"""

import argparse
import asyncio
import logging
import os
import random
import sys
from pathlib import Path

from edgecommon import config as config_loader
from edgecommon.clock import SystemClock
from edgecommon.daemon import install_signal_handlers, run_daemon, setup_logging
from edgecommon.errors import ConfigError
from edgecommon.version import PRODUCT_VERSION
from hub import admin
from hub.config import HubConfig

log = logging.getLogger("edge-hub")
USAGE = """edge-hub [--config hub.toml] [--check-config] [--reinitialize]
       edge-hub COMMAND ... (bootstrap-operator, audit; COMMAND --help says more)"""
DESCRIPTION = (
    "The fleet's central service; with a command, one of the admin commands that need the "
    "hub's own files (its CA key, its store, the audit database): run those on the hub host "
    "as the hub's user."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-hub", usage=USAGE, description=DESCRIPTION)
    parser.add_argument("--config", type=Path, help="hub.toml (defaults apply without one)")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    parser.add_argument(
        "--reinitialize",
        action="store_true",
        help="start even if the database is damaged or lost: move it aside (kept, renamed "
        "NAME.damaged-TIME), start with it empty and audit that; only when no backup can be "
        "restored",
    )
    parser.add_argument("--version", action="version", version=f"edge-hub {PRODUCT_VERSION}")
    # prog: the sub-commands' usage starts "edge-hub", not with the two-line USAGE above.
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="admin commands", prog="edge-hub"
    )
    admin.register(sub)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command and (args.check_config or args.reinitialize):
        parser.error("--check-config and --reinitialize are for running the service")
    return args


def load_config(path: Path | None) -> HubConfig:
    return config_loader.load(HubConfig, path, os.environ)


async def run(config: HubConfig, reinitialize: bool = False) -> None:
    # Imported here, not at the top: the service's modules take about a second to import,
    # and the admin commands (edgectl runs them as subprocesses) need none of them.
    from hub.server import SHUTDOWN_BOUND_S, serve

    stop = asyncio.Event()
    install_signal_handlers(stop, "edge-hub", SHUTDOWN_BOUND_S)
    await serve(config, SystemClock(), random.Random(), stop, reinitialize)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command:
        return admin.run(args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"edge-hub: config error: {problem}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"edge-hub: configuration OK ({args.config or 'defaults'})")
        return 0
    setup_logging(config.hub.log_level)
    return run_daemon(run(config, args.reinitialize), log)


if __name__ == "__main__":
    sys.exit(main())
