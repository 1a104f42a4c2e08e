"""Operator credentials: bootstrap the first admin on the hub host, log in with a token.

`operator bootstrap` needs read access to the hub's CA key, i.e. it runs on the hub
host as the hub's user; it signs locally and records the certificate in the hub store.
Every further operator gets a token from an existing one (`edgectl token create
--operator NAME`) and runs `edgectl login --token ... --hub HOST:PORT`: the key is
generated on their machine and never leaves it.
"""

import argparse
import datetime as dt
import os
import time
from pathlib import Path

from edgecommon import config as config_loader
from edgecommon import pki, tokens
from edgecommon.cli import exitcodes
from edgecommon.cli.context_dir import Context, refuse_overwrite, write_operator_credential
from edgecommon.clock import utc
from edgecommon.enroll_client import request_certificate
from edgecommon.errors import CredentialError, InvalidArgument
from edgecommon.identity import Identity, Kind, name_problem
from edgecommon.pb import fleet_pb2
from edgecommon.sqlite_file import prepare_async
from edgectl.app import App
from edgectl.clients import fleet
from edgectl.context import user_context_dir
from hub.config import HubConfig
from hub.credentials import CredentialPaths, load_ca
from hub.state_files import state_layout
from hub.store.base import AssignmentRecord, CertificateRecord
from hub.store.sqlite import SqliteStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("operator", help="operator credentials")
    osub = p.add_subparsers(dest="operator_command", required=True, metavar="COMMAND")
    b = osub.add_parser(
        "bootstrap",
        help="on the hub host: write the first admin credential",
        description="Sign an operator credential with the hub's CA directly (needs read "
        "access to the hub's state directory) and make it the current context.",
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


async def issue_bootstrap_credential(
    hub_config: HubConfig, name: str
) -> tuple[pki.PrivateKey, bytes, bytes]:
    paths = CredentialPaths.under(hub_config.hub.state_dir)
    if not paths.ca_key.exists():
        raise CredentialError(
            f"no hub CA at {paths.ca_key}: start edge-hub once first, or pass --hub-config"
        )
    ca_key, ca_cert = load_ca(paths)
    key = pki.generate_key()
    now = dt.datetime.now(dt.UTC)
    cert = pki.issue_for_key(
        ca_key,
        ca_cert,
        key,
        Identity(Kind.OPERATOR, name),
        hub_config.hub.trust_domain,
        now,
        dt.timedelta(hours=hub_config.certs.operator_lifetime_h),
    )
    # The same start-up check as edge-hub's: never write into a damaged or lost database.
    await prepare_async(state_layout(hub_config), False, time.time)
    store = SqliteStore(hub_config.db_path)
    await store.open()
    try:
        await store.record_certificate(
            CertificateRecord(
                serial=pki.serial_hex(cert),
                kind="operator",
                subject_id=name,
                group="",
                not_after_unix=cert.not_valid_after_utc.timestamp(),
                issued_unix=now.timestamp(),
                fingerprint=pki.fingerprint(cert),
                ca_fingerprint=pki.fingerprint(ca_cert),
            )
        )
        if not hub_config.rbac.dir:
            await store.add_assignment(
                AssignmentRecord(name, "admin", "fleet", "operator bootstrap", now.timestamp())
            )
    finally:
        await store.close()
    return key, pki.pem(cert), pki.pem(ca_cert)


async def bootstrap(app: App) -> int:
    if problem := name_problem("operator", app.args.name):
        raise InvalidArgument(problem)
    hub_config = config_loader.load(HubConfig, app.args.hub_config, os.environ)
    directory = _target_dir(app)
    refuse_overwrite(Context.load(directory), app.args.force)
    key, cert_pem, bundle_pem = await issue_bootstrap_credential(hub_config, app.args.name)
    context = write_operator_credential(
        directory,
        hub_config.hub.listen,
        hub_config.hub.enroll_listen,
        app.args.name,
        key,
        cert_pem,
        bundle_pem,
    )
    rbac_dir = hub_config.rbac.dir
    data = {
        "operator": app.args.name,
        "context": str(directory),
        "hub": context.hub,
        "role": None if rbac_dir else "admin",
    }
    grant = (
        f"RBAC is managed in {rbac_dir}: assign a role to {app.args.name} there"
        if rbac_dir
        else "role admin on fleet"
    )
    app.out.text(
        data,
        f"operator {app.args.name} credential written to {directory}; hub {context.hub}; {grant}",
    )
    return exitcodes.OK


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
