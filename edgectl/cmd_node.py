"""edgectl status: the local agent's identity, link to the hub, certificate and versions."""

import argparse
import time

from edgecommon import statistics
from edgecommon.cli import exitcodes
from edgecommon.cli.output import ago, iso
from edgecommon.pb import agent_pb2
from edgectl.app import App
from edgectl.clients import local_agent
from edgectl.context import agent_socket


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show this node's agent: identity, hub link, certificate")
    p.set_defaults(func=status)


def status_data(s: agent_pb2.AgentStatus, now: float) -> dict[str, object]:
    return {
        "node_id": s.node_id or None,
        "group": s.group or None,
        "pid": s.pid,
        "started": iso(s.started_unix),
        "state_dir": s.state_dir,
        "hub": {
            "address": s.hub_address,
            "state": s.hub_state,
            "since": iso(s.hub_state_since_unix),
            "last_error": s.last_error or None,
            "next_attempt": iso(s.next_attempt_unix),
            "heartbeats_sent": s.heartbeats_sent,
        },
        "certificate": {
            "serial": s.cert_serial or None,
            "expires": iso(s.cert_expires_unix),
            "expires_in_s": round(s.cert_expires_unix - now) if s.cert_expires_unix else None,
            "renewal_state": s.certificate.renewal_state or None,
            "next_renewal": iso(s.certificate.next_renewal_unix),
            "last_renewal": iso(s.certificate.last_renewal_unix),
            "last_renewal_error": s.certificate.last_renewal_error or None,
            "renewal_failures": s.certificate.renewal_failures,
            "handovers": s.certificate.handovers,
            "handover_failures": s.certificate.handover_failures,
        },
        "ready": s.ready,
        "not_ready_reason": s.not_ready_reason or None,
        "versions": {"agent": s.agent_version, "python": s.python_version, "grpc": s.grpc_version},
        "statistics": statistics.shown(statistics.parse(s.statistics_json)),
    }


async def status(app: App) -> int:
    socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
    async with local_agent(socket, label, app.timeout_s) as (stub, call):
        s = await call(stub.Status, agent_pb2.StatusRequest())
    now = time.time()
    data = status_data(s, now)
    since = (
        f"{s.hub_state} for {ago(now - s.hub_state_since_unix)}"
        if s.hub_state_since_unix
        else s.hub_state
    )
    lines: list[tuple[str, object]] = [
        ("Node", f"{s.node_id} (group {s.group})" if s.node_id else "not enrolled yet"),
        ("Agent", f"pid {s.pid}, up {ago(now - s.started_unix)}"),
        ("Hub", f"{s.hub_address}: {since}"),
    ]
    if s.last_error:
        lines.append(("Last error", s.last_error))
    if s.node_id and not s.ready:
        lines.append(("Not ready", s.not_ready_reason))
    if s.next_attempt_unix > now:
        lines.append(("Next attempt", f"in {ago(s.next_attempt_unix - now)}"))
    if s.cert_expires_unix:
        lines.append(
            (
                "Certificate",
                f"serial {s.cert_serial}, expires {iso(s.cert_expires_unix)} "
                f"(in {ago(s.cert_expires_unix - now)})",
            )
        )
    if s.certificate.next_renewal_unix:
        renewal = f"{s.certificate.renewal_state}, next at {iso(s.certificate.next_renewal_unix)}"
        if s.certificate.last_renewal_error:
            renewal += (
                f"; last error ({s.certificate.renewal_failures} in a row): "
                f"{s.certificate.last_renewal_error}"
            )
        lines.append(("Renewal", renewal))
    lines.append(
        ("Versions", f"agent {s.agent_version}, python {s.python_version}, grpc {s.grpc_version}")
    )
    sections = statistics.parse(s.statistics_json)
    if sections:
        lines.append(("Statistics", statistics.SEE_JSON))
        lines.extend(statistics.lines(sections))
    app.out.record(data, lines)
    return exitcodes.OK
