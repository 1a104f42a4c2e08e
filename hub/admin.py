"""edge-hub's admin commands: the operator work that needs the hub's own files, on the hub host.

    edge-hub bootstrap-operator --dir DIR [--name admin] [--force] [--config hub.toml]
    edge-hub audit query|export|verify|prune [--pg-url URL] ...

These are the only operator actions that do not pass the gate (hub/rbac/gate.py), and they live
here so that nothing else has to reach around it: `bootstrap-operator` signs the first
operator's certificate with the hub's CA key and gives it `admin` in the hub store (there is
nobody yet whom the gate could allow), `audit` reads or prunes the PostgreSQL audit table
under the database's own privileges. Both need what only the hub's user on the hub host has:
read access to the state directory, or the database's credentials.

edgectl imports no hub code. `edgectl operator bootstrap`, `edgectl audit ... --pg-url` and
`edgectl dev up` run these commands as a subprocess (edgectl/hubcmd.py), so flags, output and
exit codes are edgectl's own (edgecommon/cli) and pass through unchanged.
"""

import argparse
import contextlib
import dataclasses
import datetime as dt
import getpass
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from edgecommon import config as config_loader
from edgecommon import pki
from edgecommon.audit_record import AUDIT_PRUNE
from edgecommon.cli import audit_view, exitcodes
from edgecommon.cli.confirm import confirm
from edgecommon.cli.context_dir import Context, refuse_overwrite, write_operator_credential
from edgecommon.cli.output import Renderer
from edgecommon.clock import SystemClock
from edgecommon.errors import CredentialError, InvalidArgument
from edgecommon.identity import Identity, Kind, name_problem
from edgecommon.sqlite_file import prepare_async
from hub.audit.event import NewEvent
from hub.audit.pg_log import PgAuditLog
from hub.config import HubConfig
from hub.pki.credentials import CredentialPaths, load_ca
from hub.state_files import state_layout
from hub.store.base import AssignmentRecord, CertificateRecord
from hub.store.sqlite import SqliteStore

Handler = Callable[[argparse.Namespace, Renderer], Coroutine[Any, Any, int]]


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bootstrap-operator",
        help="write the first operator's credential, signed by the hub's CA, with role admin",
        description="Sign an operator credential with the hub's CA directly (needs read "
        "access to the hub's state directory), record it in the hub store with role admin "
        "on the fleet (unless RBAC is managed in files) and write it as an edgectl context "
        "directory. Refuses a damaged or lost hub database, as edge-hub does at start.",
    )
    b.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="the hub's hub.toml (defaults)"
    )
    b.add_argument("--name", default="admin", help="operator name (default admin)")
    b.add_argument("--dir", type=Path, required=True, help="the context directory to write")
    b.add_argument("--force", action="store_true", help="replace an existing credential there")
    _output_option(b)
    b.set_defaults(func=bootstrap_operator)

    a = sub.add_parser(
        "audit",
        help="query, export, verify or prune the PostgreSQL audit log directly",
        description="Read the audit_events table directly: the database's privileges govern, "
        "not RBAC. A prune is recorded in the chain under --by.",
    )
    asub = a.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {
        "query": audit_query,
        "export": audit_export,
        "verify": audit_verify,
        "prune": audit_prune,
    }
    for name, parser in audit_view.add_commands(asub).items():
        parser.add_argument(
            "--pg-url", default=None, help=f"the audit database (default: {audit_view.PG_ENV})"
        )
        _output_option(parser)
        parser.set_defaults(func=handlers[name])
    prune = asub.choices["prune"]
    prune.add_argument(
        "--by",
        default="",
        metavar="NAME",
        help="the operator the prune is recorded under (default: AUTONOMY_OPERATOR, the user)",
    )


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", choices=("table", "json"), default="table", help="table or json"
    )


def run(args: argparse.Namespace) -> int:
    """Run the admin command `args` names, to an exit code (edgecommon/cli/exitcodes.py)."""
    return exitcodes.run("edge-hub", args.func(args, Renderer(args.output)))


# -- bootstrap-operator --------------------------------------------------------------------


async def issue_bootstrap_credential(
    hub_config: HubConfig, name: str
) -> tuple[pki.PrivateKey, bytes, bytes]:
    """A new key and its operator certificate signed by the hub's CA, recorded in the hub
    store with role admin on the fleet (unless RBAC is managed in files). Returns the key,
    the certificate and the CA bundle, as PEM."""
    paths = CredentialPaths.under(hub_config.hub.state_dir)
    if not paths.ca_key.exists():
        raise CredentialError(
            f"no hub CA at {paths.ca_key}: start edge-hub once first, or name the hub's hub.toml"
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


async def bootstrap_operator(args: argparse.Namespace, out: Renderer) -> int:
    if problem := name_problem("operator", args.name):
        raise InvalidArgument(problem)
    hub_config = config_loader.load(HubConfig, args.config, os.environ)
    directory: Path = args.dir
    refuse_overwrite(Context.load(directory), args.force)
    key, cert_pem, bundle_pem = await issue_bootstrap_credential(hub_config, args.name)
    context = write_operator_credential(
        directory,
        hub_config.hub.listen,
        hub_config.hub.enroll_listen,
        args.name,
        key,
        cert_pem,
        bundle_pem,
    )
    rbac_dir = hub_config.rbac.dir
    data = {
        "operator": args.name,
        "context": str(directory),
        "hub": context.hub,
        "role": None if rbac_dir else "admin",
    }
    grant = (
        f"RBAC is managed in {rbac_dir}: assign a role to {args.name} there"
        if rbac_dir
        else "role admin on fleet"
    )
    out.text(
        data, f"operator {args.name} credential written to {directory}; hub {context.hub}; {grant}"
    )
    return exitcodes.OK


# -- audit ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _database(args: argparse.Namespace) -> AsyncIterator[PgAuditLog]:
    url = audit_view.pg_url(args.pg_url, os.environ)
    if not url:
        raise InvalidArgument(
            f"no audit database: pass --pg-url or set {audit_view.PG_ENV} "
            "('edgectl audit' without them reads through the hub)"
        )
    log = PgAuditLog(url, SystemClock())
    await log.open()
    try:
        yield log
    finally:
        await log.close()


async def audit_query(args: argparse.Namespace, out: Renderer) -> int:
    f = audit_view.query_filter(args, SystemClock().wall())
    async with _database(args) as log:
        # One more than asked for says whether more match.
        found = await log.query(dataclasses.replace(f, limit=f.limit + 1))
    audit_view.render_events(out, found[: f.limit], log.name, len(found) > f.limit)
    return exitcodes.OK


async def audit_export(args: argparse.Namespace, out: Renderer) -> int:
    f = audit_view.audit_filter(args, SystemClock().wall(), 0)
    async with _database(args) as log:
        await audit_view.write_export(out, log.export(f), args.format, args.file)
    return exitcodes.OK


async def audit_verify(args: argparse.Namespace, out: Renderer) -> int:
    async with _database(args) as log:
        report = await log.verify()
    return audit_view.show_verify(out, report, log.name)


async def audit_prune(args: argparse.Namespace, out: Renderer) -> int:
    older_than_s = audit_view.parse_days(args.older_than)
    age = args.older_than
    confirm(
        args.force,
        f"prune audit events older than {age}",
        f"Prune audit events older than {age}? Type {age!r} to confirm: ",
        age,
        "nothing pruned",
    )
    who = args.by or os.environ.get("AUTONOMY_OPERATOR", "").strip() or getpass.getuser()
    event = NewEvent(
        operator=who,
        action=AUDIT_PRUNE,
        target="audit-log",
        scope="fleet",
        outcome="success",
        request_id="",
        reason=args.reason,
        detail=f"removed events older than {older_than_s / 86400:g}d (direct database access)",
    )
    async with _database(args) as log:
        report = await log.prune(SystemClock().wall() - older_than_s, event)
    data = {
        "removed": report.removed,
        "anchor_seq": report.anchor.seq if report.anchor else None,
        "backend": log.name,
        "event_seq": report.event.seq,
    }
    audit_view.show_prune(out, age, data)
    return exitcodes.OK
