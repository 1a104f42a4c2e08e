"""Permits: the decision (pure) and the table of permits workloads hold.

`decide` is the only place that says yes or no. It fails closed: any latched stop
denies; an agent that has not yet heard the hub since it started denies (INV-BOOT-01); a
disabled switch (fleet or node) denies. The order of the checks fixes which reason a
workload sees when several apply: `estop`, then `syncing`, then `autonomy_disabled`.
"""

import asyncio
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from edgecommon.errors import InvalidArgument

ACTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
MAX_UNITS = 1_000_000


class Reason(StrEnum):
    GRANTED = "granted"
    ESTOP = "estop"
    SYNCING = "syncing"
    AUTONOMY_DISABLED = "autonomy_disabled"
    NOT_LEADER = "not_leader"


@dataclass(frozen=True)
class SafetyFacts:
    """What a permit decision depends on, as one immutable snapshot."""

    stop_reasons: tuple[str, ...]
    fleet_enabled: bool
    fleet_source: str
    node_enabled: bool
    node_source: str
    # Why the agent may not act on what it knows yet (INV-BOOT-01); "" once it may.
    syncing: str = ""

    @property
    def autonomy_effective(self) -> bool:
        return self.fleet_enabled and self.node_enabled


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: Reason
    detail: str


def check_request(action: str, units: int) -> int:
    """The validated unit count (0 means 1), or InvalidArgument."""
    if not ACTION_RE.fullmatch(action):
        raise InvalidArgument(
            f"action {action!r} is not valid: 1-128 characters of letters, digits and ._:/-"
        )
    if not 0 <= units <= MAX_UNITS:
        raise InvalidArgument(f"units {units} out of range: use 1..{MAX_UNITS}")
    return units or 1


def decide(facts: SafetyFacts) -> Decision:
    if facts.stop_reasons:
        return Decision(False, Reason.ESTOP, "emergency stop: " + "; ".join(facts.stop_reasons))
    if facts.syncing:
        return Decision(False, Reason.SYNCING, facts.syncing)
    if not facts.fleet_enabled:
        return Decision(
            False, Reason.AUTONOMY_DISABLED, f"autonomy disabled fleet-wide ({facts.fleet_source})"
        )
    if not facts.node_enabled:
        return Decision(
            False, Reason.AUTONOMY_DISABLED, f"autonomy disabled on this node ({facts.node_source})"
        )
    return Decision(True, Reason.GRANTED, "")


@dataclass
class HeldPermit:
    permit_id: str
    action: str
    units: int
    holder: str
    granted_unix: float
    epoch: int = 0  # leader-only permits: the fencing epoch they were granted under
    revoked: asyncio.Event = field(default_factory=asyncio.Event)
    revoke_reason: Decision | None = None


class PermitTable:
    """Permits granted and not yet released. Revoking ends every watcher at once."""

    def __init__(self) -> None:
        self._held: dict[str, HeldPermit] = {}

    def __len__(self) -> int:
        return len(self._held)

    def grant(
        self, action: str, units: int, holder: str, now_unix: float, epoch: int = 0
    ) -> HeldPermit:
        permit = HeldPermit(secrets.token_hex(8), action, units, holder, now_unix, epoch)
        self._held[permit.permit_id] = permit
        return permit

    def get(self, permit_id: str) -> HeldPermit | None:
        return self._held.get(permit_id)

    def release(self, permit_id: str) -> bool:
        return self._held.pop(permit_id, None) is not None

    def revoke_all(self, why: Decision, leader_only: bool = False) -> list[HeldPermit]:
        """Revoke every held permit (or only the leader-only ones)."""
        revoked = [p for p in self._held.values() if p.epoch or not leader_only]
        for permit in revoked:
            del self._held[permit.permit_id]
            permit.revoke_reason = why
            permit.revoked.set()
        return revoked
