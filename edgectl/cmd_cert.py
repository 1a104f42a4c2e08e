"""edgectl cert: inspect, rotate, issue, list and revoke certificates.

`inspect` and `rotate` act on this node's certificate through the local agent (or, with
--operator, on the operator credential of the context); `issue`, `list` and `revoke`
ask the hub. Nothing here ever prints key material.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from edgecommon import pki
from edgecommon.cli import exitcodes
from edgecommon.cli.confirm import confirm
from edgecommon.cli.context_dir import Context
from edgecommon.cli.output import Column, ago, iso
from edgecommon.config import parse_duration
from edgecommon.errors import CredentialError, InvalidArgument
from edgecommon.identity import Kind
from edgecommon.pb import agent_pb2, certs_pb2, fleet_pb2
from edgecommon.version import PRODUCT_VERSION
from edgectl.app import App
from edgectl.certview import describe
from edgectl.clients import certs, fleet, local_agent
from edgectl.context import agent_socket


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cert", help="certificates: inspect, rotate, issue, list, revoke")
    csub = p.add_subparsers(dest="cert_command", required=True, metavar="COMMAND")

    i = csub.add_parser(
        "inspect",
        help="show a certificate (this node's by default); never key material",
        description="Subject, SANs, serial, issuer, validity, key type, SHA-256 fingerprint, "
        "days left and renewal state of this node's certificate (through the local agent), "
        "of the context's operator certificate (--operator) or of a PEM file (--file).",
    )
    which = i.add_mutually_exclusive_group()
    which.add_argument("--operator", action="store_true", help="the context's operator credential")
    which.add_argument("--file", type=Path, help="a PEM certificate file")
    i.set_defaults(func=inspect)

    r = csub.add_parser(
        "rotate",
        help="renew now with a new key (this node's, or --operator)",
        description="Renew this node's certificate now through the local agent: new key, "
        "CSR over the mTLS link, the hub stream moves to it without dropping. With "
        "--operator, renew the context's operator credential the same way.",
    )
    r.add_argument("--operator", action="store_true", help="the context's operator credential")
    r.set_defaults(func=rotate)

    s = csub.add_parser(
        "issue",
        help="hub: a join token for a node (and an offline bundle with --out)",
        description="Create a single-use join token for a node. With --out DIR, also write "
        "an enrollment bundle for an air-gapped node: DIR/join-token (0600) and DIR/ca.crt. "
        "The node generates its own key; nothing here holds key material.",
    )
    s.add_argument("--node", dest="cert_node", required=True, metavar="ID", help="node id")
    s.add_argument("--group", required=True, metavar="G", help="the node's group (site)")
    s.add_argument("--ttl", default="", help="token lifetime, e.g. 1h, 7d (default: the hub's)")
    s.add_argument("--out", type=Path, help="write an enrollment bundle into this directory")
    s.set_defaults(func=issue)

    ls = csub.add_parser("list", help="hub: certificates with expiry and revocations")
    ls.add_argument(
        "--expiring-within",
        default="",
        metavar="DURATION",
        help="only those expiring within, e.g. 7d",
    )
    ls.add_argument("--kind", choices=("node", "operator"), default="", help="only this kind")
    ls.add_argument("--all", action="store_true", help="include expired certificates")
    ls.set_defaults(func=list_certificates)

    v = csub.add_parser(
        "revoke",
        help="hub: revoke a node's, an operator's or one serial's certificate",
        description="The hub refuses the certificate on the next call, closes the node's "
        "stream and keeps the revocation. The node must re-enroll with a new join token.",
    )
    v.add_argument(
        "--node", dest="cert_node", default="", metavar="ID", help="every certificate of this node"
    )
    v.add_argument(
        "--operator", default="", metavar="NAME", help="every certificate of this operator"
    )
    v.add_argument("--serial", default="", metavar="S", help="one certificate by serial (hex)")
    v.add_argument("--reason", required=True, help="why (kept with the revocation)")
    v.add_argument("--force", action="store_true", help="do not ask to confirm the target")
    v.set_defaults(func=revoke)


def _cert_lines(data: dict[str, Any]) -> list[tuple[str, object]]:
    return [
        ("Subject", data["subject"]),
        ("SANs", ", ".join(data["sans"]) or "-"),
        ("Serial", data["serial"]),
        ("Issuer", data["issuer"]),
        ("Valid", f"{data['not_before']} to {data['not_after']}"),
        ("Days left", "expired" if data["expired"] else data["days_left"]),
        ("Key type", data["key_type"]),
        ("SHA-256", data["sha256_fingerprint"]),
    ]


def renewal_data(state: agent_pb2.CertificateState) -> dict[str, Any]:
    return {
        "state": state.renewal_state,
        "next_renewal": iso(state.next_renewal_unix),
        "last_renewal": iso(state.last_renewal_unix),
        "last_error": state.last_renewal_error or None,
        "failures": state.renewal_failures,
        "renewals": state.renewals,
    }


async def inspect(app: App) -> int:
    now = time.time()
    renewal: dict[str, Any] | None = None
    if app.args.file or app.args.operator:
        path = app.args.file or app.context.cert_path
        cert = pki.load_certificate(path)
        source = str(path)
    else:
        socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
        async with local_agent(socket, label, app.timeout_s) as (stub, call):
            status = await call(stub.Status, agent_pb2.StatusRequest())
        if not status.certificate.certificate_pem:
            raise CredentialError(f"agent {label} is not enrolled yet; it has no certificate")
        cert = pki.load_pem_certificate(status.certificate.certificate_pem, f"agent {label}")
        renewal = renewal_data(status.certificate)
        source = f"agent {label}"
    data = {"source": source, **describe(cert, now)}
    lines = [("Source", source), *_cert_lines(data)]
    if renewal is not None:
        data["renewal"] = renewal
        text = f"{renewal['state']}, next {renewal['next_renewal'] or '-'}"
        if renewal["last_error"]:
            text += f"; last error: {renewal['last_error']} ({renewal['failures']} failures)"
        lines.append(("Renewal", text))
    app.out.record(data, lines)
    return exitcodes.OK


async def rotate(app: App) -> int:
    if app.args.operator:
        return await _rotate_operator(app)
    socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
    async with local_agent(socket, label, app.timeout_s) as (stub, call):
        state = await call(stub.RotateCertificate, agent_pb2.RotateCertificateRequest())
    cert = pki.load_pem_certificate(state.certificate_pem, f"agent {label}")
    data = {**describe(cert, time.time()), "renewal": renewal_data(state), "detail": state.detail}
    app.out.text(data, f"{state.detail}; valid until {data['not_after']}")
    return exitcodes.OK


async def _rotate_operator(app: App) -> int:
    context = app.context
    current = pki.load_certificate(context.cert_path)
    identity = pki.identity_of(current, trust_domain(current))
    if identity is None or identity.kind is not Kind.OPERATOR:
        raise CredentialError(f"{context.cert_path} does not hold an operator identity")
    key = pki.generate_key()
    async with certs(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(
            stub.Renew,
            certs_pb2.RenewRequest(
                csr_pem=pki.build_csr(key, identity, trust_domain(current)),
                agent_version=f"edgectl {PRODUCT_VERSION}",
            ),
        )
    save_operator_credential(context, key, answer.certificate_pem, answer.ca_bundle_pem)
    cert = pki.load_certificate(context.cert_path)
    data = describe(cert, time.time())
    app.out.text(
        data,
        f"operator {identity.name} renewed with a new key: certificate {data['serial']}, "
        f"valid until {data['not_after']}",
    )
    return exitcodes.OK


def trust_domain(cert: Any) -> str:
    for name in pki.uris(cert):
        if name.startswith("spiffe://"):
            return name.removeprefix("spiffe://").split("/", 1)[0]
    return ""


def save_operator_credential(
    context: Context, key: pki.PrivateKey, cert_pem: bytes, bundle_pem: bytes
) -> None:
    """Replace the operator credential without ever leaving a key that does not match."""
    cert = pki.load_pem_certificate(cert_pem, "the hub's answer")
    if not pki.key_matches(key, cert):
        raise CredentialError("the hub returned a certificate for another key; not saving it")
    next_key = context.key_path.with_name("operator.key.new")
    next_cert = context.cert_path.with_name("operator.crt.new")
    pki.write_private_key(next_key, key)
    pki.atomic_write(next_cert, cert_pem, 0o644)
    pki.atomic_write(context.ca_path, bundle_pem, 0o644)
    os.replace(next_cert, context.cert_path)
    os.replace(next_key, context.key_path)


async def issue(app: App) -> int:
    args = app.args
    ttl_s = _duration("--ttl", args.ttl)
    out: Path | None = args.out
    if out is not None and out.exists() and any(out.iterdir()):
        raise InvalidArgument(f"--out {out} is not empty; choose a new directory")
    context = app.context
    async with fleet(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(
            stub.CreateJoinToken,
            fleet_pb2.CreateJoinTokenRequest(node_id=args.cert_node, group=args.group, ttl_s=ttl_s),
        )
    data: dict[str, Any] = {
        "token": answer.token,
        "token_id": answer.token_id,
        "node": answer.subject_id,
        "group": answer.group,
        "expires": iso(answer.expires_unix),
        "bundle": None,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki.atomic_write(out / "join-token", (answer.token + "\n").encode(), 0o600)
        pki.atomic_write(out / "ca.crt", context.ca_path.read_bytes(), 0o644)
        data["bundle"] = str(out)
    app.out.text(data, answer.token)
    if app.out.fmt != "json":
        where = (
            f"; enrollment bundle in {out} (set [agent].join_token_file to {out / 'join-token'})"
            if out
            else ""
        )
        print(
            f"single-use token {answer.token_id} for node {answer.subject_id} in group "
            f"{answer.group}, expires {data['expires']}{where}",
            file=sys.stderr,
        )
    return exitcodes.OK


def _duration(flag: str, text: str) -> float:
    if not text:
        return 0.0
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidArgument(f"{flag}: {exc}") from None


def certificate_row(c: certs_pb2.CertificateInfo, now: float) -> dict[str, Any]:
    return {
        "serial": c.serial,
        "kind": c.kind,
        "subject": c.subject_id,
        "group": c.group or None,
        "issued": iso(c.issued_unix),
        "not_after": iso(c.not_after_unix),
        "expires_in_s": round(c.not_after_unix - now),
        "fingerprint": c.fingerprint,
        "ca_fingerprint": c.ca_fingerprint or None,
        "current": c.current,
        "revoked": c.revoked,
        "revoked_at": iso(c.revoked_unix),
        "revoke_reason": c.revoke_reason or None,
        "revoked_by": c.revoked_by or None,
        "renewal_error": c.renewal_error or None,
    }


async def list_certificates(app: App) -> int:
    within = _duration("--expiring-within", app.args.expiring_within)
    context = app.context
    async with certs(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(
            stub.ListCertificates,
            certs_pb2.ListCertificatesRequest(
                expiring_within_s=within, kind=app.args.kind, include_expired=app.args.all
            ),
        )
    now = answer.hub_time_unix
    rows = [certificate_row(c, now) for c in answer.certificates]
    for row in rows:
        left = row["expires_in_s"]
        row["expires"] = "expired" if left <= 0 else f"in {ago(left)}"
        row["status"] = (
            f"revoked ({row['revoke_reason']})"
            if row["revoked"]
            else ("current" if row["current"] else "valid")
        )
        if row["renewal_error"]:
            row["status"] += f"; renewal error: {row['renewal_error']}"
    columns = [
        Column("SERIAL", "serial"),
        Column("KIND", "kind"),
        Column("SUBJECT", "subject"),
        Column("GROUP", "group"),
        Column("EXPIRES", "expires"),
        Column("CA", "ca_short"),
        Column("STATUS", "status"),
    ]
    for row in rows:
        row["ca_short"] = (row["ca_fingerprint"] or "")[:12] or None
    data = [
        {k: v for k, v in r.items() if k not in ("expires", "status", "ca_short")} for r in rows
    ]
    app.out.table(data, rows, columns, footer=f"{len(rows)} certificate(s)")
    return exitcodes.OK


def _confirm(app: App, target: str) -> None:
    confirm(
        app.args.force,
        f"revoking {target}",
        f"Revoke {target}? It must re-enroll with a new token. Type 'revoke' to confirm: ",
        "revoke",
        "nothing revoked",
    )


async def revoke(app: App) -> int:
    args = app.args
    given = [f for f in (args.cert_node, args.operator, args.serial) if f]
    if len(given) != 1:
        raise InvalidArgument("name exactly one of --node ID, --operator NAME or --serial S")
    target = (
        f"node {args.cert_node}"
        if args.cert_node
        else (f"operator {args.operator}" if args.operator else f"certificate {args.serial}")
    )
    _confirm(app, target)
    context = app.context
    async with certs(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(
            stub.RevokeCertificate,
            certs_pb2.RevokeRequest(
                node_id=args.cert_node,
                operator=args.operator,
                serial=args.serial,
                reason=args.reason,
            ),
        )
    now = time.time()
    data = {
        "revoked": [certificate_row(c, now) for c in answer.revoked],
        "streams_closed": answer.streams_closed,
        "agents_told": answer.agents_told,
    }
    serials = ", ".join(c.serial for c in answer.revoked)
    app.out.text(
        data,
        f"revoked {len(answer.revoked)} certificate(s) of {target} ({serials}); "
        f"{answer.streams_closed} stream(s) closed; revoked list sent to "
        f"{answer.agents_told} connected agent(s)",
    )
    return exitcodes.OK
