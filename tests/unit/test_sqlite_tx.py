"""Cancelling a coroutine in the middle of a transaction leaves the connection usable."""

import asyncio
from pathlib import Path

import aiosqlite
import pytest

from edgecommon.sqlite_tx import transaction


async def test_cancelled_transactions_do_not_wedge_the_connection(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "t.db", isolation_level=None) as db:
        await db.execute("CREATE TABLE t (x INTEGER)")
        lock = asyncio.Lock()

        async def slow_writer() -> None:
            async with transaction(db, lock) as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
                await asyncio.sleep(60)

        for yields in range(6):  # cancel at every point: before, during and after BEGIN
            task = asyncio.create_task(slow_writer())
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not db.in_transaction
        async with transaction(db, lock) as tx:
            await tx.execute("INSERT INTO t VALUES (2)")
        async with db.execute("SELECT x FROM t") as cur:
            assert [r[0] for r in await cur.fetchall()] == [2]
