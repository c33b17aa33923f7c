"""The pings table's day partitions, kept ahead of the clock: at start-up and then every
`CHECK_SECONDS`, the partitions of today and the next `DAYS_AHEAD` days (UTC, by the app's clock)
are created if missing.

One rule: the days come from the app's clock, never from the database's; a ping whose day has no
partition still lands (in the DEFAULT partition), so a late or failed pass costs tidiness, never
a ping. Start-up waits for the first pass, at most the lock timeout behind a long transaction
(then it is logged, and the loop tries again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

import asyncpg

from app.clock import Clock
from app.tasks import running
from geo.partitions import create_days, days_from

log = logging.getLogger("contexto.partitions")

DAYS_AHEAD = 3
# Hourly, so that a day's partition exists well before the day starts on any clock.
CHECK_SECONDS = 3600.0


async def partitions_pass(pool: asyncpg.Pool, clock: Clock, *,
                          ahead: int = DAYS_AHEAD) -> list[date]:
    """Create the missing partitions of today and the `ahead` days after; the days created."""
    async with pool.acquire() as conn:
        created = await create_days(conn, days_from(clock(), ahead))
    if created:
        log.info("pings partitions created for %s", ", ".join(d.isoformat() for d in created))
    return created


async def _pass_logged(pool: asyncpg.Pool, clock: Clock, ahead: int) -> None:
    try:
        await partitions_pass(pool, clock, ahead=ahead)
    except (asyncpg.PostgresError, OSError):  # the DEFAULT partition takes the pings meanwhile
        log.exception("creating pings partitions failed; the next pass tries again")


@asynccontextmanager
async def keeping_ahead(pool: asyncpg.Pool, clock: Clock, *, ahead: int = DAYS_AHEAD,
                        interval_seconds: float = CHECK_SECONDS) -> AsyncIterator[None]:
    """One pass before the block, then one every `interval_seconds` while it runs."""
    await _pass_logged(pool, clock, ahead)

    async def forever() -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            await _pass_logged(pool, clock, ahead)

    async with running(forever(), "pings-partitions"):
        yield
