"""The audit commands' flags, filters and output, the same for `edgectl audit` (through the
hub) and `edge-hub audit` (directly against the audit database, on the hub host).

One table of flags per command builds both parsers and the argument list edgectl hands to
`edge-hub audit` when it is asked to read the database directly, so the two cannot drift:
a flag added here reaches both, and is forwarded. Rendering is shared for the same reason:
`edgectl audit query --pg-url` prints what `edgectl audit query` prints.
"""

import argparse
import contextlib
import datetime as dt
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecommon.audit_record import (
    OUTCOMES,
    AuditEvent,
    AuditFilter,
    csv_header,
    export_dict,
    to_csv_row,
    to_jsonl_line,
)
from edgecommon.cli import exitcodes
from edgecommon.cli.output import Column, Renderer, iso
from edgecommon.config import parse_duration
from edgecommon.errors import InvalidArgument

PG_ENV = "AUTONOMY_AUDIT_PG_URL"
_DAYS_RE = re.compile(r"^([1-9][0-9]{0,4})d$")


@dataclass(frozen=True)
class Flag:
    """One option of an audit command: how to parse it and how to hand it on."""

    name: str
    dest: str
    help: str
    default: object = None
    kind: Callable[[str], object] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    switch: bool = False  # present or absent (store_true)
    required: bool = False

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.switch:
            parser.add_argument(self.name, dest=self.dest, action="store_true", help=self.help)
            return
        parser.add_argument(
            self.name,
            dest=self.dest,
            default=self.default,
            type=self.kind,
            choices=self.choices,
            metavar=self.metavar,
            required=self.required,
            help=self.help,
        )

    def argv(self, args: argparse.Namespace) -> list[str]:
        value = getattr(args, self.dest)
        if self.switch:
            return [self.name] if value else []
        if value is None or (value == self.default and not self.required):
            return []
        # One word, so that a value starting with '-' (a reason) is not taken for an option.
        return [f"{self.name}={value}"]


FILTERS = (
    Flag("--since", "since", "ISO time (2026-11-01T00:00:00Z) or an age (2h, 7d)"),
    Flag("--until", "until", "ISO time or an age"),
    Flag("--operator", "who", "events by this operator", default=""),
    Flag("--action", "action", "e.g. estop.engage", default=""),
    Flag("--outcome", "outcome", "attempt, success, ...", default="", choices=("", *OUTCOMES)),
    Flag("--target", "target", "e.g. group:site-a, node:n1", default=""),
)


@dataclass(frozen=True)
class Command:
    help: str
    flags: tuple[Flag, ...]


COMMANDS = {
    "query": Command(
        "events matching filters, oldest first",
        (
            *FILTERS,
            Flag("--limit", "limit", "at most this many (100)", default=100, kind=int),
            Flag("--after-seq", "after_seq", "page on from this sequence", default=0, kind=int),
        ),
    ),
    "export": Command(
        "every matching event as JSON lines or CSV",
        (
            *FILTERS,
            Flag("--format", "format", "jsonl (default) or csv", "jsonl", choices=("jsonl", "csv")),
            Flag("--file", "file", "write here instead of stdout", kind=Path),
        ),
    ),
    "verify": Command("check the hash chain; name any tampered event", ()),
    "prune": Command(
        "delete events older than N days (keeps an anchor)",
        (
            Flag("--older-than", "older_than", "e.g. 90d", metavar="Nd", required=True),
            Flag("--reason", "reason", "recorded with the prune event", default=""),
            Flag("--force", "force", "do not ask to confirm", switch=True),
        ),
    ),
}


def add_commands(sub: argparse._SubParsersAction) -> dict[str, argparse.ArgumentParser]:
    """The query, export, verify and prune parsers with their flags; the caller adds
    --pg-url and what runs each."""
    parsers = {}
    for name, command in COMMANDS.items():
        parser = sub.add_parser(name, help=command.help)
        for flag in command.flags:
            flag.add_to(parser)
        parsers[name] = parser
    return parsers


def forward_argv(command: str, args: argparse.Namespace) -> list[str]:
    """`edge-hub audit COMMAND ...` words for what was parsed from `edgectl audit COMMAND`."""
    return ["audit", command, *(w for flag in COMMANDS[command].flags for w in flag.argv(args))]


def pg_url(flag: str | None, environ: Mapping[str, str]) -> str:
    """The database to read directly: --pg-url, else AUTONOMY_AUDIT_PG_URL, else ''."""
    url = flag if flag is not None else environ.get(PG_ENV, "")
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise InvalidArgument(f"--pg-url {url!r}: use a URL like postgresql://user@host/db")
    return url


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


def audit_filter(
    args: argparse.Namespace, now: float, limit: int, after_seq: int = 0
) -> AuditFilter:
    since = parse_time("--since", args.since, now)
    until = parse_time("--until", args.until, now)
    if since is not None and until is not None and since > until:
        raise InvalidArgument("--since must be before --until")
    if limit < 0 or after_seq < 0:
        raise InvalidArgument("--limit and --after-seq must not be negative")
    return AuditFilter(
        since=since,
        until=until,
        operator=args.who,
        action=args.action,
        outcome=args.outcome,
        target=args.target,
        after_seq=after_seq,
        limit=limit,
    )


def query_filter(args: argparse.Namespace, now: float) -> AuditFilter:
    if args.limit < 1:
        raise InvalidArgument("--limit must be at least 1")
    return audit_filter(args, now, args.limit, args.after_seq)


def render_events(out: Renderer, events: Sequence[AuditEvent], backend: str, more: bool) -> None:
    rows = [{**e.to_dict(), "when": iso(e.time)} for e in events]
    data = {"backend": backend, "events": [export_dict(e) for e in events], "more": more}
    footer = f"{len(events)} event(s) from {backend}"
    if more:
        footer += f"; more match: --after-seq {events[-1].seq}"
    out.table(
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


async def write_export(
    out: Renderer, events: AsyncIterator[AuditEvent], fmt: str, target: Path | None
) -> None:
    """Stream `events` as JSON lines or CSV to `target`, or to stdout."""
    count = 0
    with contextlib.ExitStack() as stack:
        sink = (
            stack.enter_context(target.open("w", encoding="utf-8", newline=""))
            if target
            else sys.stdout
        )
        if fmt == "csv":
            sink.write(csv_header())
        async for event in events:
            sink.write(to_csv_row(event) if fmt == "csv" else to_jsonl_line(event))
            count += 1
    if target:
        out.note(f"{count} event(s) written to {target}")


def show_verify(out: Renderer, report: Any, backend: str) -> int:
    """Print a chain report (the backend's or the hub's answer, same field names)."""
    data = {
        "ok": report.ok,
        "checked": report.checked,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "problems": list(report.problems),
        "backend": backend,
    }
    if data["ok"]:
        message = (
            f"audit log {backend} intact: {data['checked']} events "
            f"(seq {data['first_seq']}..{data['last_seq']}) chain verified"
        )
    else:
        message = "\n".join([f"audit log {backend} FAILED verification:", *data["problems"]])
    out.text(data, message)
    return exitcodes.OK if data["ok"] else exitcodes.FAILED


def show_prune(out: Renderer, older_than: str, data: dict[str, Any]) -> None:
    """Print a prune's result: removed, anchor_seq (or None), backend, event_seq."""
    anchor = f"; chain anchored at seq {data['anchor_seq']}" if data["anchor_seq"] else ""
    out.text(
        data,
        f"pruned {data['removed']} event(s) older than {older_than} from "
        f"{data['backend']}{anchor}; the prune is event {data['event_seq']}",
    )
