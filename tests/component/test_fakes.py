"""The fakes the component tests rely on (tests/fakes.py). The clock: time moves only when a
test moves it, timers fire at their own times in order, and a test that waits on it for
ever fails instead of hanging. The sender: what it returns and records."""

import asyncio

import pytest

from edgecommon.pb import link_pb2
from edgecommon.scope import parse_scope
from tests.fakes import T0, FakeClock, FakeSender, running


async def test_timers_fire_only_when_time_is_advanced_past_them_each_at_its_own_time(
    clock: FakeClock,
) -> None:
    woke: list[tuple[str, float]] = []

    async def every(name: str, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            woke.append((name, clock.monotonic()))

    async with running(every("fast", 1.0)), running(every("slow", 2.5)):
        await clock.settle()
        assert woke == []
        await clock.advance(4.0)
        assert woke == [("fast", 1.0), ("fast", 2.0), ("slow", 2.5), ("fast", 3.0), ("fast", 4.0)]
    assert clock.wall() == T0 + 4.0


async def test_a_timeout_on_the_fake_clock_expires_exactly_when_its_time_is_reached(
    clock: FakeClock,
) -> None:
    never = asyncio.Event()

    async def wait_30s() -> bool:
        try:
            async with asyncio.timeout(30.0):
                await never.wait()
        except TimeoutError:
            return False
        return True

    waiting = asyncio.create_task(wait_30s())
    await clock.advance(29.9)
    assert not waiting.done()
    await clock.advance(0.1)
    assert waiting.done()
    assert waiting.result() is False


def test_stepping_the_wall_clock_back_leaves_the_monotonic_clock_alone() -> None:
    clock = FakeClock()
    clock.now = T0 + 10
    assert (clock.wall(), clock.monotonic()) == (T0 + 10, 10.0)
    clock.now = T0 + 4  # an NTP step back
    assert (clock.wall(), clock.monotonic()) == (T0 + 4, 10.0)
    clock.now += 1
    assert (clock.wall(), clock.monotonic()) == (T0 + 5, 11.0)


def test_a_test_waiting_on_a_clock_nobody_advances_is_stopped() -> None:
    clock = FakeClock()
    loop = asyncio.new_event_loop()
    try:
        with clock.drives(loop, stall_after_s=0.2), pytest.raises(RuntimeError, match="stopped"):
            loop.run_until_complete(asyncio.sleep(5.0))
        assert clock.stalled
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_the_fake_sender_queues_for_the_connected_nodes_in_scope_and_records_the_send() -> None:
    sender = FakeSender()
    for node, group in (("a1", "site-a"), ("a2", "site-a"), ("b1", "site-b")):
        sender.connect(node, group)
    sender.disconnect("a2")
    stop = link_pb2.HubMessage(estop=link_pb2.EstopCommand(stop_id="stop-1"))
    assert sender.send(stop, parse_scope("group:site-a")) == ("a1",)
    others = sender.send(stop, parse_scope("fleet"), only=lambda s: s.node_id != "a1")
    assert others == ("b1",)
    assert [(s.scope.kind.value, s.node_ids) for s in sender.sent] == [
        ("group", ("a1",)),
        ("fleet", ("b1",)),
    ]
    assert sender.received("a1") == [stop]
    assert sender.received("a1") == []  # read once
    assert sender.received("a2") == []
