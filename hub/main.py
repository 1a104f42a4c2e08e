"""edge-hub: the fleet's central service."""

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
from hub.config import HubConfig
from hub.server import SHUTDOWN_BOUND_S, serve

log = logging.getLogger("edge-hub")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edge-hub", description=__doc__)
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
    return parser.parse_args(argv)


def load_config(path: Path | None) -> HubConfig:
    return config_loader.load(HubConfig, path, os.environ)


async def run(config: HubConfig, reinitialize: bool = False) -> None:
    stop = asyncio.Event()
    install_signal_handlers(stop, "edge-hub", SHUTDOWN_BOUND_S)
    await serve(config, SystemClock(), random.Random(), stop, reinitialize)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
