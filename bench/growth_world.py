"""The world of the growth benchmark (`bench.growth`): what the API makes (stores and fences, an
`enter` campaign, the policy, the devices that will send pings), and the stored history of
pings, generated straight into the database with binary COPY.

One rule: both databases the benchmark compares get the same world from the same seed; they
differ only in the stored pings (none in one, `--pings` in the other), so any difference in the
figures is the cost of a grown pings table.

The history covers the `days` whole UTC days before the clock's day, the same number of pings
each day, spread uniformly over the day, the city (`bench.e2e`'s 10 × 10 km) and `devices`
background devices written with COPY in both databases (not registered through the API: they
only own pings). Each day's
partition is created first, as the service would have created it ahead of that day.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from bench import week
from bench.e2e import HALF_SIDE_M, fence_body, store_centres
from geo.partitions import create_days

Call = Callable[..., Awaitable[Any]]
DEVICE_COLUMNS = ("id", "token_hash", "platform", "fcm_token", "consent_location",
                  "consent_marketing", "consent_updated_at", "created_at", "updated_at")
ROWS_PER_COPY = 1_000_000


@dataclass
class World:
    campaign_id: str
    centres: list[tuple[float, float]]  # store centres, metres east and north of the centre
    device_tokens: list[str]  # registered through the API, in the order they will be used


async def through_api(ok: Call, *, stores: int, devices: int, seed: int,
                      now: datetime) -> World:
    """The policy, `stores` stores with a fence each, one active `enter` campaign at every
    store, and `devices` devices registered by the app."""
    rng = np.random.default_rng(seed)
    await ok("PUT", "/v1/policy", body={"max_per_device_per_day": 100,
                                        "min_seconds_between_pushes": 0, "quiet_hours": None})
    centres = store_centres(stores, seed)
    store_ids = []
    for k, (x, y) in enumerate(centres):
        made = await ok("POST", "/v1/stores", body={"name": f"growth store {k}",
                                                     "timezone": "Europe/Paris"})
        await ok("POST", f"/v1/stores/{made['id']}/geofences", body=fence_body(k, x, y, rng))
        store_ids.append(made["id"])
    campaign = await ok("POST", "/v1/campaigns", body={
        "name": "welcome in", "status": "active", "trigger": {"kind": "enter"},
        "schedule": {"starts_at": (now - timedelta(days=60)).isoformat(),
                     "ends_at": (now + timedelta(days=30)).isoformat()},
        "offer": {"title": "Welcome in", "body": "10 % off today"},
        "offer_ttl_seconds": 86_400,
        "caps": {"per_device": {"count": 10_000, "period_seconds": 86_400}}})
    app_key = await ok("POST", "/v1/api-keys", body={"name": "growth app", "role": "app"})
    tokens = []
    for k in range(devices):
        device = await ok("POST", "/v1/devices", token=app_key["token"], body={
            "platform": "android", "fcm_token": f"growth-{seed}-{k}",
            "consent": {"location": True, "marketing_push": True}})
        tokens.append(device["device_token"])
    return World(campaign["id"], centres, tokens)


def background_ids(devices: int, seed: int) -> list[uuid.UUID]:
    return [uuid.UUID(bytes=hashlib.sha256(f"growth:{seed}:{k}".encode()).digest()[:16])
            for k in range(devices)]


async def background_devices(conn: asyncpg.Connection, *, devices: int, seed: int,
                             now: datetime) -> None:
    """The devices the stored pings belong to (in both databases, so that they differ in pings
    alone), with COPY."""
    made = now - timedelta(days=90)
    await conn.copy_records_to_table("devices", columns=DEVICE_COLUMNS, records=[
        (d, hashlib.sha256(d.bytes).digest(), "android", f"growth-bg-{k}", True, True,
         made, made, made) for k, d in enumerate(background_ids(devices, seed))])


async def stored_pings(conn: asyncpg.Connection, *, pings: int, devices: int, days: int,
                       now: datetime, seed: int, resolution: int) -> float:
    """`pings` pings of the `devices` background devices over the `days` UTC days before
    `now`'s, with COPY; the seconds it took."""
    started = time.monotonic()
    ids = background_ids(devices, seed)
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days)
    await create_days(conn, [first + timedelta(days=k) for k in range(days)])
    rng = np.random.default_rng(seed)
    per_day = [pings // days + (1 if k < pings % days else 0) for k in range(days)]
    for k, count in enumerate(per_day):
        midnight = datetime.combine(first + timedelta(days=k), datetime.min.time(), tzinfo=UTC)
        for start in range(0, count, ROWS_PER_COPY):
            n = min(ROWS_PER_COPY, count - start)
            ts = midnight.timestamp() + np.sort(rng.uniform(0.0, 86_400.0, n))
            chunk = week.Pings(
                device=rng.integers(0, devices, n), ts=ts,
                received=ts + rng.uniform(1.0, 120.0, n),
                x=rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, n),
                y=rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, n),
                accuracy=rng.uniform(5.0, 50.0, n))
            await conn.copy_to_table("pings", source=io.BytesIO(week.copy_rows(
                chunk, ids, resolution)), columns=week.PING_COLUMNS, format="binary")
        print(f"    day {k + 1}/{days}: {sum(per_day[:k + 1]):,} pings stored "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    return time.monotonic() - started
