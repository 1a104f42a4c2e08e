"""edgectl quorum status|restore: the journal's sync replicas per group."""

import argparse

from edgecommon.cli import exitcodes
from edgecommon.cli.output import Column
from edgecommon.pb import replication_pb2
from edgectl.app import App
from edgectl.clients import replication


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quorum", help="journal quorum: status, restore")
    qsub = p.add_subparsers(dest="quorum_command", required=True, metavar="COMMAND")
    status = qsub.add_parser("status", help="members, sync set, lag, quorum met or not and why")
    status.add_argument("--group", required=True)
    status.set_defaults(func=status_cmd)
    restore = qsub.add_parser(
        "restore", help="replace lost sync replicas with caught-up ones, or say what blocks it"
    )
    restore.add_argument("--group", required=True)
    restore.add_argument("--dry-run", action="store_true", help="show the plan only")
    restore.set_defaults(func=restore_cmd)


def report_data(r: replication_pb2.QuorumReport) -> dict[str, object]:
    data: dict[str, object] = {
        "group": r.group,
        "leader": r.leader or None,
        "epoch": r.epoch,
        "min_sync_replicas": r.min_sync,
        "strict": r.strict,
        "met": r.met,
        "reason": r.reason,
        "sync_set": list(r.sync_set),
        "commit_index": r.commit_index,
        "members": [
            {
                "node_id": m.node_id,
                "role": m.role,
                "online": m.online,
                "healthy": m.healthy,
                "last_index": m.last_index,
                "lag_entries": m.lag_entries if m.role != "leader" else None,
                "lag_s": round(m.lag_s, 3) if m.role != "leader" else None,
                "eligible": m.eligible,
                "why": m.why or None,
            }
            for m in r.members
        ],
    }
    if r.min_sync == 0:
        data["max_async_lag_entries"] = r.max_async_lag_entries
    return data


def render(app: App, r: replication_pb2.QuorumReport, data: dict[str, object]) -> None:
    if app.out.fmt == "json":
        app.out.json(data)
        return
    mode = f"sync, min {r.min_sync}" if r.min_sync else "async"
    strict = ", strict" if r.strict and r.min_sync else ""
    app.out.text(
        {},
        f"group {r.group}: leader {r.leader or 'NONE'} (epoch {r.epoch}), {mode}{strict}, "
        f"commit index {r.commit_index}\nquorum {'MET' if r.met else 'NOT MET'}: {r.reason}",
    )
    app.out.table(
        {},
        data["members"],  # type: ignore[arg-type]
        [
            Column("NODE", "node_id"),
            Column("ROLE", "role"),
            Column("HEALTHY", "healthy"),
            Column("LAST", "last_index"),
            Column("LAG", "lag_entries"),
            Column("LAG_S", "lag_s"),
            Column("ELIGIBLE", "eligible"),
            Column("WHY", "why"),
        ],
    )


async def status_cmd(app: App) -> int:
    context = app.context
    async with replication(context, app.hub(context), app.timeout_s) as (stub, call):
        report = await call(stub.QuorumStatus, replication_pb2.QuorumRequest(group=app.args.group))
    render(app, report, report_data(report))
    return exitcodes.OK


async def restore_cmd(app: App) -> int:
    context = app.context
    async with replication(context, app.hub(context), app.timeout_s) as (stub, call):
        report = await call(
            stub.RestoreQuorum,
            replication_pb2.QuorumRequest(group=app.args.group, dry_run=app.args.dry_run),
        )
    data = report_data(report)
    data.update(restore=report.restore, added=list(report.added), removed=list(report.removed))
    blocked = report.restore.startswith(("cannot", "no leader", "async"))
    if app.out.fmt != "json":
        app.out.text({}, f"restore: {report.restore}")
    render(app, report, data)
    return exitcodes.FAILED if blocked else exitcodes.OK
