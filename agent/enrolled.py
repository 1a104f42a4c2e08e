"""Whether this node is enrolled yet, and what exists once it is: the one owner of that.

The agent serves its local API and keeps its safety state from the start, enrolled or
not; the lease keeper, certificate renewal and the journal exist only once the node has a
certificate. agent.assemble builds them then and publishes them here, once; the local API
and the permit decision read them through this object, and answer "not enrolled yet"
until then. Nothing else is ever set on an object after it is built.
"""

from dataclasses import dataclass

from agent.journal.api import JournalParts
from agent.leases.keeper import LeaseKeeper
from agent.pki.credentials import NodeCredentials
from agent.pki.renewal import Renewer


@dataclass(frozen=True)
class EnrolledParts:
    renewer: Renewer  # keeps the node's current credentials
    keeper: LeaseKeeper
    journal: JournalParts


class Enrolled:
    def __init__(self, stored: NodeCredentials | None) -> None:
        # What the state directory held at start (None: the node enrolls during this run).
        self._stored = stored
        self._parts: EnrolledParts | None = None

    def publish(self, parts: EnrolledParts) -> None:
        if self._parts is not None:
            raise RuntimeError("the enrolled parts are built once per run")
        self._parts = parts

    def parts(self) -> EnrolledParts | None:
        return self._parts

    def credentials(self) -> NodeCredentials | None:
        """The node's current credentials, renewed in place once the renewer runs."""
        return self._parts.renewer.creds if self._parts is not None else self._stored

    def leadership(self) -> LeaseKeeper | None:
        return self._parts.keeper if self._parts is not None else None

    def journal(self) -> JournalParts | None:
        return self._parts.journal if self._parts is not None else None
