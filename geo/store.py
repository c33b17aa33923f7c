"""SQL for stores, geofences and pings; each function takes the connection, the caller owns
the transaction.

One rule: fences are stored validated, with their area as WKB next to the GeoJSON as given, so
the index rebuilds without re-validating.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec
import shapely
from asyncpg.pool import PoolConnectionProxy
from msgspec import UNSET

from geo import fences
from geo.errors import Conflict, NotFound
from geo.model import Geofence, GeofenceIn, Store, StoreIn, StorePatch

# What every store function takes: a plain connection or one borrowed from the pool.
Connection = asyncpg.Connection | PoolConnectionProxy
# Where a keyset page starts: after this (created_at, id); (None, None) from the first item.
After = tuple[datetime | None, UUID | None]

_STORE_COLUMNS = "id, name, timezone, address, external_id, created_at, updated_at"
_FENCE_COLUMNS = (
    "id, store_id, name, geometry, radius_m, dwell_seconds, enabled, tags, version, "
    "created_at, updated_at, area_m2"
)

INSERT_STORE = f"""
INSERT INTO stores (id, name, timezone, address, external_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
RETURNING {_STORE_COLUMNS}
"""
SELECT_STORE = f"SELECT {_STORE_COLUMNS} FROM stores WHERE id = $1"
# A write that records what it changed reads the row locked, so no other write slips in between.
LOCK_STORE = SELECT_STORE + " FOR UPDATE"
LIST_STORES = f"""
SELECT {_STORE_COLUMNS} FROM stores
WHERE ($1::uuid[] IS NULL OR id = any($1::uuid[]))
  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
ORDER BY created_at, id LIMIT $4
"""
UPDATE_STORE = f"""
UPDATE stores SET name = $2, timezone = $3, address = $4, external_id = $5, updated_at = $6
WHERE id = $1 RETURNING {_STORE_COLUMNS}
"""
DELETE_STORE = "DELETE FROM stores WHERE id = $1 RETURNING id"

INSERT_FENCE = f"""
INSERT INTO geofences (id, store_id, name, kind, geometry, area_wkb, center_lng, center_lat,
                       radius_m, area_m2, dwell_seconds, enabled, tags, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
RETURNING {_FENCE_COLUMNS}
"""
SELECT_FENCE = f"SELECT {_FENCE_COLUMNS} FROM geofences WHERE id = $1"
LOCK_FENCE = SELECT_FENCE + " FOR UPDATE"
LIST_FENCES = f"""
SELECT {_FENCE_COLUMNS} FROM geofences
WHERE ($1::uuid[] IS NULL OR store_id = any($1::uuid[]))
  AND ($2::text IS NULL OR $2 = any(tags))
  AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::uuid))
ORDER BY created_at, id LIMIT $5
"""
STORE_FENCES = f"SELECT {_FENCE_COLUMNS} FROM geofences WHERE store_id = $1 ORDER BY created_at, id"
LOCK_STORE_FENCES = STORE_FENCES + " FOR UPDATE"
REPLACE_FENCE = f"""
UPDATE geofences SET name = $2, kind = $3, geometry = $4, area_wkb = $5, center_lng = $6,
    center_lat = $7, radius_m = $8, area_m2 = $9, dwell_seconds = $10, enabled = $11, tags = $12,
    version = version + 1, updated_at = $13
WHERE id = $1 RETURNING {_FENCE_COLUMNS}
"""
DELETE_FENCE = "DELETE FROM geofences WHERE id = $1 RETURNING id"
EXISTING_STORES = "SELECT id FROM stores WHERE id = any($1::uuid[])"
EXISTING_FENCES = "SELECT id FROM geofences WHERE id = any($1::uuid[])"
CATALOG_VERSION = "SELECT version FROM catalog_version"
INDEX_ROWS = """
SELECT g.id, g.store_id, g.kind, g.area_wkb, g.center_lng, g.center_lat, g.radius_m, g.area_m2,
       g.dwell_seconds, g.tags, g.enabled, s.timezone AS store_timezone
FROM geofences g JOIN stores s ON s.id = g.store_id
"""


def _store(row: asyncpg.Record) -> Store:
    return Store(**dict(row))


def _fence(row: asyncpg.Record) -> Geofence:
    values: dict[str, Any] = dict(row)
    values["geometry"] = msgspec.convert(values["geometry"], fences.Geometry)
    values["tags"] = list(values["tags"])
    return Geofence(**values)


async def insert_store(conn: Connection, body: StoreIn, now: datetime) -> Store:
    try:
        row = await conn.fetchrow(INSERT_STORE, uuid4(), body.name, body.timezone, body.address,
                                  body.external_id, now)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"a store with external_id {body.external_id!r} exists already") from exc
    assert row is not None
    return _store(row)


async def get_store(conn: Connection, store_id: UUID, *, lock: bool = False) -> Store:
    """The store; `lock`: also hold its row until the transaction ends."""
    row = await conn.fetchrow(LOCK_STORE if lock else SELECT_STORE, store_id)
    if row is None:
        raise NotFound("store", store_id)
    return _store(row)


async def list_stores(conn: Connection, scope: Sequence[UUID] | None,
                      after: After, limit: int) -> list[Store]:
    rows = await conn.fetch(LIST_STORES, scope, *after, limit)
    return [_store(r) for r in rows]


async def patch_store(conn: Connection, store_id: UUID, patch: StorePatch,
                      now: datetime) -> Store:
    current = await get_store(conn, store_id)
    merged = msgspec.structs.replace(
        current, **{f: getattr(patch, f) for f in patch.__struct_fields__
                    if getattr(patch, f) is not UNSET}
    )
    try:
        row = await conn.fetchrow(UPDATE_STORE, store_id, merged.name, merged.timezone,
                                  merged.address, merged.external_id, now)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"a store with external_id {merged.external_id!r} exists already") from exc
    assert row is not None
    return _store(row)


async def delete_store(conn: Connection, store_id: UUID) -> None:
    if await conn.fetchval(DELETE_STORE, store_id) is None:
        raise NotFound("store", store_id)


def _shape_args(body: GeofenceIn) -> tuple[Any, ...]:
    shape = fences.validate(body.geometry, body.radius_m)
    return (
        shape.kind, msgspec.to_builtins(body.geometry), shapely.to_wkb(shape.area),
        shape.center_lng, shape.center_lat, shape.radius_m, shape.area_m2,
    )


async def insert_fence(conn: Connection, store_id: UUID, body: GeofenceIn,
                       now: datetime) -> Geofence:
    kind, geometry, wkb, lng, lat, radius, area = _shape_args(body)
    row = await conn.fetchrow(INSERT_FENCE, uuid4(), store_id, body.name, kind, geometry, wkb,
                              lng, lat, radius, area, body.dwell_seconds, body.enabled,
                              body.tags, now)
    assert row is not None
    return _fence(row)


async def get_fence(conn: Connection, fence_id: UUID, *, lock: bool = False) -> Geofence:
    """The geofence; `lock`: also hold its row until the transaction ends."""
    row = await conn.fetchrow(LOCK_FENCE if lock else SELECT_FENCE, fence_id)
    if row is None:
        raise NotFound("geofence", fence_id)
    return _fence(row)


async def list_fences(conn: Connection, stores: Sequence[UUID] | None, tag: str | None,
                      after: After, limit: int) -> list[Geofence]:
    rows = await conn.fetch(LIST_FENCES, stores, tag, *after, limit)
    return [_fence(r) for r in rows]


async def store_fences(conn: Connection, store_id: UUID, *,
                       lock: bool = False) -> list[Geofence]:
    query = LOCK_STORE_FENCES if lock else STORE_FENCES
    return [_fence(r) for r in await conn.fetch(query, store_id)]


async def replace_fence(conn: Connection, fence_id: UUID, body: GeofenceIn,
                        now: datetime) -> Geofence:
    kind, geometry, wkb, lng, lat, radius, area = _shape_args(body)
    row = await conn.fetchrow(REPLACE_FENCE, fence_id, body.name, kind, geometry, wkb, lng, lat,
                              radius, area, body.dwell_seconds, body.enabled, body.tags, now)
    if row is None:
        raise NotFound("geofence", fence_id)
    return _fence(row)


async def delete_fence(conn: Connection, fence_id: UUID) -> None:
    if await conn.fetchval(DELETE_FENCE, fence_id) is None:
        raise NotFound("geofence", fence_id)


async def missing_ids(conn: Connection, query: str, ids: Sequence[UUID]) -> list[UUID]:
    if not ids:
        return []
    found = {r["id"] for r in await conn.fetch(query, list(ids))}
    return [i for i in ids if i not in found]


async def catalog_version(conn: Connection) -> int:
    version: int = await conn.fetchval(CATALOG_VERSION)
    return version


PING_COLUMNS = ("device_id", "ts", "lat", "lng", "accuracy_m", "speed_mps", "heading_deg", "cell",
                "received_at")
SIGNAL_COLUMNS = ("device_id", "ts", "kind", "attributes", "received_at")


async def copy_pings(conn: Connection, records: Sequence[tuple[Any, ...]]) -> None:
    """Bulk-insert pings (rows in `PING_COLUMNS` order) with COPY."""
    await conn.copy_records_to_table("pings", records=records, columns=PING_COLUMNS)


async def copy_signals(conn: Connection, records: Sequence[tuple[Any, ...]]) -> None:
    """Bulk-insert signals (rows in `SIGNAL_COLUMNS` order) with COPY."""
    await conn.copy_records_to_table("signals", records=records, columns=SIGNAL_COLUMNS)
