"""The leader's commit rule (pure), exhaustively over small sync sets."""

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.journal.sync_rule import (
    SyncView,
    acknowledged,
    append_refusal,
    confirmed_members,
    covered_after,
    missing,
    must_confirm,
)

NODES = ("b", "c", "d")


def view(members, ages, min_sync=1, strict=True, plan_epoch=3):  # type: ignore[no-untyped-def]
    return SyncView("a", "g", 3, plan_epoch, members, min_sync, strict, ages, 2.0)


def test_exhaustive_strict_mode_never_acknowledges_without_every_member() -> None:
    for size in range(0, 4):
        for members in itertools.combinations(NODES, size):
            for heard in itertools.product((0.5, 5.0, None), repeat=len(members)):
                ages = {m: a for m, a in zip(members, heard, strict=True) if a is not None}
                for min_sync in (1, 2):
                    v = view(members, ages, min_sync)
                    refused = append_refusal(v)
                    lost = any(a is None or a > 2.0 for a in heard)
                    assert (refused is not None) == (len(members) < min_sync or lost)
                    if refused is None:
                        must = must_confirm(v)
                        assert set(must) == set(members)
                        assert len(must) >= min_sync
                        durable = dict.fromkeys(members, 9)
                        assert missing(10, must, durable) == tuple(members)
                        assert missing(9, must, durable) == ()


def test_not_strict_waits_only_for_replicas_it_hears_from() -> None:
    v = view(("b", "c"), {"b": 0.1, "c": 9.0}, strict=False)
    assert append_refusal(v) is None
    assert must_confirm(v) == ("b",)


def test_async_and_stale_plan() -> None:
    assert must_confirm(view(("b",), {}, min_sync=0)) == ()
    assert append_refusal(view(("b",), {}, min_sync=0)) is None
    stale = append_refusal(view(("b",), {"b": 0.1}, plan_epoch=2))
    assert stale is not None
    assert "epoch 3" in stale


def test_the_leader_itself_never_counts_and_refusals_name_the_lost_replica() -> None:
    refused = append_refusal(view(("a",), {}))
    assert refused is not None
    assert "0 of 1" in refused
    lost = append_refusal(view(("b", "c"), {"b": 0.1, "c": 4.0}, min_sync=2))
    assert lost is not None
    assert "c (last pull 4.0s ago)" in lost


def test_confirmed_members_hold_every_committed_entry() -> None:
    assert confirmed_members(("b", "c"), 10, {"b": 10, "c": 9}) == ("b",)


# --- what an acknowledgement counts (INV-REPL-01 against forged claims) ----------------

PULL_OPS = ("append", "pull", "restart", "forge", "forge_new")


@settings(max_examples=1500, deadline=None)
@given(
    st.integers(0, 5),
    st.lists(st.tuples(st.sampled_from(PULL_OPS), st.integers(0, 40), st.integers(1, 4))),
)
@example(2, [("append", 0, 1), ("forge", 3, 1)])  # a claim beyond what was ever sent
def test_inv_repl_01_an_acknowledgement_counts_only_what_was_sent_on_its_stream(
    base: int, ops: list[tuple[str, int, int]]
) -> None:
    """A leader whose leadership began at `base`; an honest replica (holding a prefix,
    restarting now and then, pulling again from where the leader says it counts) and a
    forger (claiming any index on its own streams, keeping nothing). Every count is at most
    `base` or covered, entry by entry, by what was sent on that very stream; the honest
    replica always gets its position counted again."""
    last = base
    held = base  # the honest replica holds a prefix of the leader's journal
    sent: dict[str, set[int]] = {"honest": set(), "forged": set()}
    covered = {"honest": 0, "forged": 0}
    resume: int | None = None

    def pull(stream: str, claim: int, batch: int) -> tuple[int, list[int]]:
        count = acknowledged(claim, base, covered[stream])
        assert count <= claim
        assert count <= base or set(range(base + 1, count + 1)) <= sent[stream], (stream, count)
        through = min(last, claim + batch) if count == claim else claim
        entries = list(range(claim + 1, through + 1)) if count == claim else []
        sent[stream].update(entries)
        covered[stream] = covered_after(claim, base, covered[stream], through)
        return count, entries

    for op, value, batch in ops:
        if op == "append":
            last += 1
        elif op == "pull":
            claim = held if resume is None else resume
            count, entries = pull("honest", claim, batch)
            if count < claim:
                resume = count
            elif entries:
                held = max(held, entries[-1])
                resume = None if entries[-1] >= held or resume is None else entries[-1]
            else:
                resume = None
        elif op == "restart":
            sent["honest"], covered["honest"], resume = set(), 0, None
        elif op == "forge":
            pull("forged", min(value, last), batch)
        elif op == "forge_new":
            sent["forged"], covered["forged"] = set(), 0
            pull("forged", min(value, last), batch)
    # Liveness: an honest replica following the protocol gets its whole position counted.
    for _ in range(2 * (held - base) + 4):
        claim = held if resume is None else resume
        count, entries = pull("honest", claim, 1)
        if count < claim:
            resume = count
        elif entries:
            held = max(held, entries[-1])
            resume = None if resume is None or entries[-1] >= held else entries[-1]
        else:
            resume = None
    assert acknowledged(held, base, covered["honest"]) == held
