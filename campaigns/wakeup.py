"""How the queue workers (the push dispatcher, the webhook relay) wait for work: woken at once by
PostgreSQL NOTIFY on their channel, else when the next retry comes due, else after a while.

One rule: a wait never outlasts `idle_cap` (a retry that came due while nobody notified is seen
within it) and never drops below `idle_floor` (a due time already past must not spin the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

import asyncpg


@asynccontextmanager
async def notified(dsn: str, channel: str) -> AsyncIterator[asyncio.Event]:
    """An event set by every NOTIFY on `channel`, for as long as the block runs (a connection
    of its own, closed at the end)."""
    wake = asyncio.Event()
    listener = await asyncpg.connect(dsn)

    def on_notify(*_: Any) -> None:
        wake.set()

    try:
        await listener.add_listener(channel, on_notify)
        yield wake
    finally:
        with suppress(OSError, asyncpg.PostgresError):
            await listener.close()


async def idle_seconds(pool: asyncpg.Pool, next_due_sql: str, lease: timedelta,
                       clock: Callable[[], datetime], *, idle_cap: float,
                       idle_floor: float) -> float:
    """How long to sleep: until the next due row (`next_due_sql`, given the lease), within
    [`idle_floor`, `idle_cap`]."""
    next_due: datetime | None = await pool.fetchval(next_due_sql, lease)
    if next_due is None:
        return idle_cap
    left = (next_due - clock()).total_seconds()
    return min(idle_cap, max(idle_floor, left))


async def wait_any(events: tuple[asyncio.Event, ...], seconds: float) -> None:
    """Until one of `events` is set, or `seconds` have passed."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
