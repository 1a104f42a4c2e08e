"""edgectl token create: single-use join tokens for nodes and operators."""

import argparse

from edgecommon.cli import exitcodes
from edgecommon.cli.output import iso
from edgecommon.config import parse_duration
from edgecommon.errors import InvalidArgument
from edgecommon.pb import fleet_pb2
from edgectl.app import App
from edgectl.clients import fleet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="join tokens for enrolling nodes and operators")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    c = tsub.add_parser(
        "create",
        help="create a single-use join token",
        description="Create a single-use, expiring join token. For a node: --node ID --group G. "
        "For another operator: --operator NAME (they run 'edgectl login --token ...').",
    )
    c.add_argument("--node", dest="token_node", default="", metavar="ID", help="node id")
    c.add_argument("--group", default="", metavar="G", help="the node's group (site)")
    c.add_argument("--operator", default="", metavar="NAME", help="a new operator's name")
    c.add_argument("--ttl", default="", help="lifetime, e.g. 15m, 1h (default: the hub's, 1h)")
    c.set_defaults(func=create)


async def create(app: App) -> int:
    args = app.args
    ttl_s = 0.0
    if args.ttl:
        try:
            ttl_s = parse_duration(args.ttl)
        except ValueError as exc:
            raise InvalidArgument(f"--ttl: {exc}") from None
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(
            stub.CreateJoinToken,
            fleet_pb2.CreateJoinTokenRequest(
                node_id=args.token_node, group=args.group, operator=args.operator, ttl_s=ttl_s
            ),
        )
    data = {
        "token": answer.token,
        "token_id": answer.token_id,
        "kind": answer.kind,
        "subject": answer.subject_id,
        "group": answer.group or None,
        "expires": iso(answer.expires_unix),
    }
    subject = (
        f"node {answer.subject_id} in group {answer.group}"
        if answer.kind == "node"
        else f"operator {answer.subject_id}"
    )
    app.out.text(data, answer.token)
    if app.out.fmt != "json":
        import sys

        print(
            f"single-use token {answer.token_id} for {subject}, expires {data['expires']}",
            file=sys.stderr,
        )
    return exitcodes.OK
