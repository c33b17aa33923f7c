"""PostGIS as a fence matcher, for `bench.match_compare`: `ST_Intersects` against a GiST index.

One rule: one query per batch of pings, the server's backend pinned to its own core and timed by
its own CPU seconds (from /proc), so its points/s/core compare with the in-process engines'.

PostGIS comes from Debian's `postgresql-15-postgis-3` (`make postgis` installs it); the fences go
to a scratch database (`contexto_bench_postgis`) on the server of `DATABASE_URL`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import shapely
from numpy.typing import NDArray

SCRATCH_DB = "contexto_bench_postgis"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_QUERY = """
SELECT p.i - 1, f.id FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS p(x, y, i)
JOIN bench_fence f ON ST_Intersects(f.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326))
"""


@dataclass
class PostgisRun:
    load_s: float
    build_s: float  # CREATE INDEX ... USING gist, then ANALYZE
    index_mb: float
    table_mb: float


class Postgis:
    """A connection to the scratch database with PostGIS, or why there is none (`reason`)."""

    def __init__(self) -> None:
        self.conn: asyncpg.Connection | None = None
        self.reason = ""
        self.backend_pid = 0

    async def open(self) -> bool:
        url = os.environ.get("DATABASE_URL", DEFAULT_URL)
        try:
            admin = await asyncpg.connect(url)
            try:
                exists = await admin.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", SCRATCH_DB)
                if not exists:
                    await admin.execute(f"CREATE DATABASE {SCRATCH_DB}")
            finally:
                await admin.close()
            parts = urlsplit(url)
            self.conn = await asyncpg.connect(urlunsplit(parts._replace(path=f"/{SCRATCH_DB}")))
            await self.conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            self.backend_pid = int(await self.conn.fetchval("SELECT pg_backend_pid()"))
        except (OSError, asyncpg.PostgresError) as e:
            self.reason = f"{type(e).__name__}: {e}"
            return False
        try:
            # One core for the backend; the bench itself runs on another.
            os.sched_setaffinity(self.backend_pid, {max(os.sched_getaffinity(self.backend_pid))})
        except OSError as e:  # not our process (another user's server): still a fair CPU count
            self.reason = f"backend not pinned ({e})"
        return True

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.execute("DROP TABLE IF EXISTS bench_fence")
            await self.conn.close()

    async def load(self, geoms: NDArray[np.object_]) -> PostgisRun:
        assert self.conn is not None
        conn = self.conn
        await conn.execute("DROP TABLE IF EXISTS bench_fence")
        await conn.execute("CREATE TABLE bench_fence (id int PRIMARY KEY, geom geometry NOT NULL)")
        wkb = shapely.to_wkb(geoms)
        t0 = time.perf_counter()
        step = 20_000
        for lo in range(0, len(wkb), step):
            await conn.execute(
                "INSERT INTO bench_fence SELECT i, ST_SetSRID(ST_GeomFromWKB(w), 4326) "
                "FROM unnest($1::int4[], $2::bytea[]) AS t(i, w)",
                list(range(lo, min(lo + step, len(wkb)))), wkb[lo:lo + step].tolist())
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute("CREATE INDEX bench_fence_geom ON bench_fence USING gist (geom)")
        await conn.execute("ANALYZE bench_fence")
        build_s = time.perf_counter() - t0
        index_b = await conn.fetchval("SELECT pg_relation_size('bench_fence_geom')")
        table_b = await conn.fetchval("SELECT pg_total_relation_size('bench_fence')")
        return PostgisRun(load_s, build_s, index_b / 1e6, (table_b - index_b) / 1e6)

    async def plan(self) -> str:
        assert self.conn is not None
        rows = await self.conn.fetch("EXPLAIN " + _QUERY, [2.35], [48.85])
        return "\n".join(r[0] for r in rows)

    def cpu_s(self) -> float:
        """The backend's CPU seconds so far."""
        with open(f"/proc/{self.backend_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def match(self, lat: NDArray[np.float64], lng: NDArray[np.float64],
                    batch: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(ping, fence) pairs whose fence intersects the ping, one query per batch."""
        assert self.conn is not None
        stmt = await self.conn.prepare(_QUERY)
        pings, fences = [], []
        for lo in range(0, len(lat), batch):
            rows = await stmt.fetch(lng[lo:lo + batch].tolist(), lat[lo:lo + batch].tolist())
            pings.append(np.fromiter((r[0] + lo for r in rows), np.int64, len(rows)))
            fences.append(np.fromiter((r[1] for r in rows), np.int64, len(rows)))
        return np.concatenate(pings), np.concatenate(fences)
