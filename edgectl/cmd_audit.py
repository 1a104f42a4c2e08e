"""edgectl audit: query, export, verify and prune the audit log.

Through the hub by default (the hub's PostgreSQL log when it has one, else its file
log; RBAC applies: audit.read, audit.prune). With --pg-url (or AUTONOMY_AUDIT_PG_URL)
edgectl reads the `audit_events` table directly; the database's own privileges then
govern, and a prune is recorded in the chain under AUTONOMY_OPERATOR or the context's
operator.
"""

import argparse
import contextlib
import dataclasses
import datetime as dt
import getpass
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edgecommon.audit_record import (
    AuditEvent,
    AuditFilter,
    csv_header,
    export_dict,
    to_csv_row,
    to_jsonl_line,
)
from edgecommon.cli import exitcodes
from edgecommon.cli.confirm import confirm
from edgecommon.cli.output import Column, iso
from edgecommon.clock import SystemClock
from edgecommon.config import parse_duration
from edgecommon.errors import InvalidArgument
from edgecommon.pb import audit_pb2
from edgectl.app import App
from edgectl.clients import audit
from hub.audit.event import NewEvent
from hub.audit.pg_log import PgAuditLog

PG_ENV = "AUTONOMY_AUDIT_PG_URL"
EXPORT_TIMEOUT_S = 600.0
_DAYS_RE = re.compile(r"^([1-9][0-9]{0,4})d$")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="query, export, verify and prune the audit log")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    query = asub.add_parser("query", help="events matching filters, oldest first")
    _filters(query)
    query.add_argument("--limit", type=int, default=100, help="at most this many (100)")
    query.add_argument("--after-seq", type=int, default=0, help="page on from this sequence")
    query.set_defaults(func=query_cmd)

    export = asub.add_parser("export", help="every matching event as JSON lines or CSV")
    _filters(export)
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--file", type=Path, help="write here instead of stdout")
    export.set_defaults(func=export_cmd)

    verify = asub.add_parser("verify", help="check the hash chain; name any tampered event")
    _pg(verify)
    verify.set_defaults(func=verify_cmd)

    prune = asub.add_parser("prune", help="delete events older than N days (keeps an anchor)")
    prune.add_argument("--older-than", required=True, metavar="Nd", help="e.g. 90d")
    prune.add_argument("--reason", default="", help="recorded with the prune event")
    prune.add_argument("--force", action="store_true", help="do not ask to confirm")
    _pg(prune)
    prune.set_defaults(func=prune_cmd)

    asub.add_parser("status", help="the hub's audit backends and fallbacks").set_defaults(
        func=status_cmd
    )


def _pg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pg-url",
        default=None,
        help=f"read PostgreSQL directly (default: {PG_ENV}; unset: through the hub)",
    )


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="ISO time (2026-11-01T00:00:00Z) or an age (2h, 7d)")
    parser.add_argument("--until", help="ISO time or an age")
    parser.add_argument("--operator", dest="who", default="", help="events by this operator")
    parser.add_argument("--action", default="", help="e.g. estop.engage")
    parser.add_argument(
        "--outcome",
        default="",
        choices=("", "attempt", "success", "failure", "denied", "bypassed"),
    )
    parser.add_argument("--target", default="", help="e.g. group:site-a, node:n1")
    _pg(parser)


def parse_time(flag: str, text: str | None, now: float) -> float | None:
    """An ISO 8601 time (UTC unless it says otherwise) or an age before now."""
    if not text:
        return None
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"{flag} {text!r}: use an ISO time like 2026-11-01T08:00:00Z or an age like 2h"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def parse_days(text: str) -> float:
    match = _DAYS_RE.fullmatch(text.strip())
    if not match:
        raise InvalidArgument(
            f"--older-than {text!r}: give a whole number of days like 90d (at least 1d)"
        )
    return int(match.group(1)) * 86400.0


def pg_url(app: App) -> str:
    url = app.args.pg_url if app.args.pg_url is not None else app.environ.get(PG_ENV, "")
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise InvalidArgument(f"--pg-url {url!r}: use a URL like postgresql://user@host/db")
    return url


def audit_filter(app: App, limit: int, after_seq: int = 0) -> AuditFilter:
    now = SystemClock().wall()
    since = parse_time("--since", app.args.since, now)
    until = parse_time("--until", app.args.until, now)
    if since is not None and until is not None and since > until:
        raise InvalidArgument("--since must be before --until")
    if limit < 0 or after_seq < 0:
        raise InvalidArgument("--limit and --after-seq must not be negative")
    return AuditFilter(
        since=since,
        until=until,
        operator=app.args.who,
        action=app.args.action,
        outcome=app.args.outcome,
        target=app.args.target,
        after_seq=after_seq,
        limit=limit,
    )


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


@contextlib.asynccontextmanager
async def direct(url: str) -> AsyncIterator[PgAuditLog]:
    log = PgAuditLog(url, SystemClock())
    await log.open()
    try:
        yield log
    finally:
        await log.close()


def render_events(app: App, events: list[AuditEvent], backend: str, more: bool) -> None:
    rows = [
        {
            **e.to_dict(),
            "when": iso(e.time),
        }
        for e in events
    ]
    data = {"backend": backend, "events": [export_dict(e) for e in events], "more": more}
    footer = f"{len(events)} event(s) from {backend}"
    if more:
        footer += f"; more match: --after-seq {events[-1].seq}"
    app.out.table(
        data,
        rows,
        [
            Column("SEQ", "seq"),
            Column("TIME", "when"),
            Column("OPERATOR", "operator"),
            Column("ACTION", "action"),
            Column("TARGET", "target"),
            Column("OUTCOME", "outcome"),
            Column("REASON", "reason"),
            Column("DETAIL", "detail"),
        ],
        footer=footer,
    )


async def query_cmd(app: App) -> int:
    if app.args.limit < 1:
        raise InvalidArgument("--limit must be at least 1")
    f = audit_filter(app, app.args.limit, app.args.after_seq)
    url = pg_url(app)
    if url:
        async with direct(url) as log:
            found = await log.query(dataclasses.replace(f, limit=f.limit + 1))
        render_events(app, found[: f.limit], log.name, len(found) > f.limit)
        return exitcodes.OK
    context = app.context
    async with audit(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(stub.Query, query_request(f))
    render_events(app, [event_of(m) for m in answer.events], answer.backend, answer.more)
    return exitcodes.OK


async def _events(app: App, f: AuditFilter) -> AsyncIterator[AuditEvent]:
    url = pg_url(app)
    if url:
        async with direct(url) as log:
            async for event in log.export(f):
                yield event
        return
    context = app.context
    timeout = max(app.timeout_s, EXPORT_TIMEOUT_S)
    async with audit(context, app.hub(context), timeout) as (stub, call):
        async for chunk in call.stream(stub.Export, query_request(f)):
            for m in chunk.events:
                yield event_of(m)


async def export_cmd(app: App) -> int:
    f = audit_filter(app, 0)
    fmt = app.args.format
    target = app.args.file
    count = 0
    with contextlib.ExitStack() as stack:
        out = (
            stack.enter_context(target.open("w", encoding="utf-8", newline=""))
            if target
            else sys.stdout
        )
        if fmt == "csv":
            out.write(csv_header())
        async for event in _events(app, f):
            out.write(to_csv_row(event) if fmt == "csv" else to_jsonl_line(event))
            count += 1
    if target:
        app.out.note(f"{count} event(s) written to {target}")
    return exitcodes.OK


def _verify_data(report: Any, backend: str) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "checked": report.checked,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "problems": list(report.problems),
        "backend": backend,
    }


async def verify_cmd(app: App) -> int:
    url = pg_url(app)
    if url:
        async with direct(url) as log:
            data = _verify_data(await log.verify(), log.name)
    else:
        context = app.context
        async with audit(context, app.hub(context), app.timeout_s) as (stub, call):
            answer = await call(stub.Verify, audit_pb2.AuditVerifyRequest())
        data = _verify_data(answer, answer.backend)
    if data["ok"]:
        message = (
            f"audit log {data['backend']} intact: {data['checked']} events "
            f"(seq {data['first_seq']}..{data['last_seq']}) chain verified"
        )
    else:
        message = "\n".join(
            [f"audit log {data['backend']} FAILED verification:", *data["problems"]]
        )
    app.out.text(data, message)
    return exitcodes.OK if data["ok"] else exitcodes.FAILED


def _who(app: App) -> str:
    claimed = app.environ.get("AUTONOMY_OPERATOR", "").strip()
    return claimed or app.context.operator or getpass.getuser()


async def prune_cmd(app: App) -> int:
    older_than_s = parse_days(app.args.older_than)
    age = app.args.older_than
    confirm(
        app.args.force,
        f"prune audit events older than {age}",
        f"Prune audit events older than {age}? Type {age!r} to confirm: ",
        age,
        "nothing pruned",
    )
    url = pg_url(app)
    if url:
        days = older_than_s / 86400
        event = NewEvent(
            operator=_who(app),
            action="audit.prune",
            target="audit-log",
            scope="fleet",
            outcome="success",
            request_id="",
            reason=app.args.reason,
            detail=f"removed events older than {days:g}d (direct database access)",
        )
        async with direct(url) as log:
            report = await log.prune(SystemClock().wall() - older_than_s, event)
        data = {
            "removed": report.removed,
            "anchor_seq": report.anchor.seq if report.anchor else None,
            "backend": log.name,
            "event_seq": report.event.seq,
        }
    else:
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
    anchor = f"; chain anchored at seq {data['anchor_seq']}" if data["anchor_seq"] else ""
    app.out.text(
        data,
        f"pruned {data['removed']} event(s) older than {app.args.older_than} from "
        f"{data['backend']}{anchor}; the prune is event {data['event_seq']}",
    )
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
