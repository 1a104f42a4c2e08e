"""The agent's view of its link to the hub, as `edgectl status` shows it."""

from dataclasses import dataclass
from enum import StrEnum

from edgecommon.clock import Clock


class HubState(StrEnum):
    NOT_ENROLLED = "not_enrolled"
    ENROLLING = "enrolling"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"


@dataclass
class LinkStatus:
    """Written only by the enrollment and link tasks; read by the local API."""

    clock: Clock
    hub_address: str
    state: HubState = HubState.NOT_ENROLLED
    since_unix: float = 0.0
    last_error: str = ""
    next_attempt_unix: float = 0.0
    heartbeats_sent: int = 0
    connects: int = 0
    credential_problem: str = ""  # set while the node's own credential cannot work
    handovers: int = 0
    handover_failures: int = 0

    def enter(self, state: HubState, error: str = "", next_attempt_unix: float = 0.0) -> None:
        if state is not self.state:
            self.state = state
            self.since_unix = self.clock.wall()
        if error or state is HubState.CONNECTED:
            self.last_error = error
        self.next_attempt_unix = next_attempt_unix
