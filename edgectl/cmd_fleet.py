"""edgectl fleet status, edgectl node show: the hub's registry."""

import argparse
import time

from edgecommon import statistics
from edgecommon.cli import exitcodes
from edgecommon.cli.output import Column, ago, iso
from edgecommon.pb import fleet_pb2
from edgectl.app import App
from edgectl.clients import fleet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="the fleet as the hub sees it")
    fsub = p.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    s = fsub.add_parser("status", help="every node: group, state, last seen, version")
    s.add_argument("--group", default="", help="only this group")
    s.set_defaults(func=fleet_status)

    n = sub.add_parser("node", help="one node as the hub sees it")
    nsub = n.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    show = nsub.add_parser("show", help="everything the hub knows about a node")
    show.add_argument("node_id", metavar="ID")
    show.set_defaults(func=node_show)


def node_data(n: fleet_pb2.Node, now: float) -> dict[str, object]:
    data: dict[str, object] = {
        "node_id": n.node_id,
        "group": n.group,
        "state": n.state,
        "state_since": iso(n.state_since_unix),
        "state_reason": n.state_reason or None,
        "labels": dict(n.labels),
        "agent_version": n.agent_version or None,
        "hostname": n.hostname or None,
        "first_seen": iso(n.first_seen_unix),
        "last_seen": iso(n.last_seen_unix),
        "last_seen_ago_s": round(now - n.last_seen_unix, 1) if n.last_seen_unix else None,
        "cert_serial": n.cert_serial or None,
        "cert_expires": iso(n.cert_expires_unix),
        "cert_renewal_error": n.cert_renewal_error or None,
        "cert_revoked": n.cert_revoked,
        "metrics": None,
    }
    if n.HasField("metrics"):
        m = n.metrics
        data["metrics"] = {
            "uptime_s": round(m.uptime_s, 1),
            "cpu_percent": round(m.cpu_percent, 1),
            "memory_percent": round(m.memory_percent, 1),
            "disk_percent": round(m.disk_percent, 1),
            "rss_bytes": m.rss_bytes,
            "heartbeat_seq": m.heartbeat_seq,
        }
    return data


async def fleet_status(app: App) -> int:
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(stub.FleetStatus, fleet_pb2.FleetStatusRequest(group=app.args.group))
    now = time.time()
    nodes = [node_data(n, now) for n in answer.nodes]
    rows = [
        {
            **d,
            "since": ago(now - n.state_since_unix) if n.state_since_unix else None,
            "seen": f"{ago(now - n.last_seen_unix)} ago" if n.last_seen_unix else "never",
        }
        for d, n in zip(nodes, answer.nodes, strict=True)
    ]
    hub = statistics.parse(answer.statistics_json)
    data = {
        "nodes": nodes,
        "online": answer.online,
        "offline": answer.offline,
        "statistics": statistics.shown(hub) if hub else None,  # None: a --group request
    }
    footer = f"{answer.online} online, {answer.offline} not online, {len(nodes)} enrolled"
    app.out.table(
        data,
        rows,
        [
            Column("NODE", "node_id"),
            Column("GROUP", "group"),
            Column("STATE", "state"),
            Column("SINCE", "since"),
            Column("LAST SEEN", "seen"),
            Column("VERSION", "agent_version"),
            Column("REASON", "state_reason"),
        ],
        footer=footer + ("\n\n" + statistics.block("Hub statistics", hub) if hub else ""),
    )
    return exitcodes.OK


async def node_show(app: App) -> int:
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        n = await call(stub.GetNode, fleet_pb2.GetNodeRequest(node_id=app.args.node_id))
    now = time.time()
    data = node_data(n, now)
    lines: list[tuple[str, object]] = [
        ("Node", n.node_id),
        ("Group", n.group),
        ("State", f"{n.state} since {iso(n.state_since_unix)} ({n.state_reason})"),
        ("Labels", dict(n.labels)),
        ("Agent version", n.agent_version),
        ("Hostname", n.hostname),
        ("First seen", iso(n.first_seen_unix)),
        (
            "Last seen",
            f"{iso(n.last_seen_unix)} ({ago(now - n.last_seen_unix)} ago)"
            if n.last_seen_unix
            else "never",
        ),
        (
            "Certificate",
            f"serial {n.cert_serial}, expires {iso(n.cert_expires_unix)}"
            + (" (revoked)" if n.cert_revoked else ""),
        ),
    ]
    if n.cert_renewal_error:
        lines.append(("Renewal error", n.cert_renewal_error))
    if n.HasField("metrics"):
        m = n.metrics
        lines.append(
            (
                "Metrics",
                f"cpu {m.cpu_percent:.1f}%, memory {m.memory_percent:.1f}%, "
                f"disk {m.disk_percent:.1f}%, agent rss {m.rss_bytes / 2**20:.1f} MiB, "
                f"uptime {ago(m.uptime_s)}",
            )
        )
    app.out.record(data, lines)
    return exitcodes.OK
