"""Loops that run on a fixed cadence and wake early on an event."""

import asyncio


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passes; True if it was set.

    Never with asyncio.wait_for: on Python 3.11 it returns the awaited result when that
    arrives in the same turn of the loop as a cancellation, and the cancellation is lost;
    a loop built on it then runs on after shutdown has cancelled it (the hub's registry
    loop did, when agents disconnected as the hub was stopped). asyncio.timeout hands
    the cancellation on.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
