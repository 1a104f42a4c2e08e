"""Operator credentials: bootstrap the first admin on the hub host, log in with a token.

`operator bootstrap` needs read access to the hub's CA key, i.e. it runs on the hub
host as the hub's user; it runs `edge-hub bootstrap-operator` (hub/admin.py), which signs
there and records the certificate in the hub store.

Every further operator gets a token from an existing one (`edgectl token create
--operator NAME`) and runs `edgectl login --token ... --hub HOST:PORT`: the key is
generated on their machine and never leaves it.
"""

import argparse
from pathlib import Path

from edgecommon import pki, tokens
from edgecommon.cli import exitcodes
from edgecommon.cli.context_dir import Context, refuse_overwrite, write_operator_credential
from edgecommon.clock import utc
from edgecommon.enroll_client import request_certificate
from edgecommon.errors import InvalidArgument
from edgecommon.identity import Kind
from edgecommon.pb import fleet_pb2
from edgectl import hubcmd
from edgectl.app import App
from edgectl.clients import fleet
from edgectl.context import user_context_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("operator", help="operator credentials")
    osub = p.add_subparsers(dest="operator_command", required=True, metavar="COMMAND")
    b = osub.add_parser(
        "bootstrap",
        help="on the hub host: write the first admin credential",
        description="Sign an operator credential with the hub's CA directly (needs read "
        "access to the hub's state directory; runs edge-hub bootstrap-operator) and make it "
        "the current context.",
    )
    b.add_argument("--hub-config", type=Path, help="the hub's hub.toml (default: its defaults)")
    b.add_argument("--name", default="admin", help="operator name (default admin)")
    b.add_argument(
        "--dir",
        type=Path,
        help="where to write the credential (default: the user context, ~/.config/edgectl)",
    )
    b.add_argument("--force", action="store_true", help="replace an existing credential there")
    b.set_defaults(func=bootstrap)

    w = osub.add_parser("whoami", help="the operator identity the hub sees")
    w.set_defaults(func=whoami)

    login_p = sub.add_parser(
        "login",
        help="enroll as an operator with a token and save the context",
        description="Generate a key here, exchange the operator join token for a "
        "certificate and save hub address and credential as the user context.",
    )
    login_p.add_argument("--token", required=True, help="operator join token")
    login_p.add_argument(
        "--enroll-address", default="", help="hub enrollment address (default: hub host, port 7444)"
    )
    login_p.add_argument("--dir", type=Path, help="context directory (default ~/.config/edgectl)")
    login_p.add_argument("--force", action="store_true", help="replace an existing credential")
    login_p.set_defaults(func=login)


def _target_dir(app: App) -> Path:
    return app.args.dir or user_context_dir(app.environ)


async def bootstrap(app: App) -> int:
    """`edge-hub bootstrap-operator`, run here: only the hub's entry point reads its CA key and
    writes its store. Its output and exit code are this command's."""
    words = ["bootstrap-operator", f"--name={app.args.name}", f"--dir={_target_dir(app)}"]
    if app.args.hub_config is not None:
        words.append(f"--config={app.args.hub_config}")
    if app.args.force:
        words.append("--force")
    return await hubcmd.passthrough([*words, f"--output={app.out.fmt}"], app.environ, app.cwd)


async def login(app: App) -> int:
    join = tokens.parse_token(app.args.token)
    if join.subject.kind is not Kind.OPERATOR:
        raise InvalidArgument(f"this token is for {join.subject}, not an operator")
    directory = _target_dir(app)
    refuse_overwrite(Context.load(directory), app.args.force)
    hub = app.hub(Context(directory))
    enroll_address = app.args.enroll_address or f"{hub.rpartition(':')[0]}:7444"
    key = pki.generate_key()
    answer = await request_certificate(enroll_address, join, key, app.timeout_s)
    write_operator_credential(
        directory,
        hub,
        enroll_address,
        join.subject.name,
        key,
        answer.certificate_pem,
        answer.ca_bundle_pem,
    )
    cert = pki.load_certificate(Context(directory).cert_path)
    data = {
        "operator": join.subject.name,
        "context": str(directory),
        "hub": hub,
        "expires": f"{utc(cert.not_valid_after_utc.timestamp()):%Y-%m-%dT%H:%M:%S}Z",
    }
    app.out.text(
        data, f"logged in to {hub} as operator {join.subject.name}; credential in {directory}"
    )
    return exitcodes.OK


async def whoami(app: App) -> int:
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(stub.WhoAmI, fleet_pb2.WhoAmIRequest())
    data = {
        "operator": answer.operator,
        "hub_version": answer.hub_version,
        "trust_domain": answer.trust_domain,
        "context": str(context.directory),
    }
    app.out.text(
        data, f"operator {answer.operator} (hub {answer.hub_version}, context {context.directory})"
    )
    return exitcodes.OK
