"""Retention: pings and signals older than RETENTION_DAYS are deleted in bounded batches, by one
pass called directly and by the service's background loop; newer rows stay.

The clock is pinned (standing still) at NOW, so the cut-off is NOW - 30 days whatever the
machine's date; rows are placed around it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from app.clock import PinnedClock
from app.db import init_connection
from app.main import create_app
from app.retention import retention_pass
from app.settings import from_environment
from geo.retention import Purged, purge
from tests.api.conftest import settings_for

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAYS = 30
CUTOFF = NOW - timedelta(days=DAYS)

INSERT_DEVICE = """
INSERT INTO devices (id, token_hash, platform, consent_location, consent_marketing)
VALUES ($1, $2, 'android', true, true)
"""
# `count` rows at `at`, `at` - 1 s, `at` - 2 s, ... (each strictly older than the one before).
INSERT_PINGS = """
INSERT INTO pings (device_id, ts, lat, lng, cell)
SELECT $1, $2::timestamptz - make_interval(secs => g), 48.8566, 2.3522, 0
FROM generate_series(0, $3 - 1) g
"""
INSERT_SIGNALS = """
INSERT INTO signals (device_id, ts, kind)
SELECT $1, $2::timestamptz - make_interval(secs => g), 'search' FROM generate_series(0, $3 - 1) g
"""
TS_OF = {"pings": "SELECT ts FROM pings ORDER BY ts",
         "signals": "SELECT ts FROM signals ORDER BY ts"}


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    try:
        yield conn
    finally:
        await conn.close()


async def new_device(db: asyncpg.Connection) -> UUID:
    device = uuid4()
    await db.execute(INSERT_DEVICE, device, device.bytes)
    return device


async def add(db: asyncpg.Connection, table: str, device: UUID, at: datetime, count: int) -> None:
    await db.execute(INSERT_PINGS if table == "pings" else INSERT_SIGNALS, device, at, count)


async def remaining(db: asyncpg.Connection, table: str) -> list[datetime]:
    return [r["ts"] for r in await db.fetch(TS_OF[table])]


async def world(db: asyncpg.Connection) -> None:
    """Per table: 3 rows over 40 days old, 2 just older than the cut-off, and 2 kept: one at
    the cut-off exactly, one yesterday."""
    device = await new_device(db)
    for table in ("pings", "signals"):
        await add(db, table, device, NOW - timedelta(days=40), 3)
        await add(db, table, device, CUTOFF - timedelta(seconds=1), 2)
        await add(db, table, device, CUTOFF, 1)
        await add(db, table, device, NOW - timedelta(days=1), 1)


KEPT = [CUTOFF, NOW - timedelta(days=1)]


async def test_a_pass_deletes_what_is_older_than_the_retention_and_keeps_the_rest(
        database_url: str, db: asyncpg.Connection) -> None:
    await world(db)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        purged = await retention_pass(pool, PinnedClock(NOW, running=False), days=DAYS,
                                      batch=100)
    finally:
        await pool.close()

    assert ([(p.table, p.rows) for p in purged], await remaining(db, "pings"),
            await remaining(db, "signals")) == (
        [("pings", 5), ("signals", 5), ("webhook_events", 0)], KEPT, KEPT)


BATCHES = [
    # old rows, batch, statements: full batches, then the one that finds fewer than a batch
    ("1,050 old rows in batches of 100 take 11 statements", 1050, 100, 11),
    ("1,000 old rows in batches of 100 take 11 statements, the last finding none", 1000, 100, 11),
    ("99 old rows in batches of 100 take one statement", 99, 100, 1),
    ("no old rows take one statement that deletes nothing", 0, 100, 1),
    ("3 old rows in batches of 1 take 4 statements", 3, 1, 4),
]


@pytest.mark.parametrize(("old", "batch", "statements"), [c[1:] for c in BATCHES],
                         ids=[c[0] for c in BATCHES])
async def test_a_purge_deletes_at_most_one_batch_per_statement(
        db: asyncpg.Connection, old: int, batch: int, statements: int) -> None:
    device = await new_device(db)
    await add(db, "pings", device, CUTOFF - timedelta(seconds=1), old)
    await add(db, "pings", device, NOW, 7)

    purged = await purge(db, "pings", CUTOFF, batch=batch)

    assert (purged, len(await remaining(db, "pings"))) == (Purged("pings", old, statements), 7)


async def test_a_purge_skips_rows_another_transaction_holds_instead_of_waiting(
        database_url: str, db: asyncpg.Connection) -> None:
    device = await new_device(db)
    await add(db, "pings", device, CUTOFF - timedelta(seconds=1), 250)
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            held = await holder.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM pings ORDER BY ts LIMIT 10 FOR UPDATE) t")
            purged = await asyncio.wait_for(purge(db, "pings", CUTOFF, batch=100), timeout=10)
        left_while_held = len(await remaining(db, "pings"))
        after_release = await purge(db, "pings", CUTOFF, batch=100)
    finally:
        await holder.close()

    assert (held, purged.rows, left_while_held, after_release.rows) == (10, 240, 10, 10)


async def test_a_purge_refuses_to_run_inside_a_transaction(db: asyncpg.Connection) -> None:
    async with db.transaction():
        with pytest.raises(RuntimeError, match="outside a transaction"):
            await purge(db, "pings", CUTOFF, batch=100)


async def deleted_counts(client: AsyncTestClient[Any]) -> dict[str, float]:
    """The service's `contexto_retention_deleted_total` counters, by table."""
    text = (await client.get("/metrics")).text
    found = re.findall(r'^contexto_retention_deleted_total\{table="(\w+)"\} (\S+)$', text, re.M)
    return {table: float(value) for table, value in found}


async def test_the_service_purges_in_the_background_every_interval(
        database_url: str, db: asyncpg.Connection) -> None:
    await world(db)
    settings = settings_for(database_url, retention_days=DAYS, retention_interval_seconds=0.05,
                            retention_batch=2)
    app = create_app(settings, clock=PinnedClock(NOW, running=False))

    async with AsyncTestClient(app=app) as client:
        for _ in range(200):  # up to 10 s for the first passes to finish
            counted = await deleted_counts(client)
            if counted == {"pings": 5.0, "signals": 5.0, "webhook_events": 0.0}:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # a few more passes, which must find nothing more to delete
        counted = await deleted_counts(client)

    assert (counted, await remaining(db, "pings"), await remaining(db, "signals")) == (
        {"pings": 5.0, "signals": 5.0, "webhook_events": 0.0}, KEPT, KEPT)


ENVIRONMENTS = [
    ("RETENTION_DAYS unset keeps 30 days", {}, 30),
    ("RETENTION_DAYS=7 keeps 7 days", {"RETENTION_DAYS": "7"}, 7),
    ("RETENTION_DAYS=1 keeps 1 day", {"RETENTION_DAYS": "1"}, 1),
]


@pytest.mark.parametrize(("env", "days"), [c[1:] for c in ENVIRONMENTS],
                         ids=[c[0] for c in ENVIRONMENTS])
def test_retention_days_come_from_the_environment(env: dict[str, str], days: int) -> None:
    settings = from_environment(env, database_url="postgresql://x/y", admin_token=None)

    assert settings.retention_days == days


@pytest.mark.parametrize("value", ["0", "-3"], ids=lambda v: f"RETENTION_DAYS={v} is refused")
def test_retention_days_below_one_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="RETENTION_DAYS must be at least 1"):
        from_environment({"RETENTION_DAYS": value}, database_url="postgresql://x/y",
                         admin_token=None)


async def test_settled_webhook_events_past_the_retention_go_and_pending_ones_stay(
        database_url: str, db: asyncpg.Connection) -> None:
    hook = uuid4()
    await db.execute("INSERT INTO webhooks (id, url, events, secret_sealed, created_at) "
                     "VALUES ($1, 'http://127.0.0.1:9/h', '{moment}', '\\x00', $2)", hook, NOW)
    events = {}
    for name, at, status in (("old delivered", NOW - timedelta(days=40), "delivered"),
                             ("old dead", CUTOFF - timedelta(seconds=1), "dead"),
                             ("old but still retried", NOW - timedelta(days=40), "queued"),
                             ("recent delivered", CUTOFF, "delivered")):
        event = uuid4()
        events[name] = event
        await db.execute("INSERT INTO webhook_events (id, type, created_at, data, fanned_out_at) "
                         "VALUES ($1, 'moment', $2, '{}', $2)", event, at)
        delivery = uuid4()
        await db.execute("INSERT INTO webhook_deliveries (id, webhook_id, event_id, status, "
                         "created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $5)",
                         delivery, hook, event, status, at)
        await db.execute("INSERT INTO webhook_attempts (id, webhook_id, delivery_id, event_id, "
                         "event_type, attempt, at, outcome, latency_ms) "
                         "VALUES ($1, $2, $3, $4, 'moment', 1, $5, 'retry', 1)",
                         uuid4(), hook, delivery, event, at)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        purged = await retention_pass(pool, PinnedClock(NOW, running=False), days=DAYS,
                                      batch=1)
    finally:
        await pool.close()

    left = {r["id"] for r in await db.fetch("SELECT id FROM webhook_events")}
    assert {name for name, event in events.items() if event in left} == {
        "old but still retried", "recent delivered"}
    assert purged[-1] == Purged("webhook_events", 2, 3)
    assert await db.fetchval("SELECT count(*) FROM webhook_attempts") == 2
