"""Fixtures of the component tests: the fake clock driving the test's loop, real stores."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.store.sqlite import SqliteStore
from tests.fakes import FakeClock


@pytest.fixture
async def clock() -> AsyncIterator[FakeClock]:
    """The test's time: it moves only when the test advances it (tests/fakes.py)."""
    fake = FakeClock()
    with fake.drives(asyncio.get_running_loop()):
        yield fake
    if fake.stalled:
        pytest.fail("the test waited on the fake clock, which nothing advanced")


@pytest.fixture
async def hub_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """The hub's real SQLite store in the test's directory."""
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()
