"""edgectl autonomy status|enable|disable: the fleet switch (the hub's file) or, with
--local, this node's switch file.

`disable`/`enable` rewrite the switch file atomically (comments kept, a change note
added) and report when the change took effect: fleet-wide once every online node applied
the new revision, or which nodes are still pending (exit 5).
"""

import argparse
import asyncio
import getpass
import time
from pathlib import Path

from edgecommon.autonomy_file import write_switch
from edgecommon.cli import exitcodes
from edgecommon.cli.output import Column, iso
from edgecommon.clock import stamp
from edgecommon.config import parse_duration
from edgecommon.errors import InvalidArgument
from edgecommon.pb import agent_pb2, fleet_pb2
from edgectl.app import App
from edgectl.clients import fleet, local_agent
from edgectl.context import agent_socket

LOCAL_POLL_S = 0.05


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autonomy", help="the autonomy switch: status, enable, disable")
    asub = p.add_subparsers(dest="autonomy_command", required=True, metavar="COMMAND")
    status = asub.add_parser("status", help="the fleet switch and each node's effective state")
    status.add_argument("--local", action="store_true", help="this node's switches")
    status.set_defaults(func=status_cmd)
    for verb in ("enable", "disable"):
        cmd = asub.add_parser(verb, help=f"{verb} autonomy fleet-wide (or on this node: --local)")
        cmd.add_argument("--reason", required=True, help="why (written into the file's note)")
        cmd.add_argument("--local", action="store_true", help="edit this node's switch file")
        cmd.add_argument(
            "--wait-timeout", default="10s", help="how long to wait for nodes to apply it (10s)"
        )
        cmd.set_defaults(func=set_cmd, enabled=verb == "enable")


def _report_data(report: fleet_pb2.AutonomyReport) -> dict[str, object]:
    return {
        "autonomy_enabled": report.autonomy_enabled,
        "source": report.source,
        "revision": report.revision,
        "error": report.error or None,
        "file": report.file,
        "changed": iso(report.changed_unix),
        "nodes": [
            {
                "node_id": n.node_id,
                "group": n.group,
                "state": n.state,
                "autonomy_effective": n.effective if n.state == "online" else None,
                "node_switch_enabled": n.node_switch_enabled if n.state == "online" else None,
                "node_switch_source": n.node_switch_source or None,
                "applied": n.applied,
                "stopped": n.stopped,
                "applied_after_ms": round(n.applied_after_s * 1000, 1) if n.applied else None,
            }
            for n in report.nodes
        ],
    }


def render(
    app: App, report: fleet_pb2.AutonomyReport, extra: dict[str, object] | None = None
) -> dict[str, object]:
    data = {**_report_data(report), **(extra or {})}
    app.out.table(
        data,
        data["nodes"],  # type: ignore[arg-type]
        [
            Column("NODE", "node_id"),
            Column("GROUP", "group"),
            Column("STATE", "state"),
            Column("EFFECTIVE", "autonomy_effective"),
            Column("NODE SWITCH", "node_switch_enabled"),
            Column("APPLIED", "applied"),
            Column("STOPPED", "stopped"),
        ],
        footer=f"fleet switch: autonomy_enabled={str(report.autonomy_enabled).lower()} "
        f"(source: {report.source}, revision {report.revision})"
        + (f"\nerror: {report.error}" if report.error else ""),
    )
    return data


async def status_cmd(app: App) -> int:
    if app.args.local:
        state = await _local_state(app)
        data = _local_data(state)
        app.out.record(
            data,
            [
                ("Effective", "enabled" if state.autonomy_effective else "disabled"),
                ("Fleet switch", f"{state.fleet_switch_enabled} ({state.fleet_switch_source})"),
                ("Node switch", f"{state.node_switch_enabled} ({state.node_switch_source})"),
                ("Stopped", state.stopped),
                ("Hub sync", ("SYNCING: " if state.syncing else "") + state.sync_detail),
            ],
        )
        return exitcodes.OK
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        report = await call(stub.AutonomyStatus, fleet_pb2.AutonomyStatusRequest())
    render(app, report)
    return exitcodes.OK


def _local_data(state: agent_pb2.EstopState) -> dict[str, object]:
    return {
        "autonomy_effective": state.autonomy_effective,
        "fleet_switch": {
            "autonomy_enabled": state.fleet_switch_enabled,
            "source": state.fleet_switch_source,
        },
        "node_switch": {
            "autonomy_enabled": state.node_switch_enabled,
            "source": state.node_switch_source,
            "file": state.node_switch_file,
        },
        "stopped": state.stopped,
        "syncing": state.syncing,
        "sync_detail": state.sync_detail,
    }


async def _local_state(app: App) -> agent_pb2.EstopState:
    socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
    async with local_agent(socket, label, app.timeout_s) as (stub, call):
        return await call(stub.GetEstop, agent_pb2.GetEstopRequest())


async def set_cmd(app: App) -> int:
    args = app.args
    try:
        wait_s = parse_duration(args.wait_timeout)
    except ValueError as exc:
        raise InvalidArgument(f"--wait-timeout: {exc}") from None
    if not args.reason.strip():
        raise InvalidArgument("--reason must say why")
    word = "enabled" if args.enabled else "disabled"
    if args.local:
        return await _set_local(app, word, wait_s)
    context = app.context
    started = time.monotonic()
    async with fleet(context, app.hub(context), app.timeout_s + wait_s) as (stub, call):
        report = await call(
            stub.SetAutonomy,
            fleet_pb2.SetAutonomyRequest(enabled=args.enabled, reason=args.reason, wait_s=wait_s),
        )
    elapsed = time.monotonic() - started
    online = [n for n in report.nodes if n.state == "online"]
    pending = [n.node_id for n in online if not n.applied]
    render(app, report, {"pending": pending})
    if pending:
        app.out.note(
            f"autonomy {word} in {report.file}, but not applied yet on: "
            f"{', '.join(pending)} (waited {args.wait_timeout})"
        )
        return exitcodes.PARTIAL
    slowest = max((n.applied_after_s for n in online), default=0.0)
    app.out.note(
        f"autonomy {word} fleet-wide: {len(online)} online nodes applied revision "
        f"{report.revision} within {slowest * 1000:.0f} ms of the change "
        f"({elapsed:.2f}s end to end)"
    )
    return exitcodes.OK


async def _set_local(app: App, word: str, wait_s: float) -> int:
    state = await _local_state(app)
    path = Path(state.node_switch_file)
    operator = app.environ.get("AUTONOMY_OPERATOR") or getpass.getuser()
    write_switch(path, app.args.enabled, app.args.reason.strip(), operator, stamp(time.time()))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        state = await _local_state(app)
        if state.node_switch_enabled == app.args.enabled and state.node_switch_source.startswith(
            "configmap:"
        ):
            data = _local_data(state)
            app.out.text(
                data,
                f"node switch {word} in {path}; effective autonomy on this node: "
                f"{'enabled' if state.autonomy_effective else 'disabled'}",
            )
            return exitcodes.OK
        await asyncio.sleep(LOCAL_POLL_S)
    app.out.note(f"wrote {path}, but the agent did not apply it within {app.args.wait_timeout}")
    return exitcodes.PARTIAL
