"""edgectl journal append|read: the group's replicated journal."""

import argparse
import base64
import sys

from edgecommon.cli import exitcodes
from edgecommon.cli.output import Column, iso
from edgecommon.errors import InvalidArgument
from edgecommon.pb import replication_pb2
from edgectl.app import App
from edgectl.clients import local_journal, replication
from edgectl.context import agent_socket


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("journal", help="the group's replicated journal: append, read")
    jsub = p.add_subparsers(dest="journal_command", required=True, metavar="COMMAND")
    append = jsub.add_parser(
        "append", help="append an entry on the leader; answers once it is committed"
    )
    append.add_argument("key", metavar="KEY")
    append.add_argument("value", metavar="VALUE", help="the value (UTF-8); '-' reads stdin")
    append.add_argument(
        "--group",
        default="",
        help="send it to this group's leader through the hub (default: the local agent)",
    )
    append.set_defaults(func=append_cmd)
    read = jsub.add_parser("read", help="entries of the local agent's journal")
    read.add_argument("--from", dest="from_index", type=int, default=1, metavar="INDEX")
    read.add_argument("--key", default="", help="only entries with this key")
    read.add_argument("--limit", type=int, default=100, help="at most this many (1-1000)")
    read.set_defaults(func=read_cmd)


def _value(app: App) -> bytes:
    if app.args.value == "-":
        return sys.stdin.buffer.read()
    return str(app.args.value).encode()


def result_data(r: replication_pb2.AppendResult) -> dict[str, object]:
    return {
        "index": r.index,
        "epoch": r.epoch,
        "hash": r.hash.hex(),
        "committed": r.committed,
        "confirmed_by": list(r.confirmed_by),
        "leader": r.leader,
        "mode": r.mode,
    }


async def append_cmd(app: App) -> int:
    value = _value(app)
    request = replication_pb2.AppendRequest(key=app.args.key, value=value)
    if app.args.group:
        # Through the hub: it checks RBAC (journal.append), audits, and forwards to the leader.
        context = app.context
        async with replication(context, app.hub(context), app.timeout_s) as (stub, call):
            result = await call(
                stub.JournalAppend,
                replication_pb2.JournalAppendRequest(
                    group=app.args.group, key=app.args.key, value=value
                ),
            )
    else:
        socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
        async with local_journal(socket, label, app.timeout_s) as (stub, call):
            result = await call(stub.Append, request)
    how = (
        f"durable on {result.leader} and sync replica {', '.join(result.confirmed_by)}"
        if result.confirmed_by
        else f"durable on {result.leader} ({result.mode} mode)"
    )
    app.out.text(
        result_data(result),
        f"committed entry {result.index} (epoch {result.epoch}, hash {result.hash.hex()[:16]}): "
        f"{how}",
    )
    return exitcodes.OK


def _show(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(payload).decode()


async def read_cmd(app: App) -> int:
    if app.args.from_index < 1:
        raise InvalidArgument("--from must be 1 or more")
    if not 1 <= app.args.limit <= 1000:
        raise InvalidArgument("--limit must be between 1 and 1000")
    socket, label = agent_socket(app.args.socket, app.args.node, app.environ, app.context)
    async with local_journal(socket, label, app.timeout_s) as (stub, call):
        answer = await call(
            stub.Read,
            replication_pb2.ReadRequest(
                from_index=app.args.from_index, key=app.args.key, limit=app.args.limit
            ),
        )
    rows = [
        {
            "index": e.index,
            "epoch": e.epoch,
            "key": e.key,
            "value": _show(e.payload),
            "value_b64": base64.b64encode(e.payload).decode(),
            "hash": e.hash.hex(),
            "prev_hash": e.prev_hash.hex(),
            "appended": iso(e.appended_unix),
        }
        for e in answer.entries
    ]
    data = {"entries": rows, "last_index": answer.last_index, "commit_index": answer.commit_index}
    shown = [{**r, "hash": str(r["hash"])[:16]} for r in rows]
    app.out.table(
        data,
        shown,
        [
            Column("INDEX", "index"),
            Column("EPOCH", "epoch"),
            Column("KEY", "key"),
            Column("VALUE", "value"),
            Column("HASH", "hash"),
            Column("APPENDED", "appended"),
        ],
        footer=f"{len(rows)} entries shown; last index {answer.last_index}",
    )
    return exitcodes.OK
