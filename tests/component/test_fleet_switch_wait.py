"""The fleet switch waits for online nodes on the injected clock: `autonomy set --wait`
of an hour ends as soon as the (fake) clock passes it, and at once when every online node
has applied the new revision. Real SQLite store, real registry, a real switch file."""

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from edgecommon import pki
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2
from hub.autonomy import FleetSwitch
from hub.config import AutonomySection, LinkSection
from hub.registry import Registry
from hub.store.sqlite import SqliteStore

BOUND_S = 5.0  # bounds the test, never measured
HOUR_S = 3600.0


class FakeClock:
    def __init__(self) -> None:
        self.mono = 0.0

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return 1_790_000_000.0 + self.mono


def connect(registry: Registry, node: str, group: str) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = pki.create_ca("edge", now, dt.timedelta(days=1))
    identity = Identity(Kind.NODE, node, group)
    cert = pki.issue_for_key(
        ca_key, ca, pki.generate_key(), identity, "edge", now, dt.timedelta(hours=1)
    )
    registry.attach(identity, cert, link_pb2.Register(agent_version="test"))


async def switch_with_a_node(tmp_path: Path, clock: FakeClock) -> tuple[FleetSwitch, SqliteStore]:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    registry = Registry(store, clock, LinkSection())
    connect(registry, "node-1", "site-a")
    config = AutonomySection(file=tmp_path / "autonomy.yaml", default_enabled=True)
    switch = FleetSwitch(store, registry, clock, config)
    await switch.load()
    return switch, store


async def until(what: str, check: Callable[[], bool]) -> None:
    """Bounded real-time wait for work the switch hands to threads (file, SQLite)."""
    for _ in range(int(BOUND_S / 0.001)):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"not within {BOUND_S:g}s: {what}")


async def test_an_hour_long_wait_ends_when_the_injected_clock_passes_it(tmp_path: Path) -> None:
    clock = FakeClock()
    switch, store = await switch_with_a_node(tmp_path, clock)
    try:
        switch.ack_event.set()  # stale: the wait clears it when it begins
        setting = asyncio.create_task(switch.set(False, "maintenance window", "alice", HOUR_S))
        await until("the wait began", lambda: not switch.ack_event.is_set())
        assert switch.pending() == ["node-1"]
        clock.mono += HOUR_S
        switch.ack_event.set()  # anything that wakes the wait; the clock says it is over
        async with asyncio.timeout(BOUND_S):
            await setting
        assert switch.pending() == ["node-1"]
    finally:
        await store.close()


async def test_the_wait_ends_once_every_online_node_applied_the_revision(tmp_path: Path) -> None:
    clock = FakeClock()
    switch, store = await switch_with_a_node(tmp_path, clock)
    try:
        before = switch.revision
        setting = asyncio.create_task(switch.set(False, "maintenance window", "alice", HOUR_S))
        await until("the new revision is out", lambda: switch.revision > before)
        switch.acknowledged("node-1", switch.revision)
        async with asyncio.timeout(BOUND_S):
            await setting
        assert switch.pending() == []
    finally:
        await store.close()
