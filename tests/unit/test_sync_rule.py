"""The leader's commit rule (pure), exhaustively over small sync sets."""

import itertools

from agent.sync_rule import SyncView, append_refusal, confirmed_members, missing, must_confirm

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
