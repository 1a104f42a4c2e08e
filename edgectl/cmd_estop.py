"""edgectl estop engage|status|release: emergency stops, fleet-wide or on this node (--local).

Engaging never asks for confirmation: it is the emergency path. Releasing is the
destructive direction and asks to confirm the scope unless --force.
"""

import argparse
import getpass

from edgecommon.cli import exitcodes
from edgecommon.cli.confirm import confirm
from edgecommon.cli.output import Column, iso
from edgecommon.config import parse_duration
from edgecommon.errors import InvalidArgument
from edgecommon.pb import agent_pb2, fleet_pb2
from edgectl.app import App
from edgectl.clients import fleet, local_agent
from edgectl.context import agent_socket


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estop", help="emergency stop: engage, status, release")
    esub = p.add_subparsers(dest="estop_command", required=True, metavar="COMMAND")
    engage = esub.add_parser("engage", help="stop a scope now (no confirmation)")
    _scope_args(engage)
    engage.add_argument(
        "--wait", action="store_true", help="wait until every reachable node acknowledged"
    )
    engage.add_argument("--wait-timeout", default="30s", help="how long --wait waits (30s)")
    engage.set_defaults(func=engage_cmd)
    status = esub.add_parser("status", help="active stops and who acknowledged them")
    status.add_argument("--stop", default="", metavar="ID", help="one stop, active or not")
    status.add_argument("--local", action="store_true", help="this node's latch")
    status.add_argument(
        "--wait", action="store_true", help="wait until every reachable node acknowledged"
    )
    status.add_argument("--wait-timeout", default="30s", help="how long --wait waits (30s)")
    status.set_defaults(func=status_cmd)
    release = esub.add_parser("release", help="release the stops of a scope")
    _scope_args(release)
    release.add_argument("--force", action="store_true", help="do not ask to confirm the scope")
    release.set_defaults(func=release_cmd)


def _scope_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scope", default="", help="fleet, group:G or node:N")
    parser.add_argument("--reason", required=True, help="why (recorded with the stop)")
    parser.add_argument(
        "--local",
        action="store_true",
        help="this node only, through its agent; works with the hub unreachable",
    )


def _operator(app: App) -> str:
    return app.environ.get("AUTONOMY_OPERATOR") or getpass.getuser()


def _timeout(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidArgument(f"--wait-timeout: {exc}") from None


def stop_data(stop: fleet_pb2.Estop) -> dict[str, object]:
    nodes = [
        {
            "node_id": n.node_id,
            "group": n.group,
            "state": n.state,
            "ack_latency_ms": round(n.ack_latency_s * 1000, 1)
            if n.state == "acknowledged"
            else None,
            "acknowledged": iso(n.acked_unix),
        }
        for n in stop.nodes
    ]
    counts = {
        k: sum(1 for n in stop.nodes if n.state == k)
        for k in ("acknowledged", "pending", "unreachable")
    }
    return {
        "stop_id": stop.stop_id,
        "scope": stop.scope,
        "reason": stop.reason,
        "operator": stop.operator,
        "engaged": iso(stop.engaged_unix),
        "active": stop.active,
        "released": iso(stop.released_unix),
        "release_reason": stop.release_reason or None,
        "release_operator": stop.release_operator or None,
        "nodes": nodes,
        "summary": counts,
    }


def render_report(app: App, report: fleet_pb2.EstopReport, empty: str) -> dict[str, object]:
    data = {"stops": [stop_data(s) for s in report.stops]}
    if app.out.fmt == "json":
        app.out.json(data)
        return data
    if not report.stops:
        app.out.text(data, empty)
    for stop, d in zip(report.stops, data["stops"], strict=True):
        state = "ACTIVE" if stop.active else f"released {iso(stop.released_unix)}"
        summary = d["summary"]
        app.out.text(
            {},
            f"{stop.stop_id}  {stop.scope}  {state}  by {stop.operator} at "
            f"{iso(stop.engaged_unix)}: {stop.reason}",
        )
        app.out.table(
            {},
            d["nodes"],
            [
                Column("NODE", "node_id"),
                Column("GROUP", "group"),
                Column("STATE", "state"),
                Column("ACK MS", "ack_latency_ms"),
            ],
            footer=f"{summary['acknowledged']} acknowledged, {summary['pending']} pending, "
            f"{summary['unreachable']} unreachable\n",
        )
    return data


def _pending(report: fleet_pb2.EstopReport) -> int:
    return sum(1 for s in report.stops for n in s.nodes if n.state == "pending")


async def _wait(app: App, stub, call, stop_id: str, timeout_s: float) -> fleet_pb2.EstopReport:
    """One call that the hub answers once nothing is pending (or at the timeout)."""
    return await call(
        stub.EstopStatus, fleet_pb2.EstopStatusRequest(stop_id=stop_id, wait_s=timeout_s)
    )


def _local_data(state: agent_pb2.EstopState) -> dict[str, object]:
    return {
        "stopped": state.stopped,
        "stops": [
            {
                "stop_id": s.stop_id,
                "scope": s.scope,
                "reason": s.reason,
                "operator": s.operator or None,
                "source": s.source,
                "engaged": iso(s.engaged_unix),
                "latched": iso(s.latched_unix),
            }
            for s in state.stops
        ],
        "held_permits": state.held_permits,
    }


def render_local(app: App, state: agent_pb2.EstopState) -> None:
    data = _local_data(state)
    if app.out.fmt == "json":
        app.out.json(data)
        return
    if not state.stopped:
        app.out.text(data, "not stopped: no emergency stop is latched on this node")
        return
    app.out.table(
        data,
        data["stops"],
        [
            Column("STOP", "stop_id"),
            Column("SCOPE", "scope"),
            Column("SOURCE", "source"),
            Column("LATCHED", "latched"),
            Column("REASON", "reason"),
        ],
        footer="STOPPED: no permit is granted until every stop is released",
    )


async def engage_cmd(app: App) -> int:
    args = app.args
    if args.local:
        socket, label = agent_socket(args.socket, args.node, app.environ, app.context)
        async with local_agent(socket, label, app.timeout_s) as (stub, call):
            state = await call(
                stub.EngageLocalStop,
                agent_pb2.LocalStopRequest(reason=args.reason, operator=_operator(app)),
            )
        render_local(app, state)
        return exitcodes.OK
    if not args.scope:
        raise InvalidArgument("--scope is required: fleet, group:G or node:N (or --local)")
    wait_s = _timeout(args.wait_timeout)
    if not 0 < wait_s <= 300:
        raise InvalidArgument("--wait-timeout must be more than 0 and at most 300s")
    context = app.context
    deadline_s = app.timeout_s + (wait_s if args.wait else 0.0)
    async with fleet(context, app.hub(context), deadline_s) as (stub, call):
        report = await call(
            stub.EngageEstop, fleet_pb2.EngageEstopRequest(scope=args.scope, reason=args.reason)
        )
        stop_id = report.stops[0].stop_id
        if args.wait:
            report = await _wait(app, stub, call, stop_id, wait_s)
    render_report(app, report, "")
    if args.wait and _pending(report):
        app.out.note(f"timed out after {args.wait_timeout}: nodes still pending")
        return exitcodes.PARTIAL
    return exitcodes.OK


async def status_cmd(app: App) -> int:
    args = app.args
    if args.local:
        socket, label = agent_socket(args.socket, args.node, app.environ, app.context)
        async with local_agent(socket, label, app.timeout_s) as (stub, call):
            state = await call(stub.GetEstop, agent_pb2.GetEstopRequest())
        render_local(app, state)
        return exitcodes.OK
    wait_s = _timeout(args.wait_timeout)
    if not 0 < wait_s <= 300:
        raise InvalidArgument("--wait-timeout must be more than 0 and at most 300s")
    context = app.context
    deadline_s = app.timeout_s + (wait_s if args.wait else 0.0)
    async with fleet(context, app.hub(context), deadline_s) as (stub, call):
        if args.wait:
            report = await _wait(app, stub, call, args.stop, wait_s)
        else:
            report = await call(stub.EstopStatus, fleet_pb2.EstopStatusRequest(stop_id=args.stop))
    render_report(app, report, "no active emergency stop")
    if args.wait and _pending(report):
        app.out.note(f"timed out after {args.wait_timeout}: nodes still pending")
        return exitcodes.PARTIAL
    return exitcodes.OK


def _confirm(app: App, target: str) -> None:
    confirm(
        app.args.force,
        f"releasing {target}",
        f"Release the emergency stop on {target}? Type the scope to confirm: ",
        target,
        "nothing released",
    )


async def release_cmd(app: App) -> int:
    args = app.args
    if args.local:
        _confirm(app, "node:local")
        socket, label = agent_socket(args.socket, args.node, app.environ, app.context)
        async with local_agent(socket, label, app.timeout_s) as (stub, call):
            state = await call(
                stub.ReleaseLocalStop,
                agent_pb2.LocalStopRequest(reason=args.reason, operator=_operator(app)),
            )
        render_local(app, state)
        return exitcodes.OK
    if not args.scope:
        raise InvalidArgument("--scope is required: fleet, group:G or node:N (or --local)")
    _confirm(app, args.scope)
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        report = await call(
            stub.ReleaseEstop, fleet_pb2.ReleaseEstopRequest(scope=args.scope, reason=args.reason)
        )
    render_report(app, report, "")
    return exitcodes.OK
