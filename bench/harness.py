"""The bench harness: what every script in bench/ shares, so that each script is its scenario.

Scripts import this module only; it is the face of the harness's private modules:

    bench/_procs.py   Children and Child: every process a bench starts, stopped whatever
                      happens (Ctrl-C, SIGTERM, a failed phase); Workers: P piped workers
                      speaking bench/_worker.py's JSON-line protocol; waits; MachineWindow
    bench/_report.py  Summary (median, p99, max), Section (a table: ours beside the floor
                      measured in the same run), Report (the machine, tables, failures)
    bench/_fleet.py   Hub (a real hub in a fresh directory, with its operator), Operator
                      (the calls a bench makes), Agent (a real edge-agent), node certificates
    bench/_agents.py  simulated agents: the product's link and safety, many per process
    bench/_floor.py   the bare-gRPC floor: servers and clients with no product logic

and adds:

    simulated agents  simulated_agents(): worker processes of bench/_agents.py (the product)
                      or of bench/_floor.py's clients, N nodes with certificates the hub signed
    in-process parts  simulated_agent_parts(): a simulated agent, built by the product's
                      assembly (agent/assemble.py); audit_log(): one audit backend alone
    main()            the options every script has (--smoke, --nice, --json, --keep, ...)

A script is `sys.exit(harness.main(parser, SMOKE, scenario))`: the scenario gets a Run (its
options, a temporary directory, the children, the report; run.hub() makes a fresh hub) and
adds sections to the report. A phase that failed is reported and makes the exit status 1,
so a bench that stopped measuring the product cannot pass for one that did
(tests/integration/test_bench_smoke.py runs every script with --smoke: the smallest N, one
trial, short windows).

The product is imported from wherever Python finds it (the editable install: the working
tree, or PYTHONPATH); child processes run in the bench's temporary directory so that
PYTHONPATH, not the current directory, says which product they run.
"""

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _fleet import (
    QUICK_RECONNECT,
    RPC_TIMEOUT_S,
    Agent,
    Hub,
    NodeCert,
    fleet_groups,
    fleet_identities,
    issue_node,
    node_name,
    write_node_certs,
)
from _procs import (
    BenchError,
    Child,
    Children,
    MachineUse,
    MachineWindow,
    Workers,
    filesystem_of,
    free_port,
    listening,
    progress,
    wait_until,
)
from _report import Report, Section, Summary, one, summarize
from _worker import raise_nofile

from agent.assemble import LocalParts, build_link, build_local
from agent.config import AgentConfig, AgentSection, LinkSection, SafetySection
from agent.journal.store import JournalStore
from agent.link.hub_link import HubLink, LinkCredentials
from agent.link.hub_messages import Handler, Handlers, Reply
from agent.state_db import JOURNAL_DB, AgentStateDB
from edgecommon import grpcopts
from edgecommon.clock import Clock
from edgecommon.daemon import LOG_FORMAT
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog
from hub.config import HubConfig

__all__ = [  # what scripts use from the private modules, through this one
    "QUICK_RECONNECT",
    "RPC_TIMEOUT_S",
    "Agent",
    "BenchError",
    "Child",
    "Hub",
    "MachineUse",
    "MachineWindow",
    "NodeCert",
    "Section",
    "Summary",
    "Workers",
    "filesystem_of",
    "fleet_groups",
    "fleet_identities",
    "free_port",
    "issue_node",
    "listening",
    "one",
    "progress",
    "summarize",
    "wait_until",
    "write_node_certs",
]

BENCH_DIR = Path(__file__).resolve().parent


# --- simulated agents and the floor --------------------------------------------------------


async def simulated_agents(
    run: "Run", kind: str, n: int, target: str, hub: "Hub", **extra: Any
) -> Workers:
    """`kind` "agents" (the product, bench/_agents.py) or "clients" (the floor's), for
    the first N fleet nodes over --procs workers, with the certificates `hub` signed;
    their state under the hub's directory (fresh with the hub). `extra`: spec values."""
    names = [node_name(i) for i in range(n)]
    procs = run.args.procs
    specs = [
        {
            "target": target,
            "certs": str(hub.certs),
            "names": names[w::procs],
            "seed": w * 1_000_003 + n,
            "state_dir": str(hub.directory / kind / f"w{w}"),
            "client_options": grpcopts.client_options(private_connection=True),
            "heartbeat_s": 1.0,
            "reconnect_max_s": None,  # the product's default (the floor copies it)
            "log_level": "warning",
            "durable": False,
            "nice": 0,
        }
        | extra
        for w in range(procs)
    ]
    if kind == "agents":
        argv = [str(BENCH_DIR / "_agents.py")]
    else:
        argv = [str(BENCH_DIR / "_floor.py"), "clients"]
    name = f"{hub.directory.name}-{kind}"
    return await Workers.start(run.children, name, argv, specs, run.args.timeout)


async def start_floor_server(run: "Run", hub: "Hub", port: int) -> Child:
    """bench/_floor.py's stream server on `port`, with the hub's certificate and CA."""
    paths = hub.pki
    spec = {
        "listen": f"127.0.0.1:{port}",
        "key": str(paths.server_key),
        "cert": str(paths.server_cert),
        "ca": str(paths.ca_cert),
        "server_options": grpcopts.server_options(),
    }
    spec_file = run.root / "floor-server.json"
    spec_file.write_text(json.dumps(spec))
    argv = [str(BENCH_DIR / "_floor.py"), "server", str(spec_file)]
    server = await run.children.python("floor-server", argv, piped=True)
    await server.ready(run.args.timeout)
    return server


# --- in-process product parts ------------------------------------------------------------
#
# bench/ builds product objects in-process only through the product's own assembly
# (agent/assemble.py): simulated agents here, the divergence pair in bench/replication.py.
# What a simulated agent leaves out of edge-agent is said here and nowhere else. The one
# exception is audit_log(): it opens one audit backend alone, the thing bench/audit.py times.


async def _dropped(body: Any, reply: Reply) -> None:
    """A hub message for a part that a simulated agent does not run."""


# A simulated agent runs no lease keeper and no journal: the hub's lease nudges and
# replication plans reach it and are dropped. A new kind of hub message makes building the
# handler table fail (agent.link.hub_messages.Handlers) until a part handles it or it is
# dropped here, so the bench cannot silently simulate less than it says.
NOT_SIMULATED: dict[str, Handler] = {"lease_nudge": _dropped, "replication": _dropped}


async def _no_join_token() -> bool:
    """When the hub refuses a simulated agent's certificate: it has no join token to
    re-enroll with, so it does not (as agent.pki.enroll.reenroll answers for such a node)."""
    return False


@dataclasses.dataclass(frozen=True)
class SimulatedParts:
    """One simulated agent: the parts edge-agent builds at start, and its hub link."""

    local: LocalParts
    link: HubLink


def sim_agent_config(
    state_dir: Path, hub: str, heartbeat_s: float, reconnect_max_s: float | None
) -> AgentConfig:
    """A simulated agent's configuration: product defaults, its own state directory and hub,
    the hub's heartbeat period (the link follows the hub's answer rules), no switch file; the
    reconnect backoff's cap if given."""
    link = LinkSection(heartbeat_interval_s=heartbeat_s)
    if reconnect_max_s is not None:
        link = dataclasses.replace(link, reconnect_max_s=reconnect_max_s)
    return AgentConfig(
        agent=AgentSection(state_dir=state_dir, hub=hub),
        link=link,
        safety=SafetySection(node_switch_file=state_dir / "no-switch.yaml"),
    )


async def simulated_agent_parts(
    config: AgentConfig, db: AgentStateDB, clock: Clock, rng: random.Random
) -> SimulatedParts:
    """An enrolled node's parts as edge-agent builds them at start (agent.assemble.build_local:
    safety over `db`, the node's credentials read from its state directory), and of what
    build_node adds only the hub link, with the local parts' handlers and heartbeat."""
    # build_local shows the journal in the local status; a simulated agent serves no local
    # API and never opens it.
    journal = JournalStore(config.agent.state_dir / JOURNAL_DB, clock.wall)
    local = await build_local(config, clock, db, journal)
    creds = local.enrolled.credentials()
    if creds is None:  # build_local refuses to start unenrolled without a join token
        raise BenchError(f"no node credentials in {config.agent.state_dir}")
    link = build_link(
        config,
        rng,
        local,
        LinkCredentials(creds, local.status, config.renewal.handover_timeout_s),
        Handlers((local.safety.hub_handlers(), local.revoked.hub_handlers(), NOT_SIMULATED)),
        (local.safety.add_to_heartbeat,),
        _no_join_token,
    )
    return SimulatedParts(local, link)


def audit_log(
    clock: Clock, directory: Path | None = None, pg_url: str = "", schema: str = ""
) -> FileAuditLog | PgAuditLog:
    """The hub side: an audit log backend, as hub/server.py's open_audit builds each one —
    the file log in `directory`, or PostgreSQL at `pg_url` (in `schema`, for a bench)."""
    if directory is not None:
        return FileAuditLog(directory, clock)
    return PgAuditLog(pg_url, clock, schema)


async def wait_for_quiet(run: "Run", what: str) -> str:
    """Wait (at most --quiet-wait s) until other processes use less than --quiet-pct of a
    core over a 1 s window; a note if they never did. --quiet-wait 0: no check at all."""
    if run.args.quiet_wait <= 0:
        return ""
    deadline = time.monotonic() + run.args.quiet_wait
    said = False
    while True:
        window = MachineWindow(run.children)
        await asyncio.sleep(1.0)
        others = window.stop().others_pct
        if others <= run.args.quiet_pct:
            return ""
        if time.monotonic() >= deadline:
            return f"{what}: the machine was busy ({others:.0f}% of a core used by others)"
        if not said:
            progress(f"{what}: other processes use {others:.0f}% of a core; waiting for quiet")
            said = True


# --- the run -----------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What a scenario gets: its options, a temporary directory, the children, the report."""

    args: argparse.Namespace
    root: Path
    children: Children
    report: Report

    def hub(self, name: str, hub_keys: str = "", sections: str = "") -> Hub:
        """A fresh hub in the run's directory `name` (see _fleet.Hub.create); not started."""
        return Hub.create(self.children, self.args.timeout, name, hub_keys, sections)


Scenario = Callable[[Run], Awaitable[None]]


def options(doc: str) -> argparse.ArgumentParser:
    """A parser with the options every bench has; the script adds its own."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the smallest run of every phase, to check that the bench works (no figures)",
    )
    parser.add_argument(
        "--nice", type=int, default=10, help="run at this nice level, children too (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--dir", type=Path, default=Path("/var/tmp"), help="where the temp dir goes (on disk)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="bound per phase (s)")
    parser.add_argument(
        "--quiet-pct",
        type=float,
        default=20.0,
        help="before measuring, wait until other processes use less than this %% of a core",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=120.0, help="but wait at most this long (s)"
    )
    parser.add_argument(
        "--py-spy", default="", metavar="PATH", help="py-spy binary: dump a child that hangs"
    )
    return parser


def at_least(least: float, kind: type = int) -> Callable[[str], Any]:
    """An argparse type: a number of `kind`, at least `least`."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}")
        return value

    return parse


def become_nice(level: int) -> None:
    """Run at nice `level` (not `level` more than now): children inherit it."""
    now = os.nice(0)
    if level > now:
        os.nice(level - now)


def main(
    parser: argparse.ArgumentParser,
    smoke: dict[str, Any],
    scenario: Scenario,
    argv: list[str] | None = None,
) -> int:
    """Parse, run the scenario in one event loop, print the report; 1 if a phase failed.

    `smoke`: the option values --smoke sets (the smallest N, one trial, short windows).
    """
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update({"quiet_wait": 0.0, **smoke})
    become_nice(args.nice)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    raise_nofile()  # inherited by every child: one socket (and SQLite files) per agent
    name = Path(sys.argv[0]).stem
    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=args.dir))
    product = Path(sys.modules[HubConfig.__module__].__file__ or "?").parent.parent
    run = Run(args, root, Children(root, args.py_spy), Report(name, args.json, product))
    run.report.start()
    try:
        asyncio.run(_run(scenario, run))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; child processes stopped")
        return 130
    finally:
        run.children.kill_leftovers()
        if args.keep or run.children.dumped:
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    run.report.finish()
    return 1 if run.report.failures else 0


async def _run(scenario: Scenario, run: Run) -> None:
    """SIGTERM and SIGHUP cancel it as Ctrl-C does; every child is stopped in the loop."""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    if task is not None:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, task.cancel)
    try:
        await scenario(run)
    except BenchError as exc:
        run.report.fail(str(exc))
    finally:
        await run.children.stop_all()
        run.report.notes += run.children.stuck
