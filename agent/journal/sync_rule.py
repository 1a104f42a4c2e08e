"""Whether the leader may append, and when an entry counts as committed (pure).

Safety rule (INV-REPL-01): in synchronous mode an entry is acknowledged as committed only
once every replica the leader waits for has it durable. The leader waits for every member
of the sync set and every joining member it knows of; the hub names a member eligible to
take over only once the leader confirmed it holds every committed entry, so whoever takes
over holds everything that was acknowledged. In strict mode the leader refuses to append
at all while a member it must wait for is not heard from: it never promises what it
cannot keep. Without strict mode it waits only for the members it hears from (degraded).

What counts as a replica holding an entry: a pull names the replica's last durable entry
(`after_index` and its hash), but anyone holding the replica's key can name any entry —
its hash is one EntryHash call away. So a replica's acknowledgement counts only up to what
the leader actually sent it on that pull stream (`acknowledged`): entries this leadership
began with (`base`: committed by its own rule, nobody waits for them), then entries sent on
the stream, in order, from a position already counted (`covered_after`). A claim beyond
that counts only up to it; a replica that really holds more (it restarted and lost its
stream) pulls again from there and is sent them. Only members of the current plan, with
a certificate that is not revoked, count at all (agent/journal/replication.py).
"""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SyncView:
    me: str
    group: str
    epoch: int  # the epoch this leader appends under
    plan_epoch: int  # the epoch of the hub's last replication plan
    members: tuple[str, ...]  # sync set and joining members, as the leader knows them
    min_sync: int
    strict: bool
    seen_age_s: Mapping[str, float]  # seconds since each replica last pulled
    timeout_s: float

    def others(self) -> tuple[str, ...]:
        return tuple(m for m in self.members if m != self.me)

    def heard(self, node: str) -> bool:
        age = self.seen_age_s.get(node)
        return age is not None and age <= self.timeout_s


def append_refusal(v: SyncView) -> str | None:
    """Why the leader must not append now, or None."""
    if v.min_sync == 0:
        return None
    if v.plan_epoch != v.epoch:
        return (
            f"not ready: waiting for the hub's sync set for epoch {v.epoch} "
            "(it follows every change of leader within a second)"
        )
    if not v.strict:
        return None
    others = v.others()
    if len(others) < v.min_sync:
        return (
            f"quorum lost: the sync set of group {v.group} has {len(others)} of "
            f"{v.min_sync} required replicas; strict mode refuses appends "
            f"('edgectl quorum restore --group {v.group}')"
        )
    lost = [m for m in others if not v.heard(m)]
    if lost:
        ages = ", ".join(
            f"{m} (last pull {v.seen_age_s[m]:.1f}s ago)" if m in v.seen_age_s else f"{m} (never)"
            for m in lost
        )
        return (
            f"quorum lost: sync replica {ages} not heard from within {v.timeout_s:g}s; strict "
            f"mode refuses appends ('edgectl quorum status --group {v.group}')"
        )
    return None


def must_confirm(v: SyncView) -> tuple[str, ...]:
    """Whom an entry appended now must reach before it counts as committed."""
    if v.min_sync == 0:
        return ()
    if v.strict:
        return v.others()
    return tuple(m for m in v.others() if v.heard(m))


def missing(index: int, must: tuple[str, ...], durable: Mapping[str, int]) -> tuple[str, ...]:
    """Members of `must` that do not yet hold entry `index` durably."""
    return tuple(m for m in must if durable.get(m, 0) < index)


def confirmed_members(
    members: tuple[str, ...], commit_index: int, durable: Mapping[str, int]
) -> tuple[str, ...]:
    """Members that hold every committed entry (the leader reports these to the hub)."""
    return tuple(m for m in members if durable.get(m, 0) >= commit_index)


def acknowledged(claim: int, base: int, covered: int) -> int:
    """How much of a replica's claim (`after_index`) counts as durable on it: at most what
    this leadership began with (`base`) or the pull stream covers (`covered`)."""
    return min(claim, max(base, covered))


def covered_after(claim: int, base: int, covered: int, sent_through: int) -> int:
    """What a pull stream covers once the leader answered `claim` with entries up to
    `sent_through`: they extend it only when they follow a position it already counts
    (an answer to a claim beyond that is disconnected from anything the replica was sent)."""
    if claim <= max(base, covered):
        return max(covered, sent_through)
    return covered
