"""edgectl leader status|resign|pause|resume: who leads each group, and moving leadership."""

import argparse

from edgecommon.cli import exitcodes
from edgecommon.cli.output import Column
from edgecommon.config import parse_duration
from edgecommon.errors import InvalidArgument
from edgecommon.pb import agent_pb2, fleet_pb2
from edgectl.app import App
from edgectl.clients import fleet, local_agent
from edgectl.context import agent_socket


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leader", help="group leadership: status, resign, pause, resume")
    lsub = p.add_subparsers(dest="leader_command", required=True, metavar="COMMAND")
    status = lsub.add_parser("status", help="leader, epoch, time left, candidates")
    status.add_argument("--group", default="", help="one group (default: all)")
    status.add_argument("--local", action="store_true", help="this node's view of its lease")
    status.set_defaults(func=status_cmd)
    resign = lsub.add_parser("resign", help="graceful switchover to another member")
    resign.add_argument("--group", default="", help="the group (default: the only one)")
    resign.add_argument("--to", default="", metavar="NODE", help="target (default: best)")
    resign.add_argument(
        "--timeout",
        dest="resign_timeout",
        default="30s",
        help="how long to wait for the target to take over (30s)",
    )
    resign.add_argument("--dry-run", action="store_true", help="show the plan only")
    resign.set_defaults(func=resign_cmd)
    for verb, paused in (("pause", True), ("resume", False)):
        cmd = lsub.add_parser(verb, help=f"{verb} automatic failover for a group")
        cmd.add_argument("--group", required=True)
        cmd.set_defaults(func=pause_cmd, paused=paused)


def group_data(g: fleet_pb2.GroupLeadership) -> dict[str, object]:
    return {
        "group": g.group,
        "leader": g.leader or None,
        "epoch": g.epoch,
        "time_left_s": round(g.time_left_s, 2) if g.leader else None,
        "paused": g.paused,
        "switchover_to": g.switchover_to or None,
        "candidates": [
            {
                "node_id": c.node_id,
                "state": c.state,
                "eligible": c.eligible,
                "why_not": c.why_not or None,
                "position": c.position,
            }
            for c in g.candidates
        ],
    }


def render(app: App, report: fleet_pb2.LeaderReport) -> None:
    data = {"groups": [group_data(g) for g in report.groups]}
    if app.out.fmt == "json":
        app.out.json(data)
        return
    for g, d in zip(report.groups, data["groups"], strict=True):
        head = (
            f"group {g.group}: leader {g.leader} at epoch {g.epoch}, {g.time_left_s:.1f}s left"
            if g.leader
            else f"group {g.group}: NO LEADER (last epoch {g.epoch})"
        )
        if g.paused:
            head += " [paused: no automatic failover]"
        if g.switchover_to:
            head += f" [switchover to {g.switchover_to}]"
        app.out.text({}, head)
        app.out.table(
            {},
            d["candidates"],  # type: ignore[arg-type]
            [
                Column("NODE", "node_id"),
                Column("ROLE", "state"),
                Column("ELIGIBLE", "eligible"),
                Column("WHY NOT", "why_not"),
                Column("POSITION", "position"),
            ],
            footer="",
        )


async def status_cmd(app: App) -> int:
    if app.args.local:
        socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
        async with local_agent(socket, label, app.timeout_s) as (stub, call):
            view = await call(stub.LeaderStatus, agent_pb2.LeaderStatusRequest())
        data = {
            "group": view.group or None,
            "is_leader": view.is_leader,
            "epoch": view.epoch,
            "leader": view.leader or None,
            "time_left_s": round(view.time_left_s, 2),
            "reason": view.reason or None,
        }
        message = (
            f"{label} leads group {view.group} at epoch {view.epoch} ({view.time_left_s:.1f}s left)"
            if view.is_leader
            else f"{label} is a replica of group {view.group}; leader: "
            f"{view.leader or 'none'} ({view.reason})"
        )
        app.out.text(data, message)
        return exitcodes.OK
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        report = await call(stub.LeaderStatus, fleet_pb2.GroupLeaderRequest(group=app.args.group))
    render(app, report)
    return exitcodes.OK


async def _only_group(app: App, stub, call) -> str:  # type: ignore[no-untyped-def]
    if app.args.group:
        return str(app.args.group)
    report = await call(stub.LeaderStatus, fleet_pb2.GroupLeaderRequest())
    groups = [g.group for g in report.groups]
    if len(groups) != 1:
        raise InvalidArgument(f"--group is required: this fleet has groups {', '.join(groups)}")
    return groups[0]


async def resign_cmd(app: App) -> int:
    try:
        timeout_s = parse_duration(app.args.resign_timeout)
    except ValueError as exc:
        raise InvalidArgument(f"--timeout: {exc}") from None
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s + timeout_s) as (stub, call):
        group = await _only_group(app, stub, call)
        report = await call(
            stub.ResignLeader,
            fleet_pb2.ResignLeaderRequest(
                group=group, to=app.args.to, timeout_s=timeout_s, dry_run=app.args.dry_run
            ),
        )
    data = {
        "group": report.group,
        "from": report.from_leader,
        "to": report.to,
        "old_epoch": report.old_epoch,
        "new_epoch": report.new_epoch or None,
        "done": report.done,
        "dry_run": report.dry_run,
        "leaderless_ms": round(report.leaderless_s * 1000, 1) if report.done else None,
        "target_lag": report.target_lag,
        "at_risk": report.at_risk,
        "detail": report.detail,
    }
    if report.dry_run:
        message = (
            f"plan: {report.from_leader} (epoch {report.old_epoch}) hands group "
            f"{report.group} to {report.to}\n  target lag: {report.target_lag} entries; "
            f"eligible: yes\n  at risk: {report.at_risk}"
        )
    elif report.done:
        message = (
            f"{report.to} leads group {report.group} at epoch {report.new_epoch} "
            f"(was {report.from_leader} at {report.old_epoch}); leaderless for "
            f"{report.leaderless_s * 1000:.0f} ms"
        )
    else:
        message = f"switchover did not complete: {report.detail}"
    app.out.text(data, message)
    return exitcodes.OK if report.done or report.dry_run else exitcodes.FAILED


async def pause_cmd(app: App) -> int:
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        report = await call(
            stub.PauseGroup,
            fleet_pb2.PauseGroupRequest(group=app.args.group, paused=app.args.paused),
        )
    render(app, report)
    return exitcodes.OK
