"""The certificate serials the hub revoked, as this agent last heard them (persisted).

The hub is the fleet's only CA and there is no CRL: it sends its whole list on every
`Registered` and again to every agent whenever an operator revokes a certificate. The
agent replaces its list with each one, applies it in memory at once (the Peer service
checks it on every call) and writes it to agent.db, then tells its listeners: the Peer
service ends calls in flight from a revoked certificate, the leader stops counting
acknowledgements made with one. The list is loaded before the Peer service starts, so an
agent restarted while the hub is unreachable still refuses what was revoked. Only a list
from the hub replaces it: a lost message never shortens it.
"""

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from agent.link.hub_messages import Handler, Reply
from edgecommon.pb import link_pb2

log = logging.getLogger("edge-agent.revocations")


class RevocationStore(Protocol):
    async def revoked_serials(self) -> frozenset[str]: ...

    async def save_revoked_serials(self, serials: frozenset[str]) -> None: ...


class RevokedSerials:
    def __init__(self, store: RevocationStore | None = None) -> None:
        self.store = store  # None: kept in memory only (tests of the Peer service)
        self.serials: frozenset[str] = frozenset()
        self.updates = 0
        self.listeners: list[Callable[[frozenset[str]], None]] = []

    def __contains__(self, serial: object) -> bool:
        return serial in self.serials

    async def load(self) -> None:
        if self.store is not None:
            self.serials = await self.store.revoked_serials()
        if self.serials:
            log.info("%d revoked certificate serial(s) refused on the Peer service", len(self))

    def __len__(self) -> int:
        return len(self.serials)

    def hub_handlers(self) -> dict[str, Handler]:
        return {"revocations": self._on_revocations}

    async def _on_revocations(self, revocations: link_pb2.Revocations, reply: Reply) -> None:
        await self.replace(revocations.serials)

    async def replace(self, serials: Iterable[str]) -> frozenset[str]:
        """Take the hub's list; returns the serials that were not revoked before."""
        new = frozenset(s.strip().lower() for s in serials if s.strip())
        if new == self.serials:
            return frozenset()  # already applied and stored
        added = new - self.serials
        # Memory first: refusing a revoked peer must not wait for (or fail with) the disk.
        # A write that fails ends the hub stream; the next Registered brings the list again.
        self.serials = new
        self.updates += 1
        if added:
            log.warning(
                "certificate(s) revoked by the hub, refused from now on: %s",
                ", ".join(sorted(added)),
            )
            for listener in self.listeners:
                listener(added)
        if self.store is not None:
            await self.store.save_revoked_serials(new)
        return added
