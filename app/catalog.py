"""The in-memory replica of what the hot path reads: the fence index, store time zones, the
active campaigns and the policy.

One rule: a ping batch never runs on a stale replica. Every batch reads the two version counters
inside its own transaction (one round trip) and reloads first when either moved; NOTIFY on
`contexto_catalog` / `contexto_campaigns` reloads eagerly in between, so that reload is rarely
paid by a request.

The fence index is refreshed incrementally, LSM-style: a reload lists every fence's row version
(cheap), fetches only the rows that differ from what the replica holds, and rebuilds only the
small delta of fences touched since the base index was built (`geo.index.LayeredIndex`). When the
delta grows past a threshold, a new base is built in a thread while batches go on with the layered
view, and swapped in with the changes made meanwhile re-applied as its delta.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from app.db import init_connection
from app.learning import Learner
from app.tasks import running
from campaigns import store as campaign_store
from campaigns.assignments import campaign_stores
from campaigns.model import Campaign, Policy
from geo.fences import shape_from_stored
from geo.index import FenceIndex, IndexedFence, LayeredIndex
from geo.index_share import shared_build
from geo.store import Connection

log = logging.getLogger("contexto.catalog")

VERSIONS = """
SELECT (SELECT version FROM catalog_version) AS fences,
       (SELECT version FROM campaign_version) AS campaigns
"""
# A fence's row version is `xmin`, the transaction that wrote the row: it moves on every write
# (an API edit, a delete and re-insert, a change made by hand in SQL), so nothing is missed; a
# table rewrite (VACUUM FULL) moves them all, costing one full rebuild. Listed as two parallel
# arrays (one aggregate scan feeds both in the same order): one row of arrays decodes far faster
# than a record per fence.
FENCE_KEYS = """
SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(xmin::text::bigint), '{}') AS xmins
FROM geofences
"""
FENCE_ROWS = """
SELECT id, store_id, kind, area_wkb, center_lng, center_lat, radius_m, area_m2, dwell_seconds,
       tags, enabled, xmin::text::bigint AS xmin
FROM geofences WHERE id = any($1::uuid[])
"""
STORE_TIMEZONES = "SELECT id, timezone FROM stores"
STORE_TAGS = """
SELECT store_id, array_agg(DISTINCT tag) AS tags
FROM geofences, unnest(tags) AS tag WHERE enabled GROUP BY store_id
"""
STORE_TAGS_OF = """
SELECT store_id, array_agg(DISTINCT tag) AS tags
FROM geofences, unnest(tags) AS tag WHERE enabled AND store_id = any($1::uuid[])
GROUP BY store_id
"""

# The delta is rebuilt on every change, so its size bounds how long a change takes to reach the
# next batch (~0.5 ms per fence); a base rebuild costs ~0.5 ms per fence of the base, in a thread.
# Compacting when the delta passes the smaller of DELTA_LIMIT and DELTA_SHARE of the base keeps
# both small; DELTA_FLOOR spares tiny bases a compaction per change.
DELTA_LIMIT = 256
DELTA_SHARE = 0.05
DELTA_FLOOR = 16

RowVersion = int


def _indexed(r: asyncpg.Record) -> IndexedFence:
    return IndexedFence(
        fence_id=r["id"], store_id=r["store_id"],
        shape=shape_from_stored(r["kind"], r["area_wkb"], r["center_lng"], r["center_lat"],
                                r["radius_m"], r["area_m2"]),
        dwell_seconds=r["dwell_seconds"], tags=tuple(r["tags"]), enabled=r["enabled"],
    )


@dataclass(frozen=True)
class CatalogView:
    """An immutable snapshot of the replica (each part is replaced whole on reload)."""

    index: LayeredIndex
    resolution: int
    store_timezones: Mapping[UUID, str]
    store_tags: Mapping[UUID, tuple[str, ...]]
    campaigns: Sequence[Campaign]
    policy: Policy
    # Each campaign's stores, shared by every view of the same index, tags and campaigns (the
    # Catalog hands the same dict on until one of them is replaced).
    stores_memo: dict[UUID, list[UUID] | None] = field(default_factory=dict, compare=False)

    def predicted_targets(self) -> set[UUID]:
        """Stores some active `predicted_next` campaign may fire for."""
        stores: set[UUID] = set()
        for c in self.campaigns:
            if c.trigger.kind == "predicted_next":
                stores.update(self.campaign_stores(c) or ())
        return stores

    def campaign_stores(self, campaign: Campaign) -> list[UUID] | None:
        """The stores the campaign's trigger covers (None: every store)."""
        if campaign.id not in self.stores_memo:
            self.stores_memo[campaign.id] = campaign_stores(
                campaign.trigger, self.index.fences, self.store_tags)
        return self.stores_memo[campaign.id]


@dataclass
class Catalog:
    resolution: int
    # Where base indexes are shared with other processes (geo.index_share); None: built here.
    index_dir: Path | None = None
    delta_limit: int = DELTA_LIMIT
    delta_share: float = DELTA_SHARE
    index: LayeredIndex = field(init=False)
    store_timezones: dict[UUID, str] = field(default_factory=dict)
    store_tags: dict[UUID, tuple[str, ...]] = field(default_factory=dict)
    campaigns: list[Campaign] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    fence_version: int = -1
    campaign_version: int = -1
    # What earlier deliveries taught arbitration (refreshed by the ping path, see app/learning.py)
    learner: Learner = field(default_factory=Learner)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Every fence the replica holds (disabled ones too) and the row version it was read at.
    _fences: dict[UUID, IndexedFence] = field(default_factory=dict)
    _row_versions: dict[UUID, RowVersion] = field(default_factory=dict)
    # Fences added, changed or removed since the base was built: the delta holds the current
    # version of those that exist, and the base answers for none of them.
    _touched: set[UUID] = field(default_factory=set)
    # While a new base is being built: the fences touched since its snapshot.
    _pending: set[UUID] | None = None
    _compaction: asyncio.Task[None] | None = None
    # The views' memo of campaign stores and the parts it was computed from (held, and compared
    # by identity: each part is replaced whole when it changes, never edited in place).
    _memo: dict[UUID, list[UUID] | None] = field(default_factory=dict)
    _memo_of: tuple[object, ...] = ()

    def __post_init__(self) -> None:
        self.index = LayeredIndex(FenceIndex.build([]))

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

    @property
    def compacting(self) -> bool:
        """Whether a new base is being built."""
        return self._compaction is not None

    async def compacted(self) -> None:
        """Wait for the base rebuild under way, if any (for tests and benchmarks)."""
        while self._compaction is not None:
            await self._compaction

    async def close(self) -> None:
        """Stop waiting for a base rebuild (the thread finishes on its own, its result unused)."""
        if self._compaction is not None:
            self._compaction.cancel()
            with suppress(asyncio.CancelledError):
                await self._compaction

    async def _load_fences(self, conn: Connection, version: int) -> None:
        listed = await conn.fetchrow(FENCE_KEYS)
        assert listed is not None
        keys: dict[UUID, RowVersion] = dict(zip(listed["ids"], listed["xmins"], strict=True))
        held = self._row_versions
        stale = [f for f, _ in keys.items() - held.items()]
        changed = {*stale, *(held.keys() - keys.keys())}
        # Read after the keys, so possibly newer: what is stored is the version actually read,
        # and the next reload compares against that.
        fresh = {r["id"]: (r["xmin"], _indexed(r))
                 for r in (await conn.fetch(FENCE_ROWS, stale) if stale else [])}
        timezones = {r["id"]: r["timezone"] for r in await conn.fetch(STORE_TIMEZONES)}
        # Tags only move with fences, so only the stores of changed fences (before and after)
        # are read again; a store change (its time zone) reads none, and rebuilds no geometry.
        tags = self.store_tags
        if self.fence_version < 0:
            tags = {r["store_id"]: tuple(sorted(r["tags"]))
                    for r in await conn.fetch(STORE_TAGS)}
        elif changed:
            stores = ({self._fences[f].store_id for f in changed if f in self._fences}
                      | {fence.store_id for _, fence in fresh.values()})
            tags = {s: t for s, t in tags.items() if s not in stores}
            tags.update((r["store_id"], tuple(sorted(r["tags"])))
                        for r in await conn.fetch(STORE_TAGS_OF, list(stores)))

        def current(f: UUID) -> IndexedFence | None:
            if f in fresh:
                return fresh[f][1]
            return None if f in changed else self._fences.get(f)

        touched = self._touched | changed
        live = len(self._fences) + len(fresh) - len(changed - fresh.keys())
        # When most fences moved (the first load, a bulk import) one build of everything costs
        # less than a delta now and a compaction later.
        rebuild = len(touched) * 2 > live
        base, delta = self.index.base, self.index.delta
        if rebuild:
            every = [*(f for f in self._fences.values() if f.fence_id not in changed),
                     *(fence for _, fence in fresh.values())]
            base = await self._build_base(every, version)
        elif changed:
            delta = await self._build(
                [fence for f in touched if (fence := current(f)) is not None], version)
        # Nothing above changed the replica: a failed reload leaves it whole, and retried.
        for f in changed:
            self._fences.pop(f, None)
            held.pop(f, None)
        for f, (key, fence) in fresh.items():
            self._fences[f], held[f] = fence, key
        if self._pending is not None:
            self._pending |= changed
        if rebuild:
            self._touched = set()
            self.index = LayeredIndex(base, version=version)
        else:
            self._touched = touched
            self.index = LayeredIndex(base, delta, touched, version=version)
        self.store_timezones, self.store_tags, self.fence_version = timezones, tags, version
        log.info("geofence index v%d: %d fences, %d changed, %d in the delta", version,
                 len(self.index), len(changed), len(self.index.delta))
        self._compact_if_due()

    async def _build(self, fences: Iterable[IndexedFence], version: int) -> FenceIndex:
        # Building is CPU work: keep the event loop answering other requests meanwhile.
        return await asyncio.to_thread(FenceIndex.build, list(fences), version=version)

    async def _build_base(self, fences: list[IndexedFence], version: int) -> FenceIndex:
        """A base index of every fence at `version`: the same in every process that reaches
        that version, so built once and mapped by the others when `index_dir` is set."""
        if self.index_dir is None:
            return await self._build(fences, version)
        return await asyncio.to_thread(shared_build, self.index_dir, fences, version)

    def _compact_if_due(self) -> None:
        due = min(self.delta_limit,
                  max(DELTA_FLOOR, int(self.delta_share * len(self.index.base))))
        if self._compaction is not None or len(self._touched) <= due:
            return
        # The snapshot and the start of `_pending` are taken together, with no await between:
        # every later change lands in `_pending`, every earlier one in the snapshot.
        snapshot = list(self._fences.values())
        self._pending = set()
        self._compaction = asyncio.create_task(
            self._compact(snapshot, self.fence_version), name="catalog-compaction")

    async def _compact(self, snapshot: list[IndexedFence], version: int) -> None:
        try:
            base = await self._build_base(snapshot, version)
            async with self._lock:
                assert self._pending is not None
                touched = self._pending
                delta = await self._build(
                    [self._fences[f] for f in touched if f in self._fences], version)
                self._touched = touched
                self.index = LayeredIndex(base, delta, touched, version=self.fence_version)
                log.info("geofence index v%d: new base of %d fences, %d in the delta",
                         self.fence_version, len(base), len(delta))
        except Exception:  # the delta keeps serving; the next change past the threshold retries
            log.exception("geofence base rebuild failed")
        finally:
            self._pending, self._compaction = None, None
        self._compact_if_due()

    def view(self) -> CatalogView:
        """What one ping batch works on: taken once, so a reload swapping the replica's parts
        mid-batch cannot mix two versions in one batch."""
        parts = (self.index, self.store_tags, self.campaigns)
        if len(self._memo_of) != len(parts) or any(
                a is not b for a, b in zip(self._memo_of, parts, strict=True)):
            self._memo, self._memo_of = {}, parts
        return CatalogView(self.index, self.resolution, self.store_timezones, self.store_tags,
                           self.campaigns, self.policy, self._memo)

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

    try:
        async with running(reload_forever(), "catalog-reload"):
            yield
    finally:
        await catalog.close()
        await conn.close()
