"""edgectl audit: query, export, verify and prune the audit log.

Through the hub by default (the hub's PostgreSQL log when it has one, else its file
log; RBAC applies: audit.read, audit.prune). With --pg-url (or AUTONOMY_AUDIT_PG_URL)
the `audit_events` table is read directly by `edge-hub audit` (hub/admin.py), run here
with the same flags and output; the database's own privileges then govern, and a prune is
recorded in the chain under AUTONOMY_OPERATOR or the context's operator.
"""

import argparse
import getpass
from collections.abc import AsyncIterator

from edgecommon.audit_record import AuditEvent, AuditFilter
from edgecommon.cli import audit_view, exitcodes
from edgecommon.cli.confirm import confirm
from edgecommon.clock import SystemClock
from edgecommon.pb import audit_pb2
from edgectl import hubcmd
from edgectl.app import App
from edgectl.clients import audit

EXPORT_TIMEOUT_S = 600.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="query, export, verify and prune the audit log")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    handlers = {"query": query_cmd, "export": export_cmd, "verify": verify_cmd, "prune": prune_cmd}
    for name, parser in audit_view.add_commands(asub).items():
        parser.add_argument(
            "--pg-url",
            default=None,
            help=f"read PostgreSQL directly (default: {audit_view.PG_ENV}; unset: through the hub)",
        )
        parser.set_defaults(func=handlers[name])
    asub.add_parser("status", help="the hub's audit backends and fallbacks").set_defaults(
        func=status_cmd
    )


async def _direct(app: App, command: str, *extra: str) -> int | None:
    """With --pg-url or AUTONOMY_AUDIT_PG_URL: the exit code of `edge-hub audit COMMAND`
    run with the same flags and output. Without: None, and the caller asks the hub."""
    url = audit_view.pg_url(app.args.pg_url, app.environ)
    if not url:
        return None
    words = [*audit_view.forward_argv(command, app.args), *extra, f"--output={app.out.fmt}"]
    # The URL goes by the environment, never on a command line: it may hold a password.
    environ = {**app.environ, audit_view.PG_ENV: url}
    return await hubcmd.passthrough(words, environ, app.cwd)


def query_request(f: AuditFilter) -> audit_pb2.AuditQueryRequest:
    return audit_pb2.AuditQueryRequest(
        since_unix=f.since or 0.0,
        until_unix=f.until or 0.0,
        operator=f.operator,
        action=f.action,
        outcome=f.outcome,
        target=f.target,
        after_seq=f.after_seq,
        limit=f.limit,
    )


def event_of(m: audit_pb2.AuditEvent) -> AuditEvent:
    return AuditEvent(
        seq=m.seq,
        time=m.time_unix,
        operator=m.operator,
        action=m.action,
        target=m.target,
        scope=m.scope,
        outcome=m.outcome,
        request_id=m.request_id,
        reason=m.reason,
        detail=m.detail,
        prev_hash=m.prev_hash,
        hash=m.hash,
    )


async def query_cmd(app: App) -> int:
    f = audit_view.query_filter(app.args, SystemClock().wall())
    if (code := await _direct(app, "query")) is not None:
        return code
    context = app.context
    async with audit(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(stub.Query, query_request(f))
    audit_view.render_events(
        app.out, [event_of(m) for m in answer.events], answer.backend, answer.more
    )
    return exitcodes.OK


async def _events(app: App, f: AuditFilter) -> AsyncIterator[AuditEvent]:
    context = app.context
    timeout = max(app.timeout_s, EXPORT_TIMEOUT_S)
    async with audit(context, app.hub(context), timeout) as (stub, call):
        async for chunk in call.stream(stub.Export, query_request(f)):
            for m in chunk.events:
                yield event_of(m)


async def export_cmd(app: App) -> int:
    f = audit_view.audit_filter(app.args, SystemClock().wall(), 0)
    if (code := await _direct(app, "export")) is not None:
        return code
    await audit_view.write_export(app.out, _events(app, f), app.args.format, app.args.file)
    return exitcodes.OK


async def verify_cmd(app: App) -> int:
    if (code := await _direct(app, "verify")) is not None:
        return code
    context = app.context
    async with audit(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(stub.Verify, audit_pb2.AuditVerifyRequest())
    return audit_view.show_verify(app.out, answer, answer.backend)


def _who(app: App) -> str:
    claimed = app.environ.get("AUTONOMY_OPERATOR", "").strip()
    return claimed or app.context.operator or getpass.getuser()


async def prune_cmd(app: App) -> int:
    older_than_s = audit_view.parse_days(app.args.older_than)
    # Directly, edge-hub asks for the confirmation itself (on this terminal).
    if (code := await _direct(app, "prune", f"--by={_who(app)}")) is not None:
        return code
    age = app.args.older_than
    confirm(
        app.args.force,
        f"prune audit events older than {age}",
        f"Prune audit events older than {age}? Type {age!r} to confirm: ",
        age,
        "nothing pruned",
    )
    context = app.context
    async with audit(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(
            stub.Prune,
            audit_pb2.AuditPruneRequest(older_than_s=older_than_s, reason=app.args.reason),
        )
    data = {
        "removed": answer.removed,
        "anchor_seq": answer.anchor_seq or None,
        "backend": answer.backend,
        "event_seq": answer.event.seq,
    }
    audit_view.show_prune(app.out, age, data)
    return exitcodes.OK


async def status_cmd(app: App) -> int:
    context = app.context
    async with audit(context, app.hub(context), app.timeout_s) as (stub, call):
        s = await call(stub.AuditStatus, audit_pb2.AuditStatusRequest())
    data = {
        "primary": s.primary or None,
        "fallback": s.fallback,
        "fallbacks": s.fallbacks,
        "last_error": s.last_error or None,
        "unrecorded": s.unrecorded,
    }
    lines = [
        ("primary", s.primary or "(none: the file log is the audit log)"),
        ("fallback", s.fallback),
        ("events in fallback", s.fallbacks),
        ("last error", s.last_error or "-"),
        ("unrecorded", s.unrecorded),
    ]
    app.out.record(data, lines)
    return exitcodes.PARTIAL if s.unrecorded or s.last_error else exitcodes.OK
