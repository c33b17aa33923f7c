"""The catalog's fence index follows the database incrementally: a change rebuilds only the fences
it touched, reaches the very next `ensure`, and a delta past its threshold is compacted into a new
base without losing the changes made meanwhile.

Each test runs on a fresh migrated database with one store and FENCES circles 1 km apart.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg
import numpy as np
import pytest

from app.catalog import DELTA_LIMIT, Catalog
from app.db import init_connection
from campaigns.model import Trigger
from geo import store as geo_store
from geo.fences import Point
from geo.index import FenceIndex, IndexedFence
from geo.model import GeofenceIn, StoreIn, StorePatch
from tests.clock import CLOCK
from tests.unit.test_decide import campaign

FENCES = 20
LAT0, LNG0 = 48.85, 2.35
# 0.0135° of longitude at 48.85° N is ~1 km; 0.0045° of latitude is ~500 m.
STEP_LNG, MOVE_LAT = 0.0135, 0.0045


def circle(k: int, *, moved: bool = False, enabled: bool = True) -> GeofenceIn:
    lat = LAT0 + (MOVE_LAT if moved else 0.0)
    return GeofenceIn(name=f"fence {k}", geometry=Point(coordinates=[LNG0 + k * STEP_LNG, lat]),
                      radius_m=40.0, enabled=enabled, tags=[f"t{k}"])


@dataclass
class Scene:
    conn: asyncpg.Connection
    store_id: UUID
    fence_ids: list[UUID]

    async def hits_at(self, catalog: Catalog, k: int, *, moved: bool = False) -> list[UUID]:
        """The fences the catalog's index puts the centre of circle k (maybe moved) in."""
        lat = np.array([LAT0 + (MOVE_LAT if moved else 0.0)])
        lng = np.array([LNG0 + k * STEP_LNG])
        return [h.fence_id for h in catalog.index.match(lat, lng, 0.0).hits()[0]]


@pytest.fixture
async def scene(database_url: str) -> AsyncIterator[Scene]:
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    try:
        store = await geo_store.insert_store(conn, StoreIn(name="Rivoli", timezone="Europe/Paris"),
                                             CLOCK())
        ids = [(await geo_store.insert_fence(conn, store.id, circle(k), CLOCK())).id
               for k in range(FENCES)]
        yield Scene(conn, store.id, ids)
    finally:
        await conn.close()


async def loaded(scene: Scene, delta_limit: int = DELTA_LIMIT) -> Catalog:
    catalog = Catalog(resolution=11, delta_limit=delta_limit)
    await catalog.refresh(scene.conn)
    assert len(catalog.index) == FENCES and len(catalog.index.delta) == 0
    return catalog


async def test_a_moved_fence_is_rebuilt_alone_and_seen_by_the_very_next_ensure(
    scene: Scene,
) -> None:
    catalog = await loaded(scene)
    base = catalog.index.base
    moved = scene.fence_ids[3]

    await geo_store.replace_fence(scene.conn, moved, circle(3, moved=True), CLOCK())
    await catalog.refresh(scene.conn)

    assert catalog.index.base is base
    assert list(catalog.index.delta.fences) == [moved]
    assert await scene.hits_at(catalog, 3, moved=True) == [moved]
    assert await scene.hits_at(catalog, 3) == []
    assert len(catalog.index) == FENCES


async def test_deleted_and_disabled_fences_stop_matching_without_a_base_rebuild(
    scene: Scene,
) -> None:
    catalog = await loaded(scene)
    base = catalog.index.base
    deleted, disabled = scene.fence_ids[5], scene.fence_ids[6]

    await geo_store.delete_fence(scene.conn, deleted)
    await geo_store.replace_fence(scene.conn, disabled, circle(6, enabled=False), CLOCK())
    await catalog.refresh(scene.conn)

    assert catalog.index.base is base and len(catalog.index.delta) == 0
    assert catalog.index.dead == {deleted, disabled}
    assert await scene.hits_at(catalog, 5) == [] and await scene.hits_at(catalog, 6) == []
    assert deleted not in catalog.index.fences and disabled not in catalog.index.fences
    assert "t6" not in catalog.store_tags[scene.store_id]
    assert len(catalog.index) == FENCES - 2


async def test_a_fence_changed_by_hand_in_sql_is_reloaded_too(scene: Scene) -> None:
    catalog = await loaded(scene)
    fence = scene.fence_ids[2]

    await scene.conn.execute("UPDATE geofences SET enabled = false WHERE id = $1", fence)
    await catalog.refresh(scene.conn)

    assert fence not in catalog.index.fences


async def test_a_store_time_zone_change_rebuilds_no_geometry(scene: Scene) -> None:
    catalog = await loaded(scene)
    base, delta = catalog.index.base, catalog.index.delta

    await geo_store.patch_store(scene.conn, scene.store_id, StorePatch(timezone="Asia/Tokyo"),
                                CLOCK())
    await catalog.refresh(scene.conn)

    assert catalog.store_timezones[scene.store_id] == "Asia/Tokyo"
    assert catalog.index.base is base and catalog.index.delta is delta
    assert catalog.index.version == catalog.fence_version


async def test_a_delta_past_its_threshold_is_compacted_into_a_new_base(
    scene: Scene, monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = await loaded(scene, delta_limit=2)
    base = catalog.index.base
    build = FenceIndex.build

    def slow_base_build(fences: Iterable[IndexedFence], **kwargs: int) -> FenceIndex:
        fences = list(fences)
        if len(fences) > FENCES // 2:  # a base: slow enough for a change to land meanwhile
            time.sleep(0.5)
        return build(fences, **kwargs)

    monkeypatch.setattr(FenceIndex, "build", slow_base_build)
    for k in (1, 2, 3):  # the third change passes the limit
        await geo_store.replace_fence(scene.conn, scene.fence_ids[k], circle(k, moved=True),
                                      CLOCK())
        await catalog.refresh(scene.conn)
        assert await scene.hits_at(catalog, k, moved=True) == [scene.fence_ids[k]]
    assert catalog.compacting
    await geo_store.delete_fence(scene.conn, scene.fence_ids[4])
    await catalog.refresh(scene.conn)
    assert catalog.compacting and scene.fence_ids[4] not in catalog.index.fences
    await catalog.compacted()

    assert catalog.index.base is not base
    assert catalog.index.base.fence(scene.fence_ids[1]).shape.center_lat == LAT0 + MOVE_LAT
    # The change made meanwhile is re-applied on top of the new base.
    assert catalog.index.dead == {scene.fence_ids[4]} and len(catalog.index.delta) == 0
    assert len(catalog.index) == FENCES - 1 and scene.fence_ids[4] not in catalog.index.fences
    for k in (1, 2, 3):
        assert await scene.hits_at(catalog, k, moved=True) == [scene.fence_ids[k]]
        assert await scene.hits_at(catalog, k) == []
    assert await scene.hits_at(catalog, 4) == []
    assert await scene.hits_at(catalog, 7) == [scene.fence_ids[7]]


async def test_a_campaigns_stores_are_worked_out_once_and_again_after_a_fence_change(
    scene: Scene,
) -> None:
    catalog = await loaded(scene)
    catalog.campaigns = [campaign("tagged", trigger=Trigger(kind="enter", tags=["t-new"]))]
    tagged = catalog.campaigns[0]
    first = catalog.view()
    assert first.campaign_stores(tagged) == []  # no fence carries the tag yet
    assert catalog.view().stores_memo is first.stores_memo  # nothing changed: one answer kept

    other = await geo_store.insert_store(scene.conn, StoreIn(name="Halles",
                                                             timezone="Europe/Paris"), CLOCK())
    fence = GeofenceIn(name="door", geometry=Point(coordinates=[LNG0, LAT0 + 0.01]),
                       radius_m=40.0, tags=["t-new"])
    await geo_store.insert_fence(scene.conn, other.id, fence, CLOCK())
    await catalog.refresh(scene.conn)

    after = catalog.view()
    assert after.stores_memo is not first.stores_memo
    assert after.campaign_stores(tagged) == [other.id]
    catalog.campaigns = [*catalog.campaigns]  # a reload replaces the list: the memo starts over
    assert catalog.view().stores_memo is not after.stores_memo


async def test_catalogs_of_several_workers_share_one_base_index(
    scene: Scene, tmp_path: Path,
) -> None:
    # Two workers' replicas: the first to load builds the base, the second maps its arrays.
    first = Catalog(resolution=11, index_dir=tmp_path)
    second = Catalog(resolution=11, index_dir=tmp_path)
    await first.refresh(scene.conn)
    await second.refresh(scene.conn)

    assert not isinstance(first.index.base._tables.refs, np.memmap)
    assert isinstance(second.index.base._tables.refs, np.memmap)
    for k in range(FENCES):
        assert await scene.hits_at(second, k) == await scene.hits_at(first, k) \
            == [scene.fence_ids[k]]
    # A change goes into each replica's own delta, over the shared base.
    await geo_store.replace_fence(scene.conn, scene.fence_ids[4], circle(4, moved=True),
                                  CLOCK())
    await second.refresh(scene.conn)
    assert await scene.hits_at(second, 4, moved=True) == [scene.fence_ids[4]]
    assert await scene.hits_at(second, 4) == []
