"""Pure cores of the certificate lifecycle: the renewal schedule, retries, revocation
targets, retiring old CAs, nodes per CA."""

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.pki.renewal import EARLIEST, LATEST, renew_at, renewal_window, retry_delay
from edgecommon.backoff import BackoffPolicy
from edgecommon.errors import Conflict, InvalidArgument, NotFound
from hub.pki.authority import (
    live_revocations,
    node_ca_counts,
    retire_refusal,
    revocation_targets,
)
from hub.store.base import CertificateRecord

HOUR = 3600.0


@given(
    lifetime=st.floats(1.0, 10 * 365 * 86400),
    target=st.floats(0.0, 10 * 365 * 86400),
    start=st.floats(0, 2e9),
    seed=st.integers(),
)
def test_renewal_starts_between_half_and_three_quarters_of_the_lifetime(
    lifetime: float, target: float, start: float, seed: int
) -> None:
    at = renew_at(start, start + lifetime, target, random.Random(seed))
    fraction = (at - start) / lifetime
    eps = 1e-9 + (start + lifetime) * 1e-15 / lifetime  # float rounding of `start + x`
    assert 0.5 - eps <= fraction <= LATEST + eps
    lo, hi = renewal_window(lifetime, target)
    assert lo <= hi
    assert lo - eps <= fraction <= hi + eps


@given(
    lifetime=st.floats(1.0, 10 * 365 * 86400),
    target=st.floats(0.0, 10 * 365 * 86400),
    seed=st.integers(),
)
def test_renewal_leaves_the_availability_target_whenever_the_lifetime_allows(
    lifetime: float, target: float, seed: int
) -> None:
    """A node cut off from the hub right when renewal starts still has `target` left,
    as long as the lifetime is at least twice the target (else it renews at half-life)."""
    at = renew_at(0.0, lifetime, target, random.Random(seed))
    if lifetime >= 2 * target:
        assert lifetime - at >= target - 1e-6 * lifetime
    else:
        assert at == pytest.approx(lifetime / 2)


def test_default_lifetime_and_target_jitter_within_60_to_67_percent() -> None:
    lo, hi = renewal_window(72 * HOUR, 24 * HOUR)
    assert lo == EARLIEST
    assert hi == pytest.approx(2 / 3)
    rng = random.Random(7)
    times = [renew_at(0.0, 72 * HOUR, 24 * HOUR, rng) for _ in range(2000)]
    # A fleet enrolled together spreads over the whole window (no clumping at an edge).
    assert min(times) < 0.605 * 72 * HOUR
    assert max(times) > 0.66 * 72 * HOUR
    assert max(Counter(round(t) for t in times).values()) <= 4


def test_short_target_uses_the_full_60_to_75_percent_window() -> None:
    assert renewal_window(100.0, 1.0) == (EARLIEST, LATEST)
    assert renewal_window(0.0, 1.0) == (0.5, 0.5)


@given(
    attempt=st.integers(0, 200),
    seed=st.integers(),
    left=st.floats(-1e6, 1e7),
)
def test_renewal_retry_is_bounded_by_backoff_and_expiry(
    attempt: int, seed: int, left: float
) -> None:
    policy = BackoffPolicy(10.0, 600.0)
    delay = retry_delay(attempt, random.Random(seed), policy, left)
    assert 0.0 <= delay <= policy.ceiling(attempt)
    assert delay <= max(0.0, left)
    if left >= policy.ceiling(attempt):
        assert delay >= policy.ceiling(attempt) / 10


def record(serial: str, kind: str, subject: str, not_after: float) -> CertificateRecord:
    return CertificateRecord(
        serial, kind, subject, "g" if kind == "node" else "", not_after, 0.0, "f"
    )


CERTS = [
    record("a1", "node", "n1", 50.0),  # expired
    record("a2", "node", "n1", 500.0),
    record("a3", "node", "n1", 600.0),
    record("b1", "node", "n2", 500.0),
    record("o1", "operator", "n1", 500.0),
]


def test_revoking_a_node_takes_every_unexpired_unrevoked_certificate_of_that_node_only() -> None:
    got = revocation_targets(CERTS, {"a3"}, 100.0, node_id="n1")
    assert [c.serial for c in got] == ["a2"]
    assert [c.serial for c in revocation_targets(CERTS, set(), 100.0, operator="n1")] == ["o1"]
    assert revocation_targets(CERTS, set(), 1000.0, node_id="n1") == []


def test_revoking_by_serial() -> None:
    assert [c.serial for c in revocation_targets(CERTS, set(), 100.0, serial="A1")] == ["a1"]
    with pytest.raises(NotFound):
        revocation_targets(CERTS, set(), 100.0, serial="zz")
    with pytest.raises(Conflict, match="already revoked"):
        revocation_targets(CERTS, {"b1"}, 100.0, serial="b1")


@pytest.mark.parametrize(
    "selectors",
    [{}, {"node_id": "n1", "serial": "a2"}, {"node_id": "n1", "operator": "x"}],
)
def test_revocation_needs_exactly_one_selector(selectors: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument, match="exactly one"):
        revocation_targets(CERTS, set(), 100.0, **selectors)


@given(
    online=st.lists(st.sampled_from(["n1", "n2", "n3"]), unique=True),
    force=st.booleans(),
)
def test_retiring_is_refused_exactly_while_online_nodes_depend_and_not_forced(
    online: list[str], force: bool
) -> None:
    refusal = retire_refusal(online, force)
    assert (refusal is not None) == (bool(online) and not force)
    for node in online:
        assert refusal is None or node in refusal


def test_nodes_per_ca_count_untracked_certificates_for_the_oldest_ca() -> None:
    counts = node_ca_counts(
        {"n1": "a2", "n2": "b1", "n3": "legacy"}, {"a2": "new", "b1": "old"}, "old"
    )
    assert counts == {"new": ["n1"], "old": ["n2", "n3"]}


def test_agents_get_every_revoked_serial_whose_certificate_has_not_expired() -> None:
    not_after = {"a1": 100.0, "b2": 300.0}
    assert live_revocations({"a1", "b2", "c3"}, not_after, 200.0) == ["b2", "c3"]
    assert live_revocations({"a1"}, not_after, 50.0) == ["a1"]
    assert live_revocations((), not_after, 50.0) == []
