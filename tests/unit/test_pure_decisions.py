"""Pure decision cores: backoff, admission, offline detection, identities, durations."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecommon.backoff import BackoffPolicy
from edgecommon.config import parse_duration
from edgecommon.identity import NAME_RE, Identity, Kind, name_problem, parse_uri
from hub.fleet.admission import TokenBucket
from hub.fleet.registry import overdue

names = st.from_regex(NAME_RE, fullmatch=True)


@given(
    initial=st.floats(0.01, 10),
    cap=st.floats(0.01, 120),
    attempt=st.integers(0, 10_000),
    floor=st.floats(0, 100),
    seed=st.integers(),
)
def test_backoff_delay_is_within_floor_and_capped_ceiling(
    initial: float, cap: float, attempt: int, floor: float, seed: int
) -> None:
    policy = BackoffPolicy(initial, cap)
    delay = policy.delay(attempt, random.Random(seed), floor)
    assert floor <= delay <= max(floor, min(cap, initial * 2 ** min(attempt, 60)))


@given(initial=st.floats(0.01, 10), cap=st.floats(0.01, 120), attempt=st.integers(0, 200))
def test_backoff_ceiling_grows_until_the_cap(initial: float, cap: float, attempt: int) -> None:
    policy = BackoffPolicy(initial, cap)
    assert policy.ceiling(attempt) <= policy.ceiling(attempt + 1) <= cap


@given(
    rate=st.floats(1, 5000),
    burst=st.integers(1, 5000),
    gaps=st.lists(st.floats(0, 0.01), min_size=1, max_size=300),
    seed=st.integers(),
)
def test_admission_never_exceeds_burst_plus_rate(
    rate: float, burst: int, gaps: list[float], seed: int
) -> None:
    rng = random.Random(seed)
    bucket = TokenBucket.full(rate, burst, 0.0)
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        decision = bucket.take(now, rng)
        if decision.admitted:
            admitted += 1
        else:
            assert decision.retry_after_s > 0
    assert admitted <= burst + rate * now + 1e-6


def test_admission_spreads_the_excess_over_the_refill_window() -> None:
    rng = random.Random(7)
    bucket = TokenBucket.full(100.0, 10, 0.0)
    decisions = [bucket.take(0.0, rng) for _ in range(50)]
    assert sum(d.admitted for d in decisions) == 10
    waits = [d.retry_after_s for d in decisions if not d.admitted]
    assert min(waits) > 0
    assert max(waits) <= 1.0 / 100 + 10 / 100 + 1e-9


@given(
    seen=st.dictionaries(names, st.floats(0, 1000), max_size=30),
    now=st.floats(0, 2000),
    window=st.floats(0.1, 100),
)
def test_overdue_names_exactly_the_silent_nodes(
    seen: dict[str, float], now: float, window: float
) -> None:
    result = overdue(seen, now, window)
    assert result == sorted(result)
    for node, last in seen.items():
        assert (node in result) == (now - last > window)


@given(kind=st.sampled_from([Kind.NODE, Kind.OPERATOR]), name=names, group=names, td=names)
def test_identity_uri_round_trips(kind: Kind, name: str, group: str, td: str) -> None:
    identity = Identity(kind, name, group if kind is Kind.NODE else "")
    assert parse_uri(identity.uri(td), td) == identity
    assert parse_uri(identity.uri(td), td + "x") is None


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://edge/node/a",
        "spiffe://edge/node/A/b",
        "spiffe://edge/operator/a/b",
        "https://edge/node/g/n",
        "spiffe://edge/node/g/n/x",
        "spiffe://edge/operator/",
    ],
)
def test_malformed_identity_uris_name_nobody(uri: str) -> None:
    assert parse_uri(uri, "edge") is None


@pytest.mark.parametrize("bad", ["", "-a", "A", "a b", "a/b", "x" * 64])
def test_bad_names_get_a_complaint(bad: str) -> None:
    assert "not a valid name" in (name_problem("node id", bad) or "")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "1h 30m", "-1s", "1h30"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
