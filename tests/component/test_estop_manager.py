"""The hub's emergency stops (hub/stops/estop.py) on a real SQLite store and a real registry, with
the fake clock: engage, fan-out by scope, acknowledgements, release, and what a restarted
hub and a reconnecting agent see. What agents would receive is read from their sessions."""

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from edgecommon.errors import Conflict, NotFound
from edgecommon.pb import link_pb2
from hub.config import LinkSection
from hub.fleet.registry import Registry, Session
from hub.stops.estop import ACK_FLUSH_S, EstopManager
from hub.store.base import HubStore
from hub.store.sqlite import SqliteStore
from tests.fakes import FailingStore, FakeClock, bodies, connect, eventually, received, running


def build(store: HubStore, registry: Registry, clock: FakeClock) -> EstopManager:
    """The component as the hub assembles it: the one place to follow its constructor."""
    return EstopManager(store, registry, clock)


@dataclass
class Fleet:
    """site-a: a1 and a2 connected, c1 enrolled but offline; site-b: b1 connected."""

    registry: Registry
    sessions: dict[str, Session]

    def received(self, node: str) -> list[link_pb2.HubMessage]:
        return received(self.sessions[node])


def fleet(store: HubStore, clock: FakeClock) -> Fleet:
    registry = Registry(store, clock, LinkSection())
    sessions = {
        node: connect(registry, node, group)
        for node, group in (("a1", "site-a"), ("a2", "site-a"), ("b1", "site-b"))
    }
    registry.detach(connect(registry, "c1", "site-a"), "stream closed")
    return Fleet(registry, sessions)


def states(manager: EstopManager, stop_id: str) -> dict[str, str]:
    (stop,) = manager.report(stop_id).stops
    return {n.node_id: n.state for n in stop.nodes}


async def test_a_group_stop_reaches_the_connected_nodes_of_that_group_only(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    stop = await manager.engage("group:site-a", "smoke in hall 2", "alice")
    for node in ("a1", "a2"):
        (message,) = f.received(node)
        assert message.estop.stop_id == stop.stop_id
        assert message.estop.scope == "group:site-a"
        assert message.estop.reason == "smoke in hall 2"
    assert f.received("b1") == []
    assert [s.stop_id for s in await hub_store.list_stops()] == [stop.stop_id]
    assert manager.covers("c1", "site-a")
    assert not manager.covers("b1", "site-b")


async def test_a_stop_the_store_could_not_keep_is_sent_to_nobody(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    """Persist first, then fan out: a hub that crashes right after engage answered must
    not forget a stop that agents already obey."""
    f = fleet(hub_store, clock)
    failing = FailingStore(hub_store)
    failing.failing["add_stop"] = OSError("disk full")
    manager = build(cast(HubStore, failing), f.registry, clock)
    with pytest.raises(OSError, match="disk full"):
        await manager.engage("fleet", "drill", "alice")
    assert all(f.received(node) == [] for node in f.sessions)
    assert manager.active() == []


async def test_a_node_or_group_that_is_not_enrolled_cannot_be_stopped(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    with pytest.raises(NotFound, match="group site-z has no enrolled nodes"):
        await manager.engage("group:site-z", "drill", "alice")
    with pytest.raises(NotFound, match="node z9 is not enrolled"):
        await manager.engage("node:z9", "drill", "alice")
    assert await hub_store.list_stops() == []
    assert all(f.received(node) == [] for node in f.sessions)


async def test_acknowledgements_are_reported_per_node_with_the_latency_since_the_send(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    stop = await manager.engage("group:site-a", "drill", "alice")
    assert states(manager, stop.stop_id) == {"a1": "pending", "a2": "pending", "c1": "unreachable"}
    assert manager.pending(stop.stop_id) == 2
    await clock.advance(0.25)
    manager.acknowledged("a1", link_pb2.EstopAck(stop_id=stop.stop_id))
    await clock.advance(1.0)
    manager.acknowledged("a1", link_pb2.EstopAck(stop_id=stop.stop_id))  # a repeat changes nothing
    assert states(manager, stop.stop_id) == {
        "a1": "acknowledged",
        "a2": "pending",
        "c1": "unreachable",
    }
    (report,) = manager.report(stop.stop_id).stops
    a1 = next(n for n in report.nodes if n.node_id == "a1")
    assert a1.ack_latency_s == pytest.approx(0.25)
    assert manager.pending(stop.stop_id) == 1


async def test_waiting_for_acknowledgements_ends_when_every_connected_node_in_scope_acked(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    stop = await manager.engage("group:site-a", "drill", "alice")
    async with running(manager.wait_acknowledged(stop.stop_id, 30.0)) as waiting:
        await clock.advance(0.1)
        manager.acknowledged("a1", link_pb2.EstopAck(stop_id=stop.stop_id))
        await clock.advance(0.1)
        assert not waiting.done()  # a2 still pending (c1 is offline: not waited for)
        manager.acknowledged("a2", link_pb2.EstopAck(stop_id=stop.stop_id))
        await clock.settle()
        assert waiting.done()


async def test_waiting_for_acknowledgements_gives_up_after_its_wait(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    stop = await manager.engage("node:b1", "drill", "alice")
    async with running(manager.wait_acknowledged(stop.stop_id, 10.0)) as waiting:
        await clock.advance(9.9)
        assert not waiting.done()
        await clock.advance(0.1)
        assert waiting.done()
    assert states(manager, stop.stop_id) == {"b1": "pending"}
    with pytest.raises(NotFound):
        await manager.wait_acknowledged("stop-unknown", 1.0)


async def test_a_release_reaches_the_nodes_in_scope_and_ends_the_stop(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    stop = await manager.engage("group:site-a", "drill", "alice")
    for node in ("a1", "a2"):
        f.received(node)  # the stop itself
    await clock.advance(60.0)
    (released,) = await manager.release("group:site-a", "all clear", "bob")
    assert released.stop_id == stop.stop_id
    assert released.released_unix == clock.wall()
    for node in ("a1", "a2"):
        (message,) = f.received(node)
        assert message.estop_release.stop_id == stop.stop_id
        assert message.estop_release.operator == "bob"
    assert f.received("b1") == []
    assert manager.active() == []
    (stored,) = await hub_store.list_stops()
    assert not stored.active
    assert stored.release_reason == "all clear"


async def test_only_an_active_stop_on_that_exact_scope_can_be_released(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    await manager.engage("group:site-a", "drill", "alice")
    with pytest.raises(Conflict, match=r"fleet is not stopped \(active stops: group:site-a\)"):
        await manager.release("fleet", "all clear", "bob")
    with pytest.raises(Conflict, match="node:a1 is not stopped"):
        await manager.release("node:a1", "all clear", "bob")  # inside the group, not its scope
    assert len(manager.active()) == 1
    assert bodies(f.received("a1")) == ["estop"]


async def test_inv_estop_01_a_reconnecting_node_first_gets_the_stops_and_releases_it_missed(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    held = await manager.engage("node:a2", "jammed arm", "alice")
    f.registry.detach(f.sessions["a2"], "stream closed")
    await manager.release("node:a2", "arm fixed", "bob")
    missed = await manager.engage("group:site-a", "drill", "alice")
    stops, releases = manager.for_node("a2", "site-a", [held.stop_id, "stop-from-another-hub"])
    assert [s.stop_id for s in stops] == [missed.stop_id]
    # The unknown stop is not released: it stays latched on the node until released there.
    assert [r.stop_id for r in releases] == [held.stop_id]
    assert releases[0].operator == "bob"


async def test_acknowledgements_reach_the_store_within_the_flush_delay(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    stop = await manager.engage("fleet", "drill", "alice")
    async with running(manager.run()):
        await clock.settle()
        for node in f.sessions:
            manager.acknowledged(node, link_pb2.EstopAck(stop_id=stop.stop_id))
        await clock.advance(ACK_FLUSH_S)

        async def stored() -> bool:
            return {a.node_id for a in await hub_store.list_acks()} == {"a1", "a2", "b1"}

        await eventually("the acknowledgements are in the store", stored)


async def test_stops_and_acknowledgements_survive_a_hub_restart(
    tmp_path: Path, hub_store: SqliteStore, clock: FakeClock
) -> None:
    f = fleet(hub_store, clock)
    manager = build(hub_store, f.registry, clock)
    active = await manager.engage("group:site-a", "drill", "alice")
    old = await manager.engage("node:b1", "jam", "alice")
    await manager.release("node:b1", "fixed", "bob")
    await clock.advance(0.5)
    manager.acknowledged("a1", link_pb2.EstopAck(stop_id=active.stop_id))
    await manager.flush()
    await f.registry.flush()
    await hub_store.close()

    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    try:
        registry = Registry(store, clock, LinkSection())
        await registry.load()
        restarted = build(store, registry, clock)
        await restarted.load()
        assert [s.stop_id for s in restarted.active()] == [active.stop_id]
        assert not restarted.stops[old.stop_id].active
        # Nobody is connected to the restarted hub yet: only a1's acknowledgement counts.
        assert states(restarted, active.stop_id) == {
            "a1": "acknowledged",
            "a2": "unreachable",
            "c1": "unreachable",
        }
        (report,) = restarted.report(active.stop_id).stops
        assert next(n for n in report.nodes if n.node_id == "a1").ack_latency_s == pytest.approx(
            0.5
        )
    finally:
        await store.close()
