"""Growth benchmark: does the service stay as fast with a month of pings stored as with none?

One rule: two databases with the same world (`bench.growth_world`), one with no stored pings and
one with `--pings` pings over the 30 days before the clock's day (written with COPY, not through
HTTP), measured in turns by the same code in the same process — rounds of ingest empty then grown,
grown then empty, …; each claim and stats call on one side followed by the same on the other — so
that whatever else the machine does falls on both alike; each figure is the median of the
`--runs` rounds, and the grown one must be within 20 % of the empty one.

Each round measures, on each database, through the app in-process (its lifespan, pool and
routes, as `make run` builds it; no network):
- **ingest**: `--batches` `POST /v1/pings` of 100 pings each, `--concurrency` in flight, each
  from a device not used before walking into a store (so every batch stores, matches, makes an
  `enter`, decides and queues a push): pings per second accepted and stored;
- **store**: that path's storing step alone (`geo.store.copy_pings`, the COPY of a batch of 100
  pings in its own transaction, `--concurrency` connections), where the size of the table and
  its indexes would show first: pings per second;
- (then both databases' statistics of the tables the rounds write are refreshed, `ANALYZE`, so
  that neither plans with older ones than the other);
- **claim**: the dispatcher's claim (`campaigns.dispatch.CLAIM`, a batch of up to 500 pushes)
  over the queued pushes, each in a transaction rolled back so every try claims the same rows:
  milliseconds, median of `--repeats`;
- **stats**: `GET /v1/campaigns/{id}/stats` of the campaign those pushes belong to:
  milliseconds, median of `--repeats`.

Run: `python -m bench.growth [--pings N] [--devices N] [--days N] [--runs N] [--batches N]
[--concurrency N] [--repeats N] [--database-url URL]` (without a URL, nor `DATABASE_URL`, an
embedded PostgreSQL is started). The figures go to `.contexto/bench/growth.json` too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import platform
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import numpy as np
from litestar.testing import AsyncTestClient

from app.clock import PinnedClock
from app.dsn import with_database
from app.main import create_app
from app.settings import Settings
from bench import growth_world
from bench.context import postgres_server
from bench.growth_world import World
from bench.loadgen import METRES_PER_DEG_LAT
from campaigns.dispatch import CLAIM, LEASE
from campaigns.fcm import BATCH_SIZE
from geo.cells import cells_of
from geo.store import copy_pings

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday afternoon (15:00 in Paris)
ADMIN_TOKEN = "ctxa_" + "g" * 48
LAT0, LNG0 = 48.8566, 2.3522
PINGS_PER_BATCH = 100
INSIDE = 60  # of a batch's fixes, the last ones are at the store
H3_RESOLUTION = 11  # the service's default
TOLERANCE = 0.20
JSON_OUT = Path(".contexto/bench/growth.json")


@dataclass
class Side:
    """One database: its name, how many pings it stores, and one figure per round."""

    name: str
    stored: int
    pings_per_s: list[float] = field(default_factory=list)
    stored_per_s: list[float] = field(default_factory=list)
    claim_ms: list[float] = field(default_factory=list)
    claimed: list[int] = field(default_factory=list)
    stats_ms: list[float] = field(default_factory=list)


@dataclass
class Running:
    side: Side
    client: AsyncTestClient[Any]
    url: str
    world: World
    used: int = 0  # devices of `world` already sent walking


def _lnglat(x: float, y: float) -> tuple[float, float]:
    return (LNG0 + x / (METRES_PER_DEG_LAT * math.cos(math.radians(LAT0))),
            LAT0 + y / METRES_PER_DEG_LAT)


def walk_in(centre: tuple[float, float], now: datetime) -> dict[str, Any]:
    """100 fixes 5 s apart ending at `now`: 300 m away towards the store, then at its centre."""
    x, y = centre
    pings = []
    for i in range(PINGS_PER_BATCH):
        share = min(1.0, i / (PINGS_PER_BATCH - INSIDE))
        lng, lat = _lnglat(x + 300.0 * (1 - share), y)
        ts = now - timedelta(seconds=5 * (PINGS_PER_BATCH - i))
        pings.append({"lat": lat, "lng": lng, "ts": ts.isoformat(), "accuracy_m": 8})
    return {"pings": pings}


async def ingest(run: Running, clock: PinnedClock, batches: int, concurrency: int) -> float:
    tokens = run.world.device_tokens[run.used:run.used + batches]
    if len(tokens) < batches:
        raise RuntimeError("not enough registered devices left; raise --runs' devices")
    run.used += batches
    centres = run.world.centres
    queue = list(enumerate(tokens))

    async def sender() -> None:
        while queue:
            k, token = queue.pop()
            body = walk_in(centres[k % len(centres)], clock())
            answer = await run.client.post("/v1/pings", json=body,
                                           headers={"Authorization": f"Bearer {token}"})
            if answer.status_code != 202 or answer.json()["accepted"] != PINGS_PER_BATCH:
                raise RuntimeError(f"a ping batch was refused: {answer.text}")

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return batches * PINGS_PER_BATCH / (time.perf_counter() - started)


async def store(url: str, clock: PinnedClock, args: argparse.Namespace, rnd: int) -> float:
    """The ingest path's storing step alone (`geo.store.copy_pings`, one transaction per batch
    of 100, `--concurrency` connections): pings per second, the rows drawn beforehand."""
    rng = np.random.default_rng(args.seed * 100 + rnd)
    ids = growth_world.background_ids(args.devices, args.seed)
    now = clock()
    n: int = args.batches * PINGS_PER_BATCH
    lat = LAT0 + rng.uniform(-0.04, 0.04, n)
    lng = LNG0 + rng.uniform(-0.06, 0.06, n)
    cells = cells_of(lat, lng, H3_RESOLUTION).view(np.int64).tolist()
    who = rng.integers(0, len(ids), args.batches).tolist()
    batches = [[(ids[who[b]], now - timedelta(seconds=PINGS_PER_BATCH - i), lat[k], lng[k], 8.0,
                 None, None, cells[k], now)
                for i, k in enumerate(range(b * PINGS_PER_BATCH, (b + 1) * PINGS_PER_BATCH))]
               for b in range(args.batches)]
    conns = [await asyncpg.connect(url) for _ in range(args.concurrency)]
    try:
        async def writer(conn: asyncpg.Connection) -> None:
            while batches:
                records = batches.pop()
                async with conn.transaction():
                    await copy_pings(conn, records)

        started = time.perf_counter()
        await asyncio.gather(*(writer(c) for c in conns))
        return n / (time.perf_counter() - started)
    finally:
        for c in conns:
            await c.close()


async def claim_once(conn: asyncpg.Connection, clock: PinnedClock) -> tuple[float, int]:
    """One claim, rolled back: its milliseconds and the rows it took."""
    tx = conn.transaction()
    await tx.start()
    started = time.perf_counter()
    rows = await conn.fetch(CLAIM, clock(), BATCH_SIZE, LEASE)
    elapsed = (time.perf_counter() - started) * 1000
    await tx.rollback()
    return elapsed, len(rows)


async def stats_once(run: Running) -> float:
    started = time.perf_counter()
    answer = await run.client.get(f"/v1/campaigns/{run.world.campaign_id}/stats",
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"stats refused: {answer.text}")
    return elapsed


async def latencies(runs: list[Running], clock: PinnedClock, repeats: int) -> None:
    """Claims and stats, `repeats` of each on every side, taken in turns (side by side under
    the same load); each side's median appended to its figures."""
    conns = [await asyncpg.connect(run.url) for run in runs]
    try:
        claims: list[list[float]] = [[] for _ in runs]
        stats: list[list[float]] = [[] for _ in runs]
        for i in range(repeats):
            order = list(range(len(runs)))[::1 if i % 2 == 0 else -1]
            for k in order:
                ms, taken = await claim_once(conns[k], clock)
                claims[k].append(ms)
                if i == 0:
                    runs[k].side.claimed.append(taken)
            for k in order:
                stats[k].append(await stats_once(runs[k]))
        for k, run in enumerate(runs):
            run.side.claim_ms.append(statistics.median(claims[k]))
            run.side.stats_ms.append(statistics.median(stats[k]))
    finally:
        for c in conns:
            await c.close()


@asynccontextmanager
async def side(server: str, name: str, stored: int, args: argparse.Namespace,
               clock: PinnedClock) -> AsyncIterator[Running]:
    """A fresh database with the world and `stored` pings, and the app on it."""
    db = f"contexto_growth_{name}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    url = with_database(server, db)
    settings = Settings(database_url=url, admin_token=ADMIN_TOKEN, run_dispatcher=False,
                        pool_min_size=1, pool_max_size=args.concurrency + 2)
    try:
        async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
            for noisy in ("contexto", "httpx"):
                logging.getLogger(noisy).setLevel(logging.WARNING)

            async def ok(method: str, path: str, body: Any, token: str = ADMIN_TOKEN) -> Any:
                answer = await client.request(method, path, json=body,
                                              headers={"Authorization": f"Bearer {token}"})
                if answer.status_code >= 300:
                    raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
                return answer.json()

            t = time.monotonic()
            world = await growth_world.through_api(
                ok, stores=args.stores, devices=args.batches * args.runs, seed=args.seed,
                now=clock())
            print(f"  {name}: {args.stores} stores, a campaign, {len(world.device_tokens):,} "
                  f"devices through the API ({time.monotonic() - t:.0f} s)", flush=True)
            conn = await asyncpg.connect(url)
            try:
                await growth_world.background_devices(conn, devices=args.devices,
                                                      seed=args.seed, now=clock())
                if stored:
                    s = await growth_world.stored_pings(
                        conn, pings=stored, devices=args.devices, days=args.days,
                        now=clock(), seed=args.seed, resolution=settings.h3_resolution)
                    print(f"  {name}: {stored:,} pings stored with COPY in {s:.0f} s "
                          f"({stored / s:,.0f} rows/s)", flush=True)
                await conn.execute("ANALYZE")
            finally:
                await conn.close()
            yield Running(Side(name, stored), client, url, world)
    finally:
        admin = await asyncpg.connect(server)
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()


async def analyze(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE deliveries, suppressions, assignments, presence, geo_events")
    finally:
        await conn.close()


async def table_size(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """SELECT count(*) AS parts, coalesce(sum(pg_total_relation_size(inhrelid)), 0)
                      AS bytes FROM pg_inherits WHERE inhparent = 'pings'::regclass""")
        assert row is not None
        return int(row["parts"]), int(row["bytes"])
    finally:
        await conn.close()


def ratio_ok(grown: float, empty: float, *, higher_is_better: bool) -> bool:
    if higher_is_better:
        return grown >= empty * (1 - TOLERANCE)
    return grown <= empty * (1 + TOLERANCE)


def report(command: str, args: argparse.Namespace, empty: Side, grown: Side,
           sizes: tuple[int, int], loads: tuple[float, float], pg: str) -> dict[str, Any]:
    rows = [("ingest, pings/s", "pings_per_s", True), ("store, pings/s", "stored_per_s", True),
            ("claim, ms", "claim_ms", False),
            ("stats, ms", "stats_ms", False)]
    print()
    print(f"$ {command}")
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, {pg}; "
          f"load average {loads[0]:.2f} before, {loads[1]:.2f} after")
    print(f"grown: {grown.stored:,} pings over {args.days} days, {sizes[0]} partitions, "
          f"{sizes[1] / 2**30:.2f} GiB with indexes; the last claims took {empty.claimed[-1]} "
          f"(empty) and {grown.claimed[-1]} (grown) queued pushes")
    print(f"{'':18}{'empty':>12}{'grown':>12}{'grown/empty':>13}  within 20 %")
    figures: dict[str, Any] = {}
    for label, key, higher in rows:
        e, g = statistics.median(getattr(empty, key)), statistics.median(getattr(grown, key))
        ok = ratio_ok(g, e, higher_is_better=higher)
        figures[key] = {"empty": e, "grown": g, "ratio": g / e, "within_20_percent": ok,
                        "empty_runs": getattr(empty, key), "grown_runs": getattr(grown, key)}
        print(f"{label:18}{e:12,.1f}{g:12,.1f}{g / e:13.2f}  {'yes' if ok else 'NO'}")
    return {"command": command, "machine": platform.node(), "cores": os.cpu_count(),
            "postgres": pg, "load_average": list(loads), "args": vars(args),
            "partitions": sizes[0], "pings_bytes": sizes[1], "figures": figures,
            "sides": [asdict(empty), asdict(grown)]}


async def bench(args: argparse.Namespace, command: str) -> dict[str, Any]:
    clock = PinnedClock(NOW)
    loads = [os.getloadavg()[0]]
    with postgres_server(args.database_url) as server:
        admin = await asyncpg.connect(server)
        pg = "PostgreSQL " + str(await admin.fetchval("SHOW server_version"))
        await admin.close()
        async with AsyncExitStack() as stack:
            print("preparing both databases", flush=True)
            empty = await stack.enter_async_context(side(server, "empty", 0, args, clock))
            grown = await stack.enter_async_context(side(server, "grown", args.pings, args,
                                                         clock))
            for r in range(args.runs):
                sides = [empty, grown] if r % 2 == 0 else [grown, empty]
                for run in sides:
                    run.side.pings_per_s.append(await ingest(run, clock, args.batches,
                                                             args.concurrency))
                for run in sides:
                    run.side.stored_per_s.append(await store(run.url, clock, args, r))
                # The planner's statistics of what the rounds write, fresh on both sides alike
                # (autovacuum would get to each at its own moment).
                for run in sides:
                    await analyze(run.url)
                await latencies([empty, grown], clock, args.repeats)
                for run in (empty, grown):
                    s = run.side
                    print(f"  round {r + 1} {s.name}: {s.pings_per_s[-1]:,.0f} pings/s, stored "
                          f"{s.stored_per_s[-1]:,.0f} pings/s, claim {s.claim_ms[-1]:.1f} ms "
                          f"({s.claimed[-1]} rows), stats {s.stats_ms[-1]:.1f} ms", flush=True)
            sizes = await table_size(grown.url)
    loads.append(os.getloadavg()[0])
    return report(command, args, empty.side, grown.side, sizes, (loads[0], loads[1]), pg)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=20_000_000,
                        help="pings stored in the grown database (try 1000000 first)")
    parser.add_argument("--devices", type=int, default=50_000,
                        help="devices the stored pings belong to")
    parser.add_argument("--days", type=int, default=30, help="days the stored pings cover")
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="rounds, each on both databases")
    parser.add_argument("--batches", type=int, default=300, help="ping batches per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30, help="claims and stats per round")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None,
                        help="a PostgreSQL server (databases are created on it and dropped); "
                             "default: $DATABASE_URL, else an embedded PostgreSQL")
    args = parser.parse_args(argv)
    if args.pings < 1 or args.days < 1 or args.devices < 1:
        parser.error("--pings, --days and --devices must be at least 1")
    shown = sys.argv[1:] if argv is None else argv
    command = ("python -m bench.growth " + " ".join(shlex.quote(a) for a in shown)).strip()
    print(f"$ {command}", flush=True)
    out = asyncio.run(bench(args, command))
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_bytes(msgspec.json.format(msgspec.json.encode(out)))
    print(f"written to {JSON_OUT}")


if __name__ == "__main__":
    main()
