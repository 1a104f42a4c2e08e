"""Where a replica's journal parts from the leader's: a bisection over entry hashes.

Hashes chain, so if entry i agrees on both sides every entry before it agrees too: the
predicate "same hash at i" is true up to the last common entry and false after it. The
search keeps `good` (known to agree; index 0, before the first entry, always does) and
`bad` (known to differ, or one past the shorter journal) and halves the gap each round:
ceil(log2(n + 1)) round trips for journals of n entries.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bisection:
    good: int
    bad: int

    @property
    def done(self) -> bool:
        return self.bad - self.good <= 1

    def probe(self) -> int:
        return (self.good + self.bad) // 2

    def after(self, index: int, same: bool) -> "Bisection":
        return Bisection(index, self.bad) if same else Bisection(self.good, index)


@dataclass(frozen=True)
class Verdict:
    common: int  # last index both journals agree on
    diverged_at: int  # first local index that is not on the leader (0: not diverged)
    probes: int


def start(local_last: int, leader_last: int) -> Bisection:
    return Bisection(0, min(local_last, leader_last) + 1)


def verdict(b: Bisection, local_last: int, probes: int) -> Verdict:
    """A replica that is only behind (its whole journal is a prefix) has not diverged."""
    diverged = b.good < local_last
    return Verdict(b.good, b.good + 1 if diverged else 0, probes)


async def find_divergence(
    local_last: int,
    leader_last: int,
    local_hash: Callable[[int], Awaitable[bytes | None]],
    leader_hash: Callable[[int], Awaitable[bytes | None]],
) -> Verdict:
    b, probes = start(local_last, leader_last), 0
    while not b.done:
        i = b.probe()
        mine, theirs = await local_hash(i), await leader_hash(i)
        probes += 1
        b = b.after(i, mine is not None and mine == theirs)
    return verdict(b, local_last, probes)
