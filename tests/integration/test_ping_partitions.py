"""Pings partitioned by UTC day: the service creates today's and the next days' partitions at
start (by its clock), a ping lands in its day's partition (in the DEFAULT one when its day has
none), retention drops whole expired days and deletes rows only in the day the cut-off falls in
and the DEFAULT partition, erasure still removes a device's pings from every day, and the
migration moves the pings already stored into one partition per day.

The clock is pinned (standing still) at NOW, a Wednesday at 12:00 UTC, the day of the suite's
pinned instant: the template database already has that day's partitions and the next 3 days'
(tests/conftest.py), as a service started then would have made them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from app.clock import PinnedClock
from app.main import create_app
from app.migrate import available, migrate
from app.partitions import DAYS_AHEAD
from app.retention import retention_pass
from geo.partitions import create_day, create_days, day_partitions
from geo.retention import purge
from tests.api.conftest import ADMIN_TOKEN, settings_for

NOW = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)
TODAY = date(2026, 6, 17)
LATER = datetime(2026, 9, 16, 12, 0, tzinfo=UTC)  # a day of which nothing exists yet

INSERT_DEVICE = """
INSERT INTO devices (id, token_hash, platform, consent_location, consent_marketing)
VALUES ($1, $2, 'android', true, true)
"""
INSERT_PING = "INSERT INTO pings (device_id, ts, lat, lng, cell) VALUES ($1, $2, 48.85, 2.35, 0)"
WHERE_IS = "SELECT tableoid::regclass::text AS leaf, ts FROM pings ORDER BY ts"


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


EXISTING = [day(n) for n in range(DAYS_AHEAD + 1)]  # in the template


def at(offset_days: int, hour: int = 12) -> datetime:
    return datetime(2026, 6, 17, hour, tzinfo=UTC) + timedelta(days=offset_days)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def new_device(db: asyncpg.Connection) -> UUID:
    device = uuid4()
    await db.execute(INSERT_DEVICE, device, device.bytes)
    return device


async def where_pings_are(db: asyncpg.Connection) -> list[tuple[str, datetime]]:
    return [(r["leaf"], r["ts"]) for r in await db.fetch(WHERE_IS)]


async def test_the_service_creates_today_and_the_next_days_at_start(
        database_url: str, db: asyncpg.Connection) -> None:
    before = await day_partitions(db)
    app = create_app(settings_for(database_url), clock=PinnedClock(LATER, running=False))
    async with AsyncTestClient(app=app):
        after = await day_partitions(db)

    later = [LATER.date() + timedelta(days=n) for n in range(DAYS_AHEAD + 1)]
    assert (before, after) == (EXISTING, EXISTING + later)


async def test_a_ping_sent_through_the_api_lands_in_its_days_partition(
        database_url: str, db: asyncpg.Connection) -> None:
    app = create_app(settings_for(database_url), clock=PinnedClock(NOW, running=False))
    async with AsyncTestClient(app=app) as client:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        key = (await client.post("/v1/api-keys", headers=auth,
                                 json={"name": "app", "role": "app"})).json()
        device = (await client.post(
            "/v1/devices", headers={"Authorization": f"Bearer {key['token']}"},
            json={"platform": "android", "fcm_token": "t",
                  "consent": {"location": True, "marketing_push": True}})).json()
        sent = await client.post(
            "/v1/pings", headers={"Authorization": f"Bearer {device['device_token']}"},
            json={"pings": [{"lat": 48.85, "lng": 2.35, "ts": "2026-06-17T11:59:00Z"}]})

    assert (sent.status_code, await where_pings_are(db)) == (
        202, [("pings_p20260617", at(0, 11) + timedelta(minutes=59))])


PLACES = [
    ("a ping of a day with a partition lands in it", at(1), "pings_p20260618"),
    ("a ping at midnight belongs to the day it starts", at(1, 0), "pings_p20260618"),
    ("a ping a microsecond before midnight belongs to the day it ends",
     at(1, 0) - timedelta(microseconds=1), "pings_p20260617"),
    ("a ping of a day without a partition lands in the DEFAULT one", at(-40), "pings_default"),
]


@pytest.mark.parametrize(("ts", "leaf"), [c[1:] for c in PLACES], ids=[c[0] for c in PLACES])
async def test_a_ping_lands_in_the_partition_of_its_utc_day(
        db: asyncpg.Connection, ts: datetime, leaf: str) -> None:
    await create_days(db, [day(0), day(1)])
    await db.execute(INSERT_PING, await new_device(db), ts)

    assert await where_pings_are(db) == [(leaf, ts)]


async def test_creating_a_day_moves_that_days_pings_out_of_the_default_partition(
        db: asyncpg.Connection) -> None:
    device = await new_device(db)
    for ts in (at(9), at(10, 1), at(10, 23), at(11)):
        await db.execute(INSERT_PING, device, ts)

    created = await create_day(db, day(10))

    assert (created, await where_pings_are(db)) == (True, [
        ("pings_default", at(9)), ("pings_p20260627", at(10, 1)),
        ("pings_p20260627", at(10, 23)), ("pings_default", at(11))])


async def test_a_day_is_created_once_however_many_processes_try_at_once(
        database_url: str) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        created = await asyncio.gather(*(create_days(c, [day(10), day(11)]) for c in conns))
        days = await day_partitions(conns[0])
    finally:
        for c in conns:
            await c.close()

    assert (sorted(d for found in created for d in found), days) == (
        [day(10), day(11)], [*EXISTING, day(10), day(11)])


async def test_retention_drops_expired_days_and_deletes_rows_only_where_the_cut_off_falls(
        database_url: str, db: asyncpg.Connection) -> None:
    """30 days kept at NOW (12:00): the cut-off is at 12:00 on day -30. Days -32 and -31 end
    before it and are dropped whole; day -30 keeps its afternoon; the DEFAULT partition loses
    what is older than the cut-off (day -45) and keeps the rest (day -29, which has no
    partition); recent days are untouched."""
    device = await new_device(db)
    await create_days(db, [day(-32), day(-31), day(-30), day(-1), day(0)])
    for ts in (at(-45), at(-32), at(-31), at(-30, 6), at(-30, 18), at(-29), at(-1), at(0, 6)):
        await db.execute(INSERT_PING, device, ts)

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        purged = await retention_pass(pool, PinnedClock(NOW, running=False), days=30,
                                      batch=100)
    finally:
        await pool.close()

    pings = next(p for p in purged if p.table == "pings")
    assert ((pings.days_dropped, pings.rows), await day_partitions(db),
            await where_pings_are(db)) == (
        (2, 2), [day(-30), day(-1), *EXISTING],
        [("pings_p20260518", at(-30, 18)), ("pings_default", at(-29)),
         ("pings_p20260616", at(-1)), ("pings_p20260617", at(0, 6))])


async def test_erasing_a_device_removes_its_pings_from_every_day(
        database_url: str, db: asyncpg.Connection) -> None:
    app = create_app(settings_for(database_url), clock=PinnedClock(NOW, running=False))
    async with AsyncTestClient(app=app) as client:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        key = (await client.post("/v1/api-keys", headers=auth,
                                 json={"name": "app", "role": "app"})).json()
        register: dict[str, Any] = {
            "platform": "android", "fcm_token": "t",
            "consent": {"location": True, "marketing_push": True}}
        erased, kept = [(await client.post(
            "/v1/devices", headers={"Authorization": f"Bearer {key['token']}"},
            json=register)).json() for _ in range(2)]
        for device in (erased, kept):
            for ts in (at(-40), at(0), at(1), at(2)):
                await db.execute(INSERT_PING, UUID(device["device_id"]), ts)
        answer = await client.delete(
            "/v1/devices/me", headers={"Authorization": f"Bearer {erased['device_token']}"})

    left = await db.fetch("SELECT device_id::text AS d, count(*) AS n FROM pings GROUP BY 1")
    assert (answer.status_code, {(r["d"], r["n"]) for r in left}) == (
        204, {(kept["device_id"], 4)})


async def test_the_migration_moves_stored_pings_into_one_partition_per_day(
        empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("""CREATE TABLE schema_migrations (
            number integer PRIMARY KEY, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())""")
        for m in available():
            if m.number < 11:
                await conn.execute(m.sql)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)",
                                   m.number, m.name)
        device = await new_device(conn)
        for ts in (at(-2, 23), at(-1, 0), at(-1, 5), at(0)):
            await conn.execute(INSERT_PING, device, ts)

        applied = await migrate(conn)
        placed = await where_pings_are(conn)
        kind = await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'pings'")
        indexed = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'pings_p20260616'")
    finally:
        await conn.close()

    assert (applied[0], kind, indexed, placed) == ("0011_pings_by_day.sql", b"p", 2, [
        ("pings_p20260615", at(-2, 23)), ("pings_p20260616", at(-1, 0)),
        ("pings_p20260616", at(-1, 5)), ("pings_p20260617", at(0))])


async def test_a_day_kept_busy_by_a_ping_batch_is_dropped_at_the_next_pass_instead_of_waiting(
        database_url: str, db: asyncpg.Connection) -> None:
    device = await new_device(db)
    await create_days(db, [day(-40), day(0)])
    await db.execute(INSERT_PING, device, at(-40))
    batch = await asyncpg.connect(database_url)
    try:
        async with batch.transaction():  # a ping batch in flight holds `pings`
            await batch.execute(INSERT_PING, device, at(0))
            busy = await asyncio.wait_for(purge(db, "pings", at(-30), batch=100), timeout=10)
        left_while_busy = await day_partitions(db)
        after = await purge(db, "pings", at(-30), batch=100)
    finally:
        await batch.close()

    assert (busy.days_dropped, left_while_busy, after.days_dropped,
            await day_partitions(db)) == (0, [day(-40), *EXISTING], 1, EXISTING)
