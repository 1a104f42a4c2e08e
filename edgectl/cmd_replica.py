"""edgectl replica status|divergence|recover: this node's copy of the journal."""

import argparse

from edgecommon.cli import exitcodes
from edgecommon.cli.output import Column
from edgecommon.pb import replication_pb2
from edgectl.app import App
from edgectl.clients import local_journal, replication
from edgectl.context import agent_socket


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replica", help="journal replicas: status, divergence, recover")
    rsub = p.add_subparsers(dest="replica_command", required=True, metavar="COMMAND")
    status = rsub.add_parser("status", help="this node's journal: role, position, leader, lag")
    status.set_defaults(func=status_cmd)
    div = rsub.add_parser("divergence", help="nodes whose journal parted from the leader's")
    div.add_argument("--group", default="", help="one group (default: all)")
    div.set_defaults(func=divergence_cmd)
    recover = rsub.add_parser(
        "recover", help="recover the local agent's journal (choose the node with --node)"
    )
    recover.add_argument("--strategy", required=True, help="rewind or resync")
    recover.add_argument("--dry-run", action="store_true", help="show what would happen")
    recover.set_defaults(func=recover_cmd)


async def status_cmd(app: App) -> int:
    socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
    async with local_journal(socket, label, app.timeout_s) as (stub, call):
        s = await call(stub.ReplicaStatus, replication_pb2.ReplicaStatusRequest())
    replicas = [
        {
            "node_id": r.node_id,
            "durable_index": r.durable_index,
            "lag_entries": r.lag_entries,
            "lag_s": round(r.lag_s, 3),
            "last_pull_age_s": round(r.last_pull_age_s, 3),
            "sync": r.in_sync_set,
        }
        for r in s.replicas
    ]
    data = {
        "node_id": s.node_id,
        "group": s.group,
        "role": s.role,
        "last_index": s.last_index,
        "last_epoch": s.last_epoch,
        "last_hash": s.last_hash.hex(),
        "commit_index": s.commit_index,
        "leader": s.leader or None,
        "leader_address": s.leader_address or None,
        "leader_last_index": s.leader_last_index,
        "peer_address": s.peer_address,
        "diverged_at": s.diverged_at or None,
        "detail": s.detail or None,
        "bad_peer": s.bad_peer or None,
        "sync_set": list(s.sync_set),
        "min_sync_replicas": s.min_sync,
        "strict": s.strict,
        "replicas": replicas,
    }
    if app.out.fmt == "json":
        app.out.json(data)
        return exitcodes.OK
    app.out.record(
        data,
        [
            ("node", f"{s.node_id} (group {s.group})"),
            ("role", s.role),
            (
                "journal",
                f"last index {s.last_index}, epoch {s.last_epoch}, hash {s.last_hash.hex()[:16]}",
            ),
            ("leader", f"{s.leader or 'none'} at {s.leader_address or '-'}"),
            ("sync set", ", ".join(s.sync_set) or "-"),
            ("min sync", f"{s.min_sync}{' (strict)' if s.strict and s.min_sync else ''}"),
            ("diverged at", s.diverged_at or "-"),
            ("detail", s.detail or "-"),
            ("bad peer", s.bad_peer or "-"),
            ("peer address", s.peer_address),
        ],
    )
    if replicas:
        app.out.table(
            {},
            replicas,
            [
                Column("REPLICA", "node_id"),
                Column("SYNC", "sync"),
                Column("DURABLE", "durable_index"),
                Column("LAG", "lag_entries"),
                Column("LAG_S", "lag_s"),
                Column("LAST_PULL_S", "last_pull_age_s"),
            ],
        )
    return exitcodes.OK


async def divergence_cmd(app: App) -> int:
    context = app.context
    async with replication(context, app.hub(context), app.timeout_s) as (stub, call):
        report = await call(stub.Divergence, replication_pb2.QuorumRequest(group=app.args.group))
    rows = [
        {
            "node_id": r.node_id,
            "group": r.group,
            "role": r.role,
            "online": r.online,
            "last_index": r.last_index,
            "diverged_at": r.diverged_at or None,
            "bad_peer": r.bad_peer or None,
            "refused_report": r.refused_report or None,
        }
        for r in report.replicas
    ]
    diverged = [
        {
            "node_id": n.node_id,
            "group": n.group,
            "diverged_at": n.diverged_at,
            "last_index": n.last_index,
            "detail": n.detail,
        }
        for n in report.nodes
    ]
    refused = [
        f"{r['node_id']}: hub refused its report: {r['refused_report']}"
        for r in rows
        if r["refused_report"]
    ]
    footer = (
        "\n".join(f"{d['node_id']}: {d['detail']}" for d in diverged)
        + "\nrecover with: edgectl replica recover --node NODE --strategy rewind|resync"
        if diverged
        else "no divergence"
    ) + "".join(f"\n{line}" for line in refused)
    app.out.table(
        {"diverged": diverged, "replicas": rows},
        rows,
        [
            Column("NODE", "node_id"),
            Column("GROUP", "group"),
            Column("ROLE", "role"),
            Column("ONLINE", "online"),
            Column("LAST", "last_index"),
            Column("DIVERGED_AT", "diverged_at"),
            Column("BAD_PEER", "bad_peer"),
        ],
        footer=footer,
    )
    return exitcodes.OK


async def recover_cmd(app: App) -> int:
    socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
    async with local_journal(socket, label, app.timeout_s + 60) as (stub, call):
        r = await call(
            stub.Recover,
            replication_pb2.RecoverRequest(strategy=app.args.strategy, dry_run=app.args.dry_run),
        )
    data = {
        "node": label,
        "strategy": r.strategy,
        "diverged_at": r.diverged_at or None,
        "removed": r.removed,
        "forensics_file": r.forensics_file or None,
        "last_index": r.last_index,
        "dry_run": r.dry_run,
        "detail": r.detail,
    }
    app.out.text(data, f"{label}: {'plan: ' if r.dry_run else ''}{r.detail}")
    return exitcodes.OK
