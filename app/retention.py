"""Retention in the service: every `retention_interval_seconds`, pings and signals older than
`retention_days` by the app's clock are deleted (in bounded batches, see `geo.retention`), and
so are the webhook events written before then once settled (with their deliveries and attempts).

One rule: the cut-off is read from the app's clock at the start of each pass, never from the
database's or the machine's; a pass that fails is logged and the next one starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg

from app.clock import Clock
from app.tasks import running
from campaigns.webhooks import store as webhook_store
from geo.retention import Purged, purge_device_data

log = logging.getLogger("contexto.retention")


async def retention_pass(pool: asyncpg.Pool, clock: Clock, *, days: int,
                         batch: int) -> list[Purged]:
    """Delete what is older than `days` before now; what each table lost, and in how many
    statements."""
    cutoff = clock() - timedelta(days=days)
    async with pool.acquire() as conn:
        purged = await purge_device_data(conn, cutoff, batch=batch)
        purged.append(await webhook_store.purge_events(conn, cutoff, batch=batch))
    for p in purged:
        if p.rows:
            log.info("retention: %d %s before %s deleted in %d statements", p.rows, p.table,
                     cutoff.isoformat(), p.statements)
    return purged


@asynccontextmanager
async def purging(pool: asyncpg.Pool, clock: Clock, *, days: int, interval_seconds: float,
                  batch: int, on_purged: Callable[[Purged], None] = lambda p: None,
                  ) -> AsyncIterator[None]:
    """A pass every `interval_seconds` while the block runs; the first one interval after the
    start, so starting the service (as tests do, often) does no purge work."""

    async def purge_forever() -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                for purged in await retention_pass(pool, clock, days=days, batch=batch):
                    on_purged(purged)
            except Exception:  # the data stays until the next pass; nothing is half done
                log.exception("retention pass failed")

    async with running(purge_forever(), "retention"):
        yield
