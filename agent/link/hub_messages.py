"""What the agent does with each kind of message from the hub: one table, kind -> handler.

A kind is the name of the field set in `HubMessage.body`. The subsystem a message is for
handles it (safety: stops, releases, the fleet switch; the lease keeper: nudges; the
journal: plans; the revoked serials: revocations) and says so in its `hub_handlers()`;
agent.assemble merges those into one `Handlers` and hands it to the link, which only moves
messages: it reads one, looks its kind up, and writes whatever the handler replies. So a
new kind touches the proto, the hub's sender and its handler, nothing else.

Two kinds are the link's own, about the stream itself (`registered`, `backoff`); every
other kind must have exactly one handler, or building the table fails (TypeError) before
the agent starts: a message nobody handles is a bug, never a silent skip.

A handler gets the message's body and a `Reply` to answer on the same stream (an
acknowledgement the hub waits for): it queues, it never blocks.

The same holds for what subsystems add to each heartbeat (`HeartbeatPart`).
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from edgecommon.pb import link_pb2

Reply = Callable[[link_pb2.AgentMessage], None]
# The body of one kind (link_pb2.EstopCommand for `estop`, ...) and how to answer it.
Handler = Callable[[Any, Reply], Awaitable[None]]
# Adds a subsystem's facts to a heartbeat about to be sent.
HeartbeatPart = Callable[[link_pb2.Heartbeat], Awaitable[None]]

HUB_MESSAGE_KINDS = frozenset(
    field.name for field in link_pb2.HubMessage.DESCRIPTOR.oneofs_by_name["body"].fields
)
# The link's own: the answer to its registration, and the hub asking it to reconnect later.
LINK_KINDS = frozenset({"registered", "backoff"})
HANDLED_KINDS = HUB_MESSAGE_KINDS - LINK_KINDS


class Handlers:
    """The table the link looks each hub message up in; complete by construction."""

    def __init__(self, tables: Iterable[Mapping[str, Handler]]) -> None:
        merged: dict[str, Handler] = {}
        for table in tables:
            for kind, handler in table.items():
                if kind in merged:
                    raise TypeError(f"two handlers for hub message kind {kind!r}")
                merged[kind] = handler
        missing = sorted(HANDLED_KINDS - merged.keys())
        unknown = sorted(merged.keys() - HANDLED_KINDS)
        if missing or unknown:
            raise TypeError(
                "hub message handlers do not match HubMessage.body: "
                + "; ".join(
                    f"{what}: {', '.join(kinds)}"
                    for what, kinds in (("no handler for", missing), ("not a kind", unknown))
                    if kinds
                )
            )
        self._by_kind = MappingProxyType(merged)

    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)

    async def handle(self, kind: str, message: link_pb2.HubMessage, reply: Reply) -> None:
        """Hand `message` (of `kind`, one of HANDLED_KINDS) to its handler."""
        await self._by_kind[kind](getattr(message, kind), reply)
