"""The fleet switch (hub/stops/autonomy.py) waits for online nodes on the injected clock: an
hour-long `autonomy set --wait` ends when the fake clock passes it, and as soon as every
online node has applied the new revision. Real SQLite store, registry and switch file."""

from pathlib import Path

from edgecommon.pb import link_pb2
from hub.config import AutonomySection, LinkSection
from hub.fleet.registry import Registry, Session
from hub.stops.autonomy import FleetSwitch
from hub.store.sqlite import SqliteStore
from tests.fakes import FakeClock, connect, eventually, received, running

HOUR_S = 3600.0


async def switch_with_a_node(
    store: SqliteStore, clock: FakeClock, tmp_path: Path
) -> tuple[FleetSwitch, Session]:
    registry = Registry(store, clock, LinkSection())
    session = connect(registry, "node-1", "site-a")
    config = AutonomySection(file=tmp_path / "autonomy.yaml", default_enabled=True)
    switch = FleetSwitch(store, registry, clock, config)
    await switch.load()
    return switch, session


async def sent_to(session: Session) -> list[link_pb2.HubMessage]:
    """The switch writes its file and the store in threads, then tells the node."""
    got: list[link_pb2.HubMessage] = []

    def arrived() -> bool:
        got.extend(received(session))
        return bool(got)

    await eventually("the new revision is sent to node-1", arrived)
    return got


async def test_an_hour_long_wait_ends_when_the_clock_passes_it(
    hub_store: SqliteStore, clock: FakeClock, tmp_path: Path
) -> None:
    switch, session = await switch_with_a_node(hub_store, clock, tmp_path)
    async with running(switch.set(False, "maintenance window", "alice", HOUR_S)) as setting:
        (message,) = await sent_to(session)
        assert message.fleet_switch.revision == switch.revision
        await clock.advance(HOUR_S - 1)
        assert not setting.done()
        await clock.advance(1)
        assert setting.done()
    assert switch.pending() == ["node-1"]


async def test_the_wait_ends_once_every_online_node_applied_the_revision(
    hub_store: SqliteStore, clock: FakeClock, tmp_path: Path
) -> None:
    switch, session = await switch_with_a_node(hub_store, clock, tmp_path)
    async with running(switch.set(False, "maintenance window", "alice", HOUR_S)) as setting:
        await sent_to(session)
        await clock.advance(5)
        assert not setting.done()
        switch.acknowledged("node-1", switch.revision)
        await clock.settle()
        assert setting.done()
    assert switch.pending() == []
