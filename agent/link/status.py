"""What `edgectl status` shows of the agent: its link to the hub and its statistics."""

from dataclasses import dataclass
from enum import StrEnum

from edgecommon.clock import Clock
from edgecommon.statistics import StatisticsBoard

# The agent's statistics sections, in the order status shows them (docs/statistics.md).
# Each is attached when its component exists: the link, leadership, journal replication
# and renewal only once the node is enrolled; until then they read as null.
AGENT_SECTIONS = (
    "safety",
    "link",
    "leadership",
    "journal",
    "replication",
    "replica",
    "peer",
    "renewal",
    "local_gate",
    "local_relay",
    "local_boundary",
)


def statistics_board() -> StatisticsBoard:
    return StatisticsBoard(AGENT_SECTIONS)


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
    disconnects: int = 0  # a registered link went down
    backoffs: int = 0  # waits before another attempt (after a failed or ended one)

    def enter(self, state: HubState, error: str = "", next_attempt_unix: float = 0.0) -> None:
        if state is not self.state:
            if self.state is HubState.CONNECTED:
                self.disconnects += 1
            if state is HubState.BACKOFF:
                self.backoffs += 1
            self.state = state
            self.since_unix = self.clock.wall()
        if error or state is HubState.CONNECTED:
            self.last_error = error
        self.next_attempt_unix = next_attempt_unix
