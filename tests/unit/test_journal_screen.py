"""The hub screening journal reports as heartbeats arrive (hub.journal.replication.observe), with a
real registry on a real SQLite store and a fake clock: an impossible report is refused,
never adopted, logged once per node and reason, counted, shown, and the node may not take
over until it reports possible positions again."""

import datetime as dt
import logging
from pathlib import Path

import pytest

from edgecommon import pki
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2
from hub.assemble import fleet_state
from hub.config import HubConfig
from hub.fleet.registry import Registry
from hub.journal.reports import Refusal
from hub.store.sqlite import SqliteStore
from tests.fakes import FakeClock


@pytest.fixture
async def hub(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    fleet = await fleet_state(HubConfig(), FakeClock(), store)
    yield fleet.registry, fleet.replication
    await store.close()


def attach(registry: Registry, node: str):  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = pki.create_ca("edge", now, dt.timedelta(days=1))
    identity = Identity(Kind.NODE, node, "g")
    cert = pki.issue_for_key(
        ca_key, ca_cert, pki.generate_key(), identity, "edge", now, dt.timedelta(hours=1)
    )
    return registry.attach(identity, cert, link_pb2.Register())


def beat(hub, session, **journal: int) -> None:  # type: ignore[no-untyped-def]
    """A heartbeat as the Link servicer takes it: the registry, then the journal's quorum."""
    registry, manager = hub
    heartbeat = link_pb2.Heartbeat(journal=link_pb2.JournalReport(**journal))
    if registry.heartbeat(session, heartbeat):
        manager.observe(session, heartbeat)


async def test_impossible_reports_are_refused_logged_once_and_never_adopted(
    hub, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    registry, manager = hub
    a, b = attach(registry, "a"), attach(registry, "b")
    beat(hub, a, role="replica", last_index=10)
    beat(hub, b, role="replica", last_index=10)
    assert manager.eligibility("g")["a"] == (10, None)
    with caplog.at_level(logging.ERROR, logger="edge-hub.replication"):
        for _ in range(3):
            beat(hub, a, role="replica", last_index=7)  # back, no rewind recorded
    assert [r.getMessage() for r in caplog.records if "bad peer a" in r.getMessage()] == [
        "bad peer a (group g): journal report refused (journal_backwards): last index went "
        "back from 10 to 7 without a recorded rewind (rewind count 0, was 0); it may not "
        "take over until it reports possible positions"
    ]
    position, why = manager.eligibility("g")["a"]
    assert position == 10  # the refused report was not adopted
    assert why is not None
    assert why.startswith("bad peer")
    stats = manager.statistics()
    assert stats.reports_refused == 3
    assert stats.refusals[Refusal.JOURNAL_BACKWARDS] == 3
    assert stats.bad_peers == 1
    rows = {r.node_id: r for r in manager.divergence("g").replicas}
    assert "from 10 to 7" in rows["a"].refused_report
    assert rows["b"].refused_report == ""
    # A rewind it recorded makes the same position possible: accepted, no longer a bad peer.
    beat(hub, a, role="replica", last_index=7, rewinds=1)
    assert manager.eligibility("g")["a"] == (7, None)
    assert manager.statistics().bad_peers == 0
    with caplog.at_level(logging.ERROR, logger="edge-hub.replication"):
        beat(hub, b, role="leader", last_index=10, epoch=1, commit_index=2**62)
    assert "commit index 4611686018427387904 is beyond its own last entry 10" in caplog.text
    assert manager.statistics().refusals[Refusal.COMMIT_BEYOND_JOURNAL] == 1
