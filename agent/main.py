"""edge-agent: the daemon on every node."""

import argparse
import asyncio
import logging
import os
import random
import sys
import time
from pathlib import Path

from agent.assemble import NodeParts, build_local, build_node
from agent.config import AgentConfig
from agent.journal.store import JournalStore
from agent.link.hub_link import credential_problem
from agent.local.api import start_local_server
from agent.pki import credentials
from agent.pki.enroll import enroll_until_done, join_token
from agent.state_db import AGENT_DB, JOURNAL_DB, AgentStateDB, state_layout
from edgecommon import config as config_loader
from edgecommon import tokens
from edgecommon.clock import Clock, SystemClock
from edgecommon.daemon import (
    ShutdownRequested,
    announce_ready,
    announce_stopping,
    install_signal_handlers,
    listening,
    raise_when_set,
    run_daemon,
    setup_logging,
    unless_stopped,
)
from edgecommon.errors import ConfigError, EdgeError
from edgecommon.sqlite_file import prepare_async
from edgecommon.version import PRODUCT_VERSION

log = logging.getLogger("edge-agent")
GRACE_S = 2.0
# From the first SIGTERM to exit, at most: the servers' grace, the journal's last commit.
SHUTDOWN_BOUND_S = 8.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__)
    parser.add_argument("--config", type=Path, help="agent.toml (defaults apply without one)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration and the node's credentials, then exit",
    )
    parser.add_argument(
        "--reinitialize",
        action="store_true",
        help="start even if a state file is damaged or lost: move it aside (kept, renamed "
        "NAME.damaged-TIME) and start with it empty; only when no backup can be restored",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {PRODUCT_VERSION}")
    return parser.parse_args(argv)


def check(config: AgentConfig) -> str:
    """What --check-config reports; raises EdgeError for anything that would stop the agent."""
    paths = credentials.CredentialPaths.under(config.agent.state_dir)
    if paths.enrolled():
        creds = credentials.load(paths)
        problem = credential_problem(creds, time.time())
        return f"enrolled as {creds.identity}" + (f"; NOT READY: {problem}" if problem else "")
    join = tokens.parse_token(join_token(config))
    return f"not enrolled yet; will enroll as {join.subject} with token {join.token_id}"


async def serve(
    config: AgentConfig,
    clock: Clock,
    rng: random.Random,
    stop: asyncio.Event,
    reinitialize: bool = False,
) -> None:
    state_dir = config.agent.state_dir
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Refuses a damaged or lost state file before anything is opened (or reinitializes it).
    try:
        await unless_stopped(stop, prepare_async(state_layout(state_dir), reinitialize, clock.wall))
    except ShutdownRequested:
        log.info("stopped while checking the state files")
        return
    db = AgentStateDB(state_dir / AGENT_DB)
    journal = JournalStore(state_dir / JOURNAL_DB, clock.wall)
    try:
        await db.open()
        await journal.open()
        await _serve(config, clock, rng, stop, db, journal)
    finally:
        await journal.close()
        await db.close()


async def serve_journal(config: AgentConfig, node: NodeParts) -> None:
    """Serve the Peer service and follow the leader, for as long as the agent runs."""
    rep = node.replication
    try:
        await listening(f"the Peer address {config.replication.listen}", node.peer_server.start())
        log.info("journal: Peer service on %s, %d entries", rep.peer_address, rep.store.last.index)
        await node.replica.run()
    finally:
        await node.peer_server.stop(GRACE_S)


async def _serve(
    config: AgentConfig,
    clock: Clock,
    rng: random.Random,
    stop: asyncio.Event,
    db: AgentStateDB,
    journal: JournalStore,
) -> None:
    local = await build_local(config, clock, db, journal)
    server = await listening(
        f"the local socket {config.agent.socket}",
        start_local_server(
            config.agent.socket, config.agent.socket_mode, local.facts, config.local
        ),
    )
    log.info("local API on %s", config.agent.socket)

    async def connect_to_hub() -> None:
        paths = credentials.CredentialPaths.under(config.agent.state_dir)
        creds = local.enrolled.credentials()
        if creds is None:
            creds = await enroll_until_done(config, local.join_token, paths, local.status, rng)
        local.status.credential_problem = credential_problem(creds, clock.wall())
        node = build_node(config, clock, rng, local, journal, creds)
        local.enrolled.publish(node.enrolled())
        async with asyncio.TaskGroup() as tg:
            tg.create_task(node.link.run(), name="hub-link")
            tg.create_task(node.keeper.run(), name="lease")
            tg.create_task(node.renewer.run(), name="renewal")
            tg.create_task(serve_journal(config, node), name="journal")

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(local.safety.run(), name="safety")
            link_task = tg.create_task(connect_to_hub(), name="hub-link")
            announce_ready("serving the local API", tg, lambda: not link_task.done())
            tg.create_task(raise_when_set(stop), name="shutdown")
    except* ShutdownRequested:
        announce_stopping()
    finally:
        await server.stop(GRACE_S)
        config.agent.socket.unlink(missing_ok=True)
        log.info("agent stopped")


async def run(config: AgentConfig, reinitialize: bool = False) -> None:
    stop = asyncio.Event()
    install_signal_handlers(stop, "edge-agent", SHUTDOWN_BOUND_S)
    await serve(config, SystemClock(), random.Random(), stop, reinitialize)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_loader.load(AgentConfig, args.config, os.environ)
        if args.check_config:
            print(f"edge-agent: configuration OK ({args.config or 'defaults'}); {check(config)}")
            return 0
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"edge-agent: config error: {problem}", file=sys.stderr)
        return 2
    except EdgeError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    setup_logging(config.agent.log_level)
    return run_daemon(run(config, args.reinitialize), log)


if __name__ == "__main__":
    sys.exit(main())
