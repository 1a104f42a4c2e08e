"""Permits: the decision (pure) and the table of permits workloads hold.

`decide` is the only place that says yes or no. It fails closed: any latched stop
denies; an agent that has not yet heard the hub since it started denies (INV-BOOT-01); a
disabled switch (fleet or node) denies. The order of the checks fixes which reason a
workload sees when several apply: `estop`, then `syncing`, then `autonomy_disabled`.

The table is bounded: a local user holds at most `PermitLimits.per_caller` permits and
the agent at most `PermitLimits.total`; a grant beyond either is refused (Overloaded,
RESOURCE_EXHAUSTED) naming the limit, never queued. A permit lives no longer than the
connection that asked for it: when the local socket sees that connection close (the
workload exited or died), `release_connection` revokes what it held.
"""

import asyncio
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from edgecommon.errors import InvalidArgument, Overloaded

ACTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
MAX_UNITS = 1_000_000


class Reason(StrEnum):
    GRANTED = "granted"
    ESTOP = "estop"
    SYNCING = "syncing"
    AUTONOMY_DISABLED = "autonomy_disabled"
    NOT_LEADER = "not_leader"
    HOLDER_GONE = "holder_gone"  # a revocation only: the connection that asked is closed


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


@dataclass(frozen=True)
class PermitOwner:
    """Who asked for a permit: the local user and the connection it asked on."""

    uid: int
    user: str
    connection: int


@dataclass(frozen=True)
class PermitLimits:
    per_caller: int = 64  # [local].max_permits_per_caller
    total: int = 1024  # [local].max_permits_total


@dataclass
class HeldPermit:
    permit_id: str
    action: str
    units: int
    holder: str
    granted_unix: float
    epoch: int = 0  # leader-only permits: the fencing epoch they were granted under
    owner: PermitOwner | None = None  # None: granted in-process, tied to no connection
    revoked: asyncio.Event = field(default_factory=asyncio.Event)
    revoke_reason: Decision | None = None


@dataclass(frozen=True)
class PermitStatistics:
    held: int
    holders: int  # local users holding at least one permit
    granted: int  # since the agent started
    released: int  # by their holders
    refused_over_limit: int  # grants refused by [local].max_permits_per_caller or _total
    revoked: dict[Reason, int]  # per reason (a stop, a switch, leadership, a closed caller)


class PermitTable:
    """Permits granted and not yet released. Revoking ends every watcher at once."""

    def __init__(self, limits: PermitLimits | None = None) -> None:
        self.limits = limits or PermitLimits()
        self._held: dict[str, HeldPermit] = {}
        self._per_uid: Counter[int] = Counter()
        # Counted for statistics(), since the agent started.
        self._granted = self._released = self._refused = 0
        self._revoked: Counter[Reason] = Counter()

    def __len__(self) -> int:
        return len(self._held)

    def statistics(self) -> PermitStatistics:
        return PermitStatistics(
            held=len(self._held),
            holders=len(self._per_uid),
            granted=self._granted,
            released=self._released,
            refused_over_limit=self._refused,
            revoked={r: self._revoked[r] for r in Reason if r is not Reason.GRANTED},
        )

    def grant(
        self,
        action: str,
        units: int,
        holder: str,
        now_unix: float,
        epoch: int = 0,
        owner: PermitOwner | None = None,
    ) -> HeldPermit:
        self._check_limits(owner)
        permit = HeldPermit(secrets.token_hex(8), action, units, holder, now_unix, epoch, owner)
        self._held[permit.permit_id] = permit
        if owner is not None:
            self._per_uid[owner.uid] += 1
        self._granted += 1
        return permit

    def _check_limits(self, owner: PermitOwner | None) -> None:
        if owner is not None and self._per_uid[owner.uid] >= self.limits.per_caller:
            self._refused += 1
            raise Overloaded(
                f"{owner.user} (uid {owner.uid}) already holds {self._per_uid[owner.uid]} "
                f"permits, the most [local].max_permits_per_caller = {self.limits.per_caller} "
                "allows: release permits it no longer uses, or raise that limit in agent.toml"
            )
        if len(self._held) >= self.limits.total:
            self._refused += 1
            raise Overloaded(
                f"this agent already holds {len(self._held)} permits, the most "
                f"[local].max_permits_total = {self.limits.total} allows: release permits "
                "no longer used, or raise that limit in agent.toml"
            )

    def get(self, permit_id: str) -> HeldPermit | None:
        return self._held.get(permit_id)

    def held_by(self, uid: int) -> int:
        return self._per_uid[uid]

    def _remove(self, permit_id: str) -> HeldPermit | None:
        permit = self._held.pop(permit_id, None)
        if permit is not None and permit.owner is not None:
            self._per_uid[permit.owner.uid] -= 1
            if not self._per_uid[permit.owner.uid]:
                del self._per_uid[permit.owner.uid]
        return permit

    def release(self, permit_id: str) -> bool:
        if self._remove(permit_id) is None:
            return False
        self._released += 1
        return True

    def _revoke(self, permits: list[HeldPermit], why: Decision) -> list[HeldPermit]:
        for permit in permits:
            self._remove(permit.permit_id)
            self._revoked[why.reason] += 1
            permit.revoke_reason = why
            permit.revoked.set()
        return permits

    def revoke_all(self, why: Decision, leader_only: bool = False) -> list[HeldPermit]:
        """Revoke every held permit (or only the leader-only ones)."""
        return self._revoke([p for p in self._held.values() if p.epoch or not leader_only], why)

    def release_connection(self, connection: int) -> list[HeldPermit]:
        """The local connection `connection` closed: revoke what was asked for on it (a
        watcher on another connection of the same workload hears `holder_gone`)."""
        gone = [p for p in self._held.values() if p.owner and p.owner.connection == connection]
        why = Decision(False, Reason.HOLDER_GONE, "the connection that asked for it closed")
        return self._revoke(gone, why)
