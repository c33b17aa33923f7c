"""The in-memory replica of what the hot path reads: the fence index, store time zones, the
active campaigns and the policy.

One rule: a ping batch never runs on a stale replica. Every batch reads the two version counters
inside its own transaction (one round trip) and reloads first when either moved; NOTIFY on
`contexto_catalog` / `contexto_campaigns` reloads eagerly in between, so that reload is rarely
paid by a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from app.db import init_connection
from campaigns import store as campaign_store
from campaigns.model import Campaign, Policy
from geo import store as geo_store
from geo.fences import shape_from_stored
from geo.index import FenceIndex, IndexedFence
from geo.store import Connection

log = logging.getLogger("contexto.catalog")

VERSIONS = """
SELECT (SELECT version FROM catalog_version) AS fences,
       (SELECT version FROM campaign_version) AS campaigns
"""


@dataclass
class Catalog:
    resolution: int
    index: FenceIndex = field(init=False)
    store_timezones: dict[UUID, str] = field(default_factory=dict)
    store_tags: dict[UUID, tuple[str, ...]] = field(default_factory=dict)
    campaigns: list[Campaign] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    fence_version: int = -1
    campaign_version: int = -1
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.index = FenceIndex.build([], resolution=self.resolution)

    @property
    def loaded(self) -> bool:
        return self.fence_version >= 0 and self.campaign_version >= 0

    @property
    def version(self) -> int:
        return self.fence_version

    async def refresh(self, conn: Connection) -> None:
        """Bring the replica up to the versions `conn` sees (call it inside the batch's
        transaction, so the batch and the replica agree)."""
        row = await conn.fetchrow(VERSIONS)
        assert row is not None
        await self.ensure(conn, row["fences"], row["campaigns"])

    async def ensure(self, conn: Connection, fences: int, campaigns: int) -> None:
        """Reload what is older than the given versions (read by the caller)."""
        if fences == self.fence_version and campaigns == self.campaign_version:
            return
        async with self._lock:
            if fences != self.fence_version:
                await self._load_fences(conn, fences)
            if campaigns != self.campaign_version:
                await self._load_campaigns(conn, campaigns)

    async def _load_fences(self, conn: Connection, version: int) -> None:
        rows = await conn.fetch(geo_store.INDEX_ROWS)
        fences = [
            IndexedFence(
                fence_id=r["id"], store_id=r["store_id"],
                shape=shape_from_stored(r["kind"], r["area_wkb"], r["center_lng"],
                                        r["center_lat"], r["radius_m"], r["area_m2"]),
                dwell_seconds=r["dwell_seconds"], tags=tuple(r["tags"]), enabled=r["enabled"],
            )
            for r in rows
        ]
        timezones = {r["store_id"]: r["store_timezone"] for r in rows}
        timezones.update({r["id"]: r["timezone"]
                          for r in await conn.fetch("SELECT id, timezone FROM stores")})
        # Building is CPU work: keep the event loop answering other requests meanwhile.
        index = await asyncio.to_thread(FenceIndex.build, fences, resolution=self.resolution,
                                        version=version)
        tags: dict[UUID, set[str]] = {}
        for f in fences:
            if f.enabled:
                tags.setdefault(f.store_id, set()).update(f.tags)
        self.index, self.store_timezones, self.fence_version = index, timezones, version
        self.store_tags = {store: tuple(sorted(t)) for store, t in tags.items()}
        log.info("geofence index v%d: %d fences", version, len(index))

    def predicted_targets(self) -> set[UUID]:
        """Stores some active `predicted_next` campaign may fire for."""
        stores: set[UUID] = set()
        fences = self.index.fences
        for c in self.campaigns:
            t = c.trigger
            if t.kind != "predicted_next":
                continue
            stores.update(t.store_ids)
            stores.update(fences[f].store_id for f in t.geofence_ids if f in fences)
            if t.tags:
                wanted = set(t.tags)
                stores.update(s for s, tags in self.store_tags.items() if wanted & set(tags))
        return stores

    async def _load_campaigns(self, conn: Connection, version: int) -> None:
        self.campaigns = await campaign_store.active_campaigns(conn)
        self.policy = await campaign_store.get_policy(conn)
        self.campaign_version = version


@asynccontextmanager
async def watching(catalog: Catalog, dsn: str) -> AsyncIterator[None]:
    """Load the catalog, then reload it whenever another process announces a change."""
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    await catalog.refresh(conn)
    wake = asyncio.Event()

    def on_notify(*_: Any) -> None:
        wake.set()

    await conn.add_listener("contexto_catalog", on_notify)
    await conn.add_listener("contexto_campaigns", on_notify)

    async def reload_forever() -> None:
        while True:
            await wake.wait()
            wake.clear()
            try:
                await catalog.refresh(conn)
            except Exception:  # keep watching; the next ping batch reloads anyway
                log.exception("catalog reload failed; the next ping batch retries it")

    task = asyncio.create_task(reload_forever(), name="catalog-reload")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await conn.close()
