"""Whether a node's journal report can be true, and how much of a leader's commit index the
hub adopts (pure).

Rule: the hub adopts only positions that are possible. Against the report itself and what
the hub last accepted from the same node:

* a node never counts an entry committed beyond its own last durable entry, and a leader
  never reports a replica durable beyond it (`COMMIT_BEYOND_JOURNAL`,
  `REPLICA_BEYOND_JOURNAL`);
* a journal's last index never moves back unless the node recorded a rewind (its rewind
  count, kept in journal.db, grew) (`JOURNAL_BACKWARDS`);
* a leader's commit index never moves back within one epoch (`COMMIT_BACKWARDS`).

A report that breaks one is refused whole: the hub keeps what it accepted before, the node
is a bad peer (it may not take over, it does not count as a healthy replica) until a report
is accepted again. Nothing here trusts the sender more because its certificate is valid: a
leader's key is enough to send any number.

A report can be self-consistent and still false (a leader claiming 2**62 entries, all
committed). In synchronous mode every committed entry is on every sync and joining member,
so `adoptable_commit` lets a leader's commit index count at the hub only up to the highest
position one of those members reports holding: one key alone can no longer make every
candidate look behind and stop failover.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from edgecommon.pb import link_pb2


class Refusal(StrEnum):
    """Why a report is impossible; stable values (logs, statistics)."""

    COMMIT_BEYOND_JOURNAL = "commit_beyond_journal"
    REPLICA_BEYOND_JOURNAL = "replica_beyond_journal"
    JOURNAL_BACKWARDS = "journal_backwards"
    COMMIT_BACKWARDS = "commit_backwards"


@dataclass(frozen=True)
class Position:
    """The positions in one journal report (or the last one the hub accepted)."""

    last_index: int
    rewinds: int = 0
    epoch: int = 0  # as leader; 0 when the node was not leading
    commit_index: int = 0
    replicas: tuple[tuple[str, int], ...] = ()  # a leader's view: (node, durable index)

    @classmethod
    def of(cls, report: link_pb2.JournalReport) -> "Position":
        return cls(
            report.last_index,
            report.rewinds,
            report.epoch,
            report.commit_index,
            tuple((r.node_id, r.durable_index) for r in report.replicas),
        )


@dataclass(frozen=True)
class Impossible:
    refusal: Refusal
    detail: str  # one line naming the numbers


def judge(before: Position | None, now: Position) -> Impossible | None:
    """Why `now` cannot be true given itself and `before` (the last accepted), or None."""
    if now.commit_index > now.last_index:
        return Impossible(
            Refusal.COMMIT_BEYOND_JOURNAL,
            f"commit index {now.commit_index} is beyond its own last entry {now.last_index}",
        )
    for node, durable in now.replicas:
        if durable > now.last_index:
            return Impossible(
                Refusal.REPLICA_BEYOND_JOURNAL,
                f"says replica {node} holds entry {durable} durably, beyond its own last "
                f"entry {now.last_index}",
            )
    if before is None:
        return None
    if now.last_index < before.last_index and now.rewinds <= before.rewinds:
        return Impossible(
            Refusal.JOURNAL_BACKWARDS,
            f"last index went back from {before.last_index} to {now.last_index} without a "
            f"recorded rewind (rewind count {now.rewinds}, was {before.rewinds})",
        )
    if now.epoch and now.epoch == before.epoch and now.commit_index < before.commit_index:
        return Impossible(
            Refusal.COMMIT_BACKWARDS,
            f"commit index went back from {before.commit_index} to {now.commit_index} within "
            f"epoch {now.epoch}",
        )
    return None


def adoptable_commit(commit_index: int, min_sync: int, holders_last: Iterable[int]) -> int:
    """How much of a leader's (accepted) commit index the hub adopts. `holders_last`: the
    positions the other sync and joining members report. Asynchronous mode, or no other
    holder yet (a one-node group, a set still empty): the leader's word, already bounded by
    its own journal (`judge`)."""
    positions = list(holders_last)
    if min_sync == 0 or not positions:
        return commit_index
    return min(commit_index, max(positions))
