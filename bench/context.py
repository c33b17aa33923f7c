"""What the context engine adds to the ping path, measured in-process as the CPU of each batch:
the same ping batches run through the service's ping path with the context engine and with it
bypassed (the benchmark control `CONTEXTO_BENCH_SKIP_CONTEXT`), on identical databases.
`--without arbitration` measures arbitration the same way instead (the control
`CONTEXTO_BENCH_SKIP_ARBITRATION`: survivors ranked by priority then rank, no evidence, no draw).

One rule: the two sides differ only in the step measured. Each run clones one prepared database
(the same stores, campaigns, customers and signal histories), replays the same batches in the
same order, and counts the CPU of each batch in this process (the route's work from the
device's row lock to the commit) and in its PostgreSQL backend (`/proc/<pid>/schedstat`, in
nanoseconds); runs alternate the two sides, and each figure is the median of the runs.

The world is `bench.e2e`'s: 1,000 stores over a 10 × 10 km city, its six `enter` campaigns
(three with an audience; the other three, at one priority, are what arbitration draws among) and
its shoppers (`bench.shoppers`: shared customer ids, 20–300 signals over two weeks for 40 % of
the devices); the batches are `bench.loadgen`'s movement (100 pings 1 s apart, 10 % of batches
walking into a store). A batch "makes a moment" when it enters or leaves a fence; only those pay
for the context (one signals query, intent once, a micromoment per moment) and for arbitration
(the evidence, in memory, and a draw per moment with contenders). The figures leave out HTTP,
JSON decoding and authentication, which both sides pay alike, so the shares are upper bounds of
what a whole request pays.

`--interleave` replays each batch on both sides (two databases) before the next one, so a
machine whose speed drifts with other work slows both alike.

Run: `python -m bench.context [--without context|arbitration] [--interleave] [--devices N]
[--rounds N] [--runs N] [--database-url URL]`
(without a URL, nor `DATABASE_URL`, an embedded PostgreSQL is started).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from litestar.testing import AsyncTestClient

from app.catalog import Catalog
from app.db import open_pool
from app.dsn import with_database
from app.ingest import ingest_pings
from app.intent import IntentModel
from app.main import create_app
from app.prediction import Predictor
from app.settings import Settings
from bench.e2e import HALF_SIDE_M, LAT0, LNG0, fence_body, store_centres
from bench.loadgen import PING_INTERVAL_S, PINGS_PER_BATCH, ROUND_SECONDS, Movement, Plan
from bench.shoppers import as_json_rows, campaign_bodies, customer_ids, signal_records
from campaigns import devices as device_store
from geo.pings import PingIn
from geo.store import SIGNAL_COLUMNS

# A fixed instant (a Monday afternoon in Paris), so a run can be repeated exactly.
START = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
ADMIN_TOKEN = "ctxa_" + "b" * 48
# The issues' bounds: the context adds at most 20 % to the ping path, arbitration at most 10 %.
TARGET_SHARE = {"context": 0.20, "arbitration": 0.10}


@dataclass
class Batch:
    round: int
    device: uuid.UUID
    pings: list[PingIn]
    now: datetime  # the request's instant: just after its last fix


@dataclass
class Cost:
    """CPU of one run, per kind of batch: sums in ns and counts (measured rounds only)."""

    moment_ns: int = 0
    moments: int = 0
    plain_ns: int = 0
    plains: int = 0
    backend_ns: int = 0  # PostgreSQL's share of all batches

    def add(self, made_moment: bool, ns: int, backend_ns: int) -> None:
        self.backend_ns += backend_ns
        if made_moment:
            self.moment_ns, self.moments = self.moment_ns + ns, self.moments + 1
        else:
            self.plain_ns, self.plains = self.plain_ns + ns, self.plains + 1

    def per_moment_ms(self) -> float:
        return self.moment_ns / max(self.moments, 1) / 1e6

    def per_plain_ms(self) -> float:
        return self.plain_ns / max(self.plains, 1) / 1e6

    def per_batch_ms(self) -> float:
        return (self.moment_ns + self.plain_ns) / max(self.moments + self.plains, 1) / 1e6


# ---------------------------------------------------------------------------------------------
# The prepared database
# ---------------------------------------------------------------------------------------------
async def prepare(url: str, stores: int, devices: int, seed: int) -> tuple[list[uuid.UUID], int]:
    """Stores, fences, campaigns and devices through the API, then the signal histories with
    COPY; returns the device ids and the number of signals."""
    settings = Settings(database_url=url, admin_token=ADMIN_TOKEN, run_dispatcher=False,
                        pool_min_size=1, pool_max_size=4)
    app = create_app(settings, clock=lambda: START)
    rng = np.random.default_rng(seed + 1)
    centres = store_centres(stores, seed)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with AsyncTestClient(app=app) as client:
        _quiet()

        async def ok(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
            response = await client.request(method, path, json=body, headers=headers)
            if response.status_code >= 300:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            return response.json()

        await ok("PUT", "/v1/policy", {"max_per_device_per_day": 100,
                                       "min_seconds_between_pushes": 0, "quiet_hours": None},
                 admin)
        store_ids = []
        for k, (x, y) in enumerate(centres):
            made = await ok("POST", "/v1/stores", {"name": f"bench store {k}",
                                                   "timezone": "Europe/Paris"}, admin)
            await ok("POST", f"/v1/stores/{made['id']}/geofences", fence_body(k, x, y, rng), admin)
            store_ids.append(made["id"])
        for body in campaign_bodies(store_ids, START):
            await ok("POST", "/v1/campaigns", body, admin)
        key = await ok("POST", "/v1/api-keys", {"name": "bench app", "role": "app"}, admin)
        app_auth = {"Authorization": f"Bearer {key['token']}"}
        ids = []
        for i, customer in enumerate(customer_ids(devices, "ctx")):
            device: dict[str, Any] = {"platform": "android", "fcm_token": f"bench-ctx-{i}",
                                      "timezone": "Europe/Paris",
                                      "consent": {"location": True, "marketing_push": True}}
            if customer is not None:
                device["customer_id"] = customer
            made = await ok("POST", "/v1/devices", device, app_auth)
            ids.append(uuid.UUID(made["device_id"]))
    # The test client runs the app on a loop of its own: the histories go through this one.
    records = signal_records(ids, store_ids, START, seed)
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("signals", records=as_json_rows(records),
                                         columns=SIGNAL_COLUMNS)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return ids, len(records)


def batches(device_ids: Sequence[uuid.UUID], stores: int, rounds: int,
            seed: int) -> list[Batch]:
    """`rounds` rounds of one batch per device, in send order, from `bench.loadgen`'s movement
    (round 0 begins at START)."""
    centres = store_centres(stores, seed)
    plan = Plan(devices=len(device_ids), store_x=[c[0] for c in centres],
                store_y=[c[1] for c in centres], lat0=LAT0, lng0=LNG0, half_side_m=HALF_SIDE_M,
                t0=START.timestamp(), max_rounds=rounds, visit_share=0.1,
                prebuilt_rounds=rounds, seed=seed)
    movement = Movement(plan, np.random.default_rng(seed))
    out = []
    for r in range(rounds):
        lat, lng, acc, speed = movement.advance()
        stamps = [START + timedelta(seconds=r * ROUND_SECONDS + i * PING_INTERVAL_S)
                  for i in range(PINGS_PER_BATCH)]
        for d, device in enumerate(device_ids):
            pings = [PingIn(lat=a, lng=b, ts=ts, accuracy_m=c, speed_mps=s)
                     for a, b, c, s, ts in zip(lat[d].tolist(), lng[d].tolist(), acc[d].tolist(),
                                               speed[d].tolist(), stamps, strict=True)]
            out.append(Batch(r, device, pings, stamps[-1] + timedelta(seconds=1)))
    return out


def _quiet() -> None:
    """One line per request and per catalog load would bury the figures."""
    for name in ("httpx", "contexto"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------
def _backend_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


async def run_once(url: str, work: Sequence[Batch], *, without: str | None,
                   warmup_rounds: int) -> Cost:
    """Replay `work` through the ping path on `url`, one batch at a time on one connection, as
    the route runs it (lock the device, ingest, commit, learn the visits); `without` names the
    step skipped (`context` or `arbitration`), if any."""
    return (await run_sides([(url, without)], work, warmup_rounds=warmup_rounds))[0]


async def run_sides(sides: Sequence[tuple[str, str | None]], work: Sequence[Batch], *,
                    warmup_rounds: int) -> list[Cost]:
    """`run_once` on several (database, step skipped) sides at once, batch by batch: each batch
    runs on every side before the next one, the first side changing from batch to batch, so that
    a machine whose speed drifts (other work on it) slows every side alike."""
    catalogs = [Catalog(resolution=Settings(database_url=url).h3_resolution) for url, _ in sides]
    models = [(Predictor(), IntentModel()) for _ in sides]
    costs = [Cost() for _ in sides]
    async with AsyncExitStack() as stack:
        for catalog in catalogs:
            stack.push_async_callback(catalog.close)
        pools = []
        for url, _ in sides:
            pools.append(await open_pool(url, min_size=1, max_size=1))
            stack.push_async_callback(pools[-1].close)
        conns = [await stack.enter_async_context(pool.acquire()) for pool in pools]
        pids = [conn.get_server_pid() for conn in conns]
        for conn, catalog in zip(conns, catalogs, strict=True):
            await catalog.refresh(conn)
        for i, batch in enumerate(work):
            for k in (range(len(sides)) if i % 2 == 0 else reversed(range(len(sides)))):
                conn, catalog, (predictor, intent_model) = conns[k], catalogs[k], models[k]
                without = sides[k][1]
                backend = _backend_ns(pids[k])
                started = time.process_time_ns()
                async with conn.transaction():
                    device = await device_store.get_device(conn, batch.device, lock=True)
                    outcome = await ingest_pings(conn, catalog, predictor, intent_model, device,
                                                 batch.pings, batch.now,
                                                 context=without != "context",
                                                 arbitration=without != "arbitration")
                predictor.learn(outcome.visits)
                spent = time.process_time_ns() - started
                if batch.round >= warmup_rounds:
                    backend_ns = _backend_ns(pids[k]) - backend
                    costs[k].add(bool(outcome.events), spent + backend_ns, backend_ns)
    return costs


# ---------------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------------
@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    import pgserver

    folder = Path(tempfile.mkdtemp(prefix="contexto-bench-pg-"))
    server: Any = pgserver.get_server(folder, cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _share(with_ms: float, without_ms: float) -> float:
    return with_ms / without_ms - 1.0


def report(command: str, pg_version: str, args: argparse.Namespace, signals: int,
           shoppers: int, runs: list[tuple[Cost, Cost]], total_s: float) -> None:
    on = [w for w, _ in runs]
    off = [wo for _, wo in runs]
    med = statistics.median
    moment_on, moment_off = med(c.per_moment_ms() for c in on), med(c.per_moment_ms() for c in off)
    plain_on, plain_off = med(c.per_plain_ms() for c in on), med(c.per_plain_ms() for c in off)
    batch_on, batch_off = med(c.per_batch_ms() for c in on), med(c.per_batch_ms() for c in off)
    moment_share = med(_share(w.per_moment_ms(), wo.per_moment_ms()) for w, wo in runs)
    mix_share = med(_share(w.per_batch_ms(), wo.per_batch_ms()) for w, wo in runs)
    plain_share = med(_share(w.per_plain_ms(), wo.per_plain_ms()) for w, wo in runs)
    made = on[0].moments / max(on[0].moments + on[0].plains, 1)
    feature, target = args.without, TARGET_SHARE[args.without]
    print()
    print("=" * 98)
    print(f"$ {command}")
    print(f"machine   : {os.cpu_count()} cores, Python {platform.python_version()}, {pg_version}")
    print(f"world     : {args.stores:,} stores, 6 enter campaigns (3 with an audience, 3 at one "
          "priority), "
          f"{args.devices:,} devices, {shoppers:,} with a signal history ({signals:,} signals "
          f"over 14 days)")
    print(f"batches   : {args.rounds} measured rounds of one 100-ping batch per device after "
          f"{args.warmup} warm-up round(s); {made:.1%} of them make a moment (enter or exit)")
    how = ("both sides batch by batch (interleaved)" if args.interleave else
           "one side after the other, alternating")
    print(f"runs      : {args.runs} per side, {how}; CPU = this process + its PostgreSQL "
          "backend, per batch; medians of the runs")
    print("-" * 98)
    print(f"{'ms of CPU per batch':<34}{'with ' + feature:>18}{'without':>10}{'added':>10}"
          f"{'share':>10}")
    for name, w, wo, share in (
            ("batches that make a moment", moment_on, moment_off, moment_share),
            ("batches that make none", plain_on, plain_off, plain_share),
            ("the mix (all batches)", batch_on, batch_off, mix_share)):
        print(f"{name:<34}{w:>18.2f}{wo:>10.2f}{w - wo:>10.2f}{share:>+10.1%}")
    per_run = ", ".join(f"{_share(w.per_batch_ms(), wo.per_batch_ms()):+.1%}" for w, wo in runs)
    print(f"the mix, run by run: {per_run}")
    backend = med(c.backend_ns / max(c.moments + c.plains, 1) / 1e6 for c in on)
    print(f"of which PostgreSQL (with {feature}): {backend:.2f} ms per batch")
    verdict = "met" if mix_share <= target else "NOT met"
    print(f"target: {feature} adds at most {target:.0%} to the ping path: {verdict} "
          f"({mix_share:+.1%} on the mix; {moment_share:+.1%} on a batch that makes a moment)")
    print(f"total run {total_s:.0f} s")
    print("=" * 98)


async def bench(args: argparse.Namespace, command: str) -> None:
    started = time.monotonic()
    with postgres_server(args.database_url) as server:
        template = f"contexto_ctxbench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        await _admin(server, f'CREATE DATABASE "{template}"')
        clones: list[str] = []
        try:
            print(f"preparing {args.stores:,} stores and {args.devices:,} devices", flush=True)
            ids, signals = await prepare(with_database(server, template), args.stores,
                                         args.devices, args.seed)
            conn = await asyncpg.connect(with_database(server, template))
            try:
                pg_version = "PostgreSQL " + str(await conn.fetchval("SHOW server_version"))
                shoppers = int(await conn.fetchval("SELECT count(DISTINCT device_id) FROM signals"))
            finally:
                await conn.close()
            work = batches(ids, args.stores, args.warmup + args.rounds, args.seed)
            runs: list[tuple[Cost, Cost]] = []

            async def clone() -> str:
                name = f"{template}_{len(clones)}"
                clones.append(name)
                await _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return with_database(server, name)

            for k in range(args.runs):
                pair: dict[bool, Cost] = {}
                if args.interleave:
                    on_url, off_url = await clone(), await clone()
                    pair[True], pair[False] = await run_sides(
                        [(on_url, None), (off_url, args.without)], work,
                        warmup_rounds=args.warmup)
                for on in () if args.interleave else (True, False) if k % 2 == 0 else \
                        (False, True):
                    pair[on] = await run_once(await clone(), work,
                                              without=None if on else args.without,
                                              warmup_rounds=args.warmup)
                for name in clones:
                    await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                print(f"run {k + 1}/{args.runs}: {pair[True].per_batch_ms():.2f} ms per batch "
                      f"with {args.without}, {pair[False].per_batch_ms():.2f} without",
                      flush=True)
                runs.append((pair[True], pair[False]))
            report(command, pg_version, args, signals, shoppers, runs,
                   time.monotonic() - started)
        finally:
            for name in [template, *clones]:
                await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.context", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--without", choices=sorted(TARGET_SHARE), default="context",
                        help="the step the control side skips (default: context)")
    parser.add_argument("--devices", type=int, default=600)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=1, help="rounds before measuring")
    parser.add_argument("--runs", type=int, default=5, help="runs per side")
    parser.add_argument("--interleave", action="store_true",
                        help="each run replays every batch on both sides before the next one "
                             "(for a machine busy with other work); default: side after side")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None,
                        help="a PostgreSQL server (databases are created on it and dropped); "
                             "default: $DATABASE_URL, else an embedded PostgreSQL")
    args = parser.parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    command = ("python -m bench.context " + " ".join(shlex.quote(a) for a in shown)).strip()
    print(f"$ {command}", flush=True)
    asyncio.run(bench(args, command))


if __name__ == "__main__":
    main()
