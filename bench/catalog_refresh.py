"""Benchmark of a fence change reaching the next ping batch: how long that batch's catalog refresh
stalls, with the whole index rebuilt (the previous behaviour) and with the layered index.

One rule: measure the refresh a batch pays (`Catalog.refresh` on its connection, right after the
change committed) on a fresh database holding `--fences` store-sized fences, and print the command
line with the figures.

"Rebuild everything" is what the catalog did before the layered index: read every fence row and
`FenceIndex.build` them all. "Layered" moves one random fence per change, `--changes` times in a
row, so the delta grows from 1 fence to the compaction threshold (the base is then rebuilt in a
thread, off the batches' path) and starts again.
Run: `python -m bench.catalog_refresh [--fences 10000] [--changes 300] [--database-url URL]`
(a URL, or `DATABASE_URL`, names a PostgreSQL server; a database is created there and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
import uuid

import asyncpg
import numpy as np

from app.catalog import DELTA_LIMIT, Catalog
from app.clock import system_clock
from app.db import init_connection
from app.dsn import with_database
from app.migrate import migrate
from bench.context import postgres_server
from bench.fence_match import make_fences
from geo import store as geo_store
from geo.fences import FenceShape, Point, Polygon, shape_from_stored
from geo.index import FenceIndex, IndexedFence
from geo.model import GeofenceIn, StoreIn


def body_of(shape: FenceShape, k: int) -> GeofenceIn:
    """The API body that stores `shape` (circles as centre and radius, polygons as drawn)."""
    if shape.kind == "circle" and shape.radius_m is not None:
        geometry: Point | Polygon = Point(coordinates=[shape.center_lng, shape.center_lat])
    else:
        ring = [list(xy) for xy in shape.area.exterior.coords]
        geometry = Polygon(coordinates=[ring])
    return GeofenceIn(name=f"fence {k}", geometry=geometry, radius_m=shape.radius_m)


async def fill(conn: asyncpg.Connection, fences: list[IndexedFence]) -> list[uuid.UUID]:
    async with conn.transaction():
        store = await geo_store.insert_store(conn, StoreIn(name="bench", timezone="UTC"),
                                             system_clock())
        return [(await geo_store.insert_fence(conn, store.id, body_of(f.shape, k),
                                                   system_clock())).id
                for k, f in enumerate(fences)]


async def rebuild_everything(conn: asyncpg.Connection) -> FenceIndex:
    """The previous `Catalog._load_fences`: every row read, every fence indexed."""
    rows = await conn.fetch(geo_store.INDEX_ROWS)
    fences = [
        IndexedFence(
            fence_id=r["id"], store_id=r["store_id"],
            shape=shape_from_stored(r["kind"], r["area_wkb"], r["center_lng"], r["center_lat"],
                                    r["radius_m"], r["area_m2"]),
            dwell_seconds=r["dwell_seconds"], tags=tuple(r["tags"]), enabled=r["enabled"],
        )
        for r in rows
    ]
    await conn.fetch("SELECT id, timezone FROM stores")
    return await asyncio.to_thread(FenceIndex.build, fences)


async def move(conn: asyncpg.Connection, fence_id: uuid.UUID, shapes: list[FenceShape],
               rng: np.random.Generator) -> None:
    """Give the fence another fence's shape: a moved fence, stored as the API stores it."""
    shape = shapes[int(rng.integers(len(shapes)))]
    await geo_store.replace_fence(conn, fence_id, body_of(shape, 0), system_clock())


def ms(seconds: list[float]) -> str:
    q = np.percentile(np.array(seconds) * 1e3, [50, 95, 100])
    return f"median {q[0]:.1f} ms, p95 {q[1]:.1f} ms, max {q[2]:.1f} ms"


async def run(dsn: str, n_fences: int, changes: int, before_rounds: int) -> None:
    rng = np.random.default_rng(7)
    fences, _ = make_fences(n_fences, rng)
    shapes = [f.shape for f in fences]
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        ids = await fill(conn, fences)
        resolution = 11

        before = []
        for _ in range(before_rounds):
            await move(conn, ids[int(rng.integers(len(ids)))], shapes, rng)
            t0 = time.perf_counter()
            await rebuild_everything(conn)
            before.append(time.perf_counter() - t0)

        catalog = Catalog(resolution=resolution)
        t0 = time.perf_counter()
        await catalog.refresh(conn)
        first = time.perf_counter() - t0
        after: list[float] = []
        small: list[float] = []  # delta of at most 10 fences
        compactions, compaction = 0, 0.0
        for _ in range(changes):
            await move(conn, ids[int(rng.integers(len(ids)))], shapes, rng)
            t0 = time.perf_counter()
            await catalog.refresh(conn)
            took = time.perf_counter() - t0
            after.append(took)
            if len(catalog.index.dead) <= 10:
                small.append(took)
            if catalog.compacting:
                compactions += 1
                t0 = time.perf_counter()
                await catalog.compacted()
                compaction = time.perf_counter() - t0
        await catalog.close()
    finally:
        await conn.close()

    command = ["python", "-m", "bench.catalog_refresh", *sys.argv[1:]]
    print(f"$ {shlex.join(command)}")
    print(f"{n_fences} fences, resolution {resolution}, first full load {first:.2f} s")
    print(f"one fence change → next batch, rebuild everything ({before_rounds} changes): "
          f"{ms(before)}")
    print(f"one fence change → next batch, layered ({changes} changes, delta up to "
          f"{DELTA_LIMIT}): {ms(after)}")
    print(f"  with a delta of at most 10 fences ({len(small)} changes): {ms(small)}")
    if compactions:
        print(f"  {compactions} compaction(s) in a thread, the last took {compaction:.2f} s "
              "(batches kept running on the layered view)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fences", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--before-rounds", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    with postgres_server(args.database_url) as server:  # none given: an embedded one
        await measure(server, args)


async def measure(server_url: str, args: argparse.Namespace) -> None:
    name = f"contexto_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = with_database(server_url, name)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        await run(dsn, args.fences, args.changes, args.before_rounds)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
