"""Divergence bisection: exhaustive over small journals, and its round-trip bound."""

import asyncio
import math

from agent.journal.divergence import find_divergence


def journals(common: int, local_extra: int, leader_extra: int) -> tuple[list[str], list[str]]:
    shared = [f"s{i}" for i in range(1, common + 1)]
    return shared + [f"l{i}" for i in range(local_extra)], shared + [
        f"r{i}" for i in range(leader_extra)
    ]


def run(local: list[str], leader: list[str]):  # type: ignore[no-untyped-def]
    async def lh(i: int) -> bytes | None:
        return b"0" if i == 0 else (local[i - 1].encode() if i <= len(local) else None)

    async def rh(i: int) -> bytes | None:
        return b"0" if i == 0 else (leader[i - 1].encode() if i <= len(leader) else None)

    return asyncio.run(find_divergence(len(local), len(leader), lh, rh))


def test_bisection_finds_the_divergence_point_for_every_small_case() -> None:
    for common in range(0, 17):
        for local_extra in range(0, 6):
            for leader_extra in range(0, 6):
                local, leader = journals(common, local_extra, leader_extra)
                v = run(local, leader)
                assert v.common == common
                assert v.diverged_at == (common + 1 if local_extra else 0)
                bound = math.ceil(math.log2(min(len(local), len(leader)) + 2))
                assert v.probes <= bound


def test_a_million_entries_take_about_twenty_round_trips() -> None:
    local, leader = journals(654_321, 3, 1000)
    v = run(local, leader)
    assert v.diverged_at == 654_322
    assert v.probes <= 20
