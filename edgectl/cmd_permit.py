"""edgectl permit check ACTION: would this node grant a permit now? (exit 0 yes, 4 no)"""

import argparse

from edgecommon.cli import exitcodes
from edgecommon.pb import agent_pb2
from edgectl.app import App
from edgectl.clients import local_agent
from edgectl.context import agent_socket


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("permit", help="ask the local agent about permits")
    psub = p.add_subparsers(dest="permit_command", required=True, metavar="COMMAND")
    check = psub.add_parser(
        "check",
        help="would a permit for ACTION be granted now (holds nothing)",
        description="Ask without holding a permit. Exit 0 when it would be granted, 4 when "
        "denied; the reason is machine-readable (estop, autonomy_disabled).",
    )
    check.add_argument("action", metavar="ACTION")
    check.add_argument("--units", type=int, default=1, help="units of the action (default 1)")
    check.add_argument(
        "--leader-only",
        action="store_true",
        help="an action only the group's leader may take (not_leader on replicas)",
    )
    check.set_defaults(func=check_cmd)


async def check_cmd(app: App) -> int:
    socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
    async with local_agent(socket, label, app.timeout_s) as (stub, call):
        decision = await call(
            stub.RequestPermit,
            agent_pb2.PermitRequest(
                action=app.args.action,
                units=app.args.units,
                dry_run=True,
                holder="edgectl",
                leader_only=app.args.leader_only,
            ),
        )
    data = {
        "action": app.args.action,
        "granted": decision.granted,
        "reason": decision.reason,
        "detail": decision.detail or None,
        "node": label,
    }
    verdict = "granted" if decision.granted else f"denied ({decision.reason}: {decision.detail})"
    app.out.text(data, f"{app.args.action} on {label}: {verdict}")
    return exitcodes.OK if decision.granted else exitcodes.DENIED
