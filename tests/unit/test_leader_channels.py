"""When the hub's pooled channel to a journal leader may carry an append (pure rule)."""

import itertools

import pytest

from hub.journal.leader_channels import Dialled, Replaced, replacement

DIALLED = Dialled(leader="n1", address="10.0.0.1:7443", credentials_version=3, at_mono=100.0)
MAX_AGE_S = 60.0


def test_a_channel_serves_the_leader_it_was_dialled_for_until_it_ages_out() -> None:
    for now in (100.0, 130.0, 159.999):
        assert replacement(DIALLED, "n1", "10.0.0.1:7443", 3, now, MAX_AGE_S) is None
    aged = replacement(DIALLED, "n1", "10.0.0.1:7443", 3, 160.0, MAX_AGE_S)
    assert aged is Replaced.AGED


@pytest.mark.parametrize(
    ("leader", "address", "version", "expected"),
    [
        ("n2", "10.0.0.1:7443", 3, Replaced.LEADER_CHANGED),
        ("n1", "10.0.0.2:7443", 3, Replaced.ADDRESS_CHANGED),
        ("n1", "10.0.0.1:7443", 4, Replaced.CREDENTIALS_CHANGED),
    ],
)
def test_each_change_names_its_reason(
    leader: str, address: str, version: int, expected: Replaced
) -> None:
    assert replacement(DIALLED, leader, address, version, 101.0, MAX_AGE_S) is expected


def test_any_change_at_all_replaces_the_channel_and_only_a_change_does() -> None:
    """Every combination of leader, address, credentials and age: the channel is kept
    exactly when nothing its handshake rested on changed."""
    leaders, addresses = ("n1", "n2"), ("10.0.0.1:7443", "10.0.0.2:7443")
    for leader, address, version, now in itertools.product(
        leaders, addresses, (2, 3, 4), (100.0, 159.0, 160.0, 500.0)
    ):
        same = (
            leader == DIALLED.leader
            and address == DIALLED.address
            and version == DIALLED.credentials_version
            and now - DIALLED.at_mono < MAX_AGE_S
        )
        why = replacement(DIALLED, leader, address, version, now, MAX_AGE_S)
        assert (why is None) == same, (leader, address, version, now, why)


def test_reasons_are_stable_values() -> None:
    assert [r.value for r in Replaced] == [
        "leader_changed",
        "address_changed",
        "credentials_changed",
        "aged",
        "failed",
        "shutdown",
    ]
