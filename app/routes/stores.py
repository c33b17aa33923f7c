"""Stores and their geofences: drawn by store managers, read by campaign staff."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import asyncpg
from litestar import Controller, delete, get, patch, post, put
from litestar.params import Parameter

from app import audit
from app.audit import Change
from app.auth import Principal, admits
from app.errors import decode_error_fields
from app.pagination import Cursor, Limit, Page, after_of, page_of
from campaigns import store as campaign_store
from geo import store as geo_store
from geo.errors import Conflict, InvalidField
from geo.fences import InvalidGeometry
from geo.model import (
    CreatedGeofences,
    ExportCollection,
    ExportFeature,
    ExportProperties,
    FeatureCollection,
    Geofence,
    GeofenceIn,
    Store,
    StoreIn,
    StorePatch,
)
from geo.store import Connection

READERS = ("campaign_manager", "store_manager")


def _scope(principal: Principal) -> list[UUID] | None:
    return sorted(principal.store_ids) if principal.role == "store_manager" else None


async def _refuse_if_referenced(conn: Connection, store_ids: list[UUID],
                                fence_ids: list[UUID], what: str) -> None:
    users = await campaign_store.campaigns_referencing(conn, store_ids, fence_ids)
    if users:
        raise Conflict(f"{what} is used by campaigns {', '.join(map(str, users))}; "
                       "change or delete them first")


class StoreController(Controller):
    path = "/v1/stores"
    tags = ["stores"]

    @post(operation_id="createStore", opt=admits("admin", action="create stores"))
    async def create(self, data: StoreIn, pool: asyncpg.Pool, principal: Principal,
                     now: datetime) -> Store:
        """Create a store; `timezone` (IANA) is where its campaigns' dayparts are read."""
        async with pool.acquire() as conn, conn.transaction():
            store = await geo_store.insert_store(conn, data, now)
            await audit.record(conn, principal, now, Change("create", "store", store.id,
                                                            after=store))
        return store

    @get(operation_id="listStores", opt=admits(*READERS, action="list stores"))
    async def list_stores(self, pool: asyncpg.Pool, principal: Principal, limit: Limit = 100,
                          cursor: Cursor = None) -> Page[Store]:
        """The stores the caller may see (a store manager: its own)."""
        async with pool.acquire() as conn:
            items = await geo_store.list_stores(conn, _scope(principal), after_of(cursor),
                                                limit + 1)
        return page_of(items, limit)

    @get("/{store_id:uuid}", operation_id="getStore", opt=admits(*READERS, action="read stores"))
    async def get_store(self, store_id: UUID, pool: asyncpg.Pool, principal: Principal) -> Store:
        """One store."""
        principal.require_store(store_id)
        async with pool.acquire() as conn:
            return await geo_store.get_store(conn, store_id)

    @patch("/{store_id:uuid}", operation_id="updateStore",
           opt=admits("store_manager", action="change stores"))
    async def update(self, store_id: UUID, data: StorePatch, pool: asyncpg.Pool,
                     principal: Principal, now: datetime) -> Store:
        """Change some of a store's fields; the others keep their values."""
        principal.require_store(store_id)
        async with pool.acquire() as conn, conn.transaction():
            before = await geo_store.get_store(conn, store_id, lock=True)
            after = await geo_store.patch_store(conn, store_id, data, now)
            await audit.record(conn, principal, now, Change("update", "store", store_id,
                                                            before=before, after=after))
        return after

    @delete("/{store_id:uuid}", operation_id="deleteStore", opt=admits("admin",
                                                                        action="delete stores"))
    async def remove(self, store_id: UUID, pool: asyncpg.Pool, principal: Principal,
                     now: datetime) -> None:
        """Delete a store and its geofences; refused (409) while a campaign names either."""
        async with pool.acquire() as conn, conn.transaction():
            # Locking the store keeps new fences out (their insert waits on it) and locking its
            # fences keeps them as listed, so the audit records exactly what the cascade takes.
            store = await geo_store.get_store(conn, store_id, lock=True)
            fences = await geo_store.store_fences(conn, store_id, lock=True)
            await _refuse_if_referenced(conn, [store_id], [f.id for f in fences],
                                        f"store {store_id}")
            await geo_store.delete_store(conn, store_id)
            await audit.record(conn, principal, now,
                               Change("delete", "store", store_id, before=store),
                               *(Change("delete", "geofence", f.id, before=f) for f in fences))

    @post("/{store_id:uuid}/geofences", operation_id="createGeofence",
          opt=admits("store_manager", action="draw geofences"))
    async def create_fence(self, store_id: UUID, data: GeofenceIn, pool: asyncpg.Pool,
                           principal: Principal, now: datetime) -> Geofence:
        """Draw a geofence: a GeoJSON Polygon or MultiPolygon, or a Point with `radius_m`."""
        principal.require_store(store_id)
        async with pool.acquire() as conn, conn.transaction():
            await geo_store.get_store(conn, store_id)
            fence = await geo_store.insert_fence(conn, store_id, data, now)
            await audit.record(conn, principal, now, Change("create", "geofence", fence.id,
                                                            after=fence))
        return fence

    @post("/{store_id:uuid}/geofences/import", operation_id="importGeofences",
          opt=admits("store_manager", action="import geofences"))
    async def import_fences(self, store_id: UUID, data: FeatureCollection, pool: asyncpg.Pool,
                            principal: Principal, now: datetime) -> CreatedGeofences:
        """Import a FeatureCollection (properties: name, radius_m, dwell_seconds, tags, enabled):
        all of it, or nothing when any feature is invalid."""
        principal.require_store(store_id)
        bodies = []
        for i, feature in enumerate(data.features):
            p = feature.properties
            try:
                body = GeofenceIn(name=p.name, geometry=feature.geometry, radius_m=p.radius_m,
                                  dwell_seconds=p.dwell_seconds, enabled=p.enabled, tags=p.tags)
            except ValueError as exc:  # a cross-field check, its message led by `field: `
                (error,) = decode_error_fields(str(exc))
                inner = "" if error.field == "body" else f".{error.field}"
                raise InvalidField(f"features[{i}].properties{inner}", error.message) from exc
            bodies.append(body)
        async with pool.acquire() as conn, conn.transaction():
            await geo_store.get_store(conn, store_id)
            created = []
            for i, body in enumerate(bodies):
                try:
                    created.append(await geo_store.insert_fence(conn, store_id, body, now))
                except InvalidGeometry as exc:
                    where = "" if exc.field.startswith("geometry") else "properties."
                    field = f"features[{i}].{where}{exc.field}"
                    raise InvalidGeometry(field, exc.message) from exc
            # One entry per fence, so each fence's history is found under its own id.
            await audit.record(conn, principal, now,
                               *(Change("import", "geofence", f.id, after=f) for f in created))
        return CreatedGeofences(created)

    @get("/{store_id:uuid}/geofences/export", operation_id="exportGeofences",
         opt=admits(*READERS, action="export geofences"))
    async def export_fences(self, store_id: UUID, pool: asyncpg.Pool,
                            principal: Principal) -> ExportCollection:
        """The store's geofences as a GeoJSON FeatureCollection (importable again)."""
        principal.require_store(store_id)
        async with pool.acquire() as conn:
            await geo_store.get_store(conn, store_id)
            fences = await geo_store.store_fences(conn, store_id)
        return ExportCollection(features=[
            ExportFeature(id=f.id, geometry=f.geometry, properties=ExportProperties(
                id=f.id, name=f.name, radius_m=f.radius_m, dwell_seconds=f.dwell_seconds,
                enabled=f.enabled, tags=f.tags, version=f.version))
            for f in fences
        ])


class GeofenceController(Controller):
    path = "/v1/geofences"
    tags = ["geofences"]

    @get(operation_id="listGeofences", opt=admits(*READERS, action="list geofences"))
    async def list_fences(
        self, pool: asyncpg.Pool, principal: Principal,
        store_id: Annotated[UUID | None, Parameter(description="only this store's fences")] = None,
        tag: Annotated[str | None, Parameter(description="only fences with this tag")] = None,
        limit: Limit = 100, cursor: Cursor = None,
    ) -> Page[Geofence]:
        """Geofences the caller may see, optionally of one store or with one tag."""
        scope = _scope(principal)
        if store_id is not None:
            principal.require_store(store_id)
            scope = [store_id]
        async with pool.acquire() as conn:
            items = await geo_store.list_fences(conn, scope, tag, after_of(cursor), limit + 1)
        return page_of(items, limit)

    @get("/{fence_id:uuid}", operation_id="getGeofence",
         opt=admits(*READERS, action="read geofences"))
    async def get_fence(self, fence_id: UUID, pool: asyncpg.Pool,
                        principal: Principal) -> Geofence:
        """One geofence."""
        async with pool.acquire() as conn:
            fence = await geo_store.get_fence(conn, fence_id)
        principal.require_store(fence.store_id, "geofence", fence_id)
        return fence

    @put("/{fence_id:uuid}", operation_id="replaceGeofence",
         opt=admits("store_manager", action="change geofences"))
    async def replace(self, fence_id: UUID, data: GeofenceIn, pool: asyncpg.Pool,
                      principal: Principal, now: datetime) -> Geofence:
        """Replace a geofence; its version goes up and the very next ping sees the change."""
        async with pool.acquire() as conn, conn.transaction():
            before = await geo_store.get_fence(conn, fence_id, lock=True)
            principal.require_store(before.store_id, "geofence", fence_id)
            after = await geo_store.replace_fence(conn, fence_id, data, now)
            await audit.record(conn, principal, now, Change("update", "geofence", fence_id,
                                                            before=before, after=after))
        return after

    @delete("/{fence_id:uuid}", operation_id="deleteGeofence",
            opt=admits("store_manager", action="delete geofences"))
    async def remove(self, fence_id: UUID, pool: asyncpg.Pool, principal: Principal,
                     now: datetime) -> None:
        """Delete a geofence; refused (409) while a campaign names it."""
        async with pool.acquire() as conn, conn.transaction():
            before = await geo_store.get_fence(conn, fence_id, lock=True)
            principal.require_store(before.store_id, "geofence", fence_id)
            await _refuse_if_referenced(conn, [], [fence_id], f"geofence {fence_id}")
            await geo_store.delete_fence(conn, fence_id)
            await audit.record(conn, principal, now, Change("delete", "geofence", fence_id,
                                                            before=before))
