"""edgectl ca: the fleet CA's rollover — status, rotate, retire-old.

A rollover is two steps with a wait between: `ca rotate` creates a new CA that signs
from then on while the trust bundle carries old and new (nodes fetch it over the link
and renew onto the new CA); `ca retire-old` drops the old CAs once `ca status` shows
every node on the new one (refused while an online node still depends on an old CA,
unless --force).
"""

import argparse
from typing import Any

from edgecommon.cli import exitcodes
from edgecommon.cli.confirm import confirm
from edgecommon.cli.output import Column, iso
from edgecommon.pb import certs_pb2
from edgectl.app import App
from edgectl.clients import certs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ca", help="the fleet CA: status, rotate, retire-old")
    csub = p.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    s = csub.add_parser("status", help="trusted CAs and how many nodes are on each")
    s.set_defaults(func=status)
    r = csub.add_parser("rotate", help="create a new signing CA (the old one stays trusted)")
    r.add_argument("--force", action="store_true", help="do not ask to confirm")
    r.set_defaults(func=rotate)
    t = csub.add_parser(
        "retire-old", help="trust only the new CA (refused while online nodes use an old one)"
    )
    t.add_argument(
        "--force",
        action="store_true",
        help="retire even though online nodes still use an old CA (they must re-enroll)",
    )
    t.set_defaults(func=retire_old)


def report_data(report: certs_pb2.CaReport) -> dict[str, Any]:
    return {
        "cas": [
            {
                "fingerprint": ca.fingerprint,
                "subject": ca.subject,
                "not_before": iso(ca.not_before_unix),
                "not_after": iso(ca.not_after_unix),
                "signing": ca.signing,
                "serving": ca.serving,
                "nodes": ca.nodes,
                "online_nodes": ca.online_nodes,
                "node_ids": list(ca.node_ids),
            }
            for ca in report.cas
        ],
        "detail": report.detail or None,
    }


def _render(app: App, report: certs_pb2.CaReport) -> None:
    data = report_data(report)
    rows = []
    for ca in data["cas"]:
        role = [r for r, on in (("signing", ca["signing"]), ("serving", ca["serving"])) if on]
        rows.append(
            {
                "ca": ca["fingerprint"][:16],
                "subject": ca["subject"],
                "valid_until": ca["not_after"],
                "role": ",".join(role) or "trusted",
                "nodes": f"{ca['nodes']} ({ca['online_nodes']} online)",
            }
        )
    columns = [
        Column("CA (SHA-256)", "ca"),
        Column("SUBJECT", "subject"),
        Column("VALID UNTIL", "valid_until"),
        Column("ROLE", "role"),
        Column("NODES", "nodes"),
    ]
    app.out.table(data, rows, columns, footer=report.detail)


async def _call(app: App, method: str, request: Any) -> certs_pb2.CaReport:
    context = app.context
    async with certs(context, app.hub(context), app.timeout_s) as (stub, call):
        return await call(getattr(stub, method), request)  # type: ignore[no-any-return]


async def status(app: App) -> int:
    _render(app, await _call(app, "CaStatus", certs_pb2.CaStatusRequest()))
    return exitcodes.OK


def _confirm(app: App, question: str) -> None:
    confirm(
        app.args.force, question, f"{question} Type 'yes' to confirm: ", "yes", "nothing changed"
    )


async def rotate(app: App) -> int:
    _confirm(app, "Create a new fleet CA?")
    _render(app, await _call(app, "RotateCa", certs_pb2.RotateCaRequest()))
    return exitcodes.OK


async def retire_old(app: App) -> int:
    report = await _call(app, "RetireOldCa", certs_pb2.RetireOldCaRequest(force=app.args.force))
    _render(app, report)
    return exitcodes.OK
