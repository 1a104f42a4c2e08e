"""One aiosqlite connection shared by many coroutines: serialized, cancellation-safe
transactions.

aiosqlite runs statements in its own thread, so cancelling the coroutine that awaits
`BEGIN` (or `COMMIT`) does not stop the statement: it still runs, later. Left alone, the
connection stays inside a transaction nobody finishes and every later `BEGIN` fails
("cannot start a transaction within a transaction"). So BEGIN and COMMIT are shielded,
and after any failure, cancellation included, the statement in flight is waited for and
the transaction rolled back if it is still open.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiosqlite


@contextlib.asynccontextmanager
async def transaction(
    db: aiosqlite.Connection, lock: asyncio.Lock
) -> AsyncIterator[aiosqlite.Connection]:
    async with lock:
        in_flight: asyncio.Future[object] | None = None
        try:
            in_flight = asyncio.ensure_future(db.execute("BEGIN IMMEDIATE"))
            await asyncio.shield(in_flight)
            yield db
            in_flight = asyncio.ensure_future(db.execute("COMMIT"))
            await asyncio.shield(in_flight)
        except BaseException:
            if in_flight is not None and not in_flight.done():
                with contextlib.suppress(Exception):
                    await in_flight
            if db.in_transaction:
                await asyncio.shield(db.execute("ROLLBACK"))
            raise
