"""Benchmark of the measurement queries: a campaign's uplift (visit and purchase), the global
report and the stats' last-touch attribution, on a synthetic month of one large campaign.

One rule: time the queries as the routes run them (`campaigns/uplift.py`,
`campaigns/attribution.py`) on a fresh database, and print the command line with the figures.

The month: `--devices` devices (a fifth of them in pairs sharing a customer_id), each with one
moment of the campaign (half treated and sent, half held out, and a tenth of the devices in the
global control group), `--events` enters at random stores and times over the month per device and
as many app signals, a tenth of them purchases.
Run: `python -m bench.uplift [--devices 50000] [--events 10] [--database-url URL]`
(a URL, or `DATABASE_URL`, names a PostgreSQL server; a database is created there and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.dsn import with_database
from app.migrate import migrate
from bench.context import postgres_server
from campaigns import attribution, uplift

NOW = datetime(2026, 7, 1, tzinfo=UTC)
STORES = 50
CAMPAIGN = uuid.UUID(int=1)

FILL = """
INSERT INTO stores (id, name, timezone)
SELECT ('00000000-0000-0000-0001-' || lpad(i::text, 12, '0'))::uuid, 'store ' || i, 'UTC'
FROM generate_series(1, {stores}) i;
INSERT INTO campaigns (id, name, status, trigger_kind, spec)
VALUES ('{campaign}', 'bench', 'active', 'enter', '{{}}');
INSERT INTO devices (id, token_hash, platform, customer_id, consent_location, consent_marketing)
SELECT ('00000000-0000-0000-0002-' || lpad(i::text, 12, '0'))::uuid, decode(md5(i::text), 'hex'),
       'android', CASE WHEN i % 10 < 2 THEN 'c-' || (i / 2) END, true, true
FROM generate_series(1, {devices}) i;
INSERT INTO assignments (campaign_id, device_id, customer_key, moment_key, moment_at, store_id,
                         store_ids, arm, global_holdout, created_at)
SELECT '{campaign}', d.id, coalesce(d.customer_id, 'device:' || d.id), 'enter:' || d.id,
       t, s, ARRAY[s], CASE WHEN g THEN 'global_control' WHEN h THEN 'control' ELSE 'treated' END,
       g, t
FROM (SELECT v.id, v.customer_id, $1::timestamptz - random() * interval '30 days' AS t,
             ('00000000-0000-0000-0001-' || lpad((1 + (random() * ({stores} - 1))::int)::text,
                                                 12, '0'))::uuid AS s,
             random() < 0.1 AS g, random() < 0.5 AS h
      FROM devices v) d;
INSERT INTO deliveries (id, campaign_id, device_id, moment_key, trigger_kind, store_id, moment_at,
                        expires_at, status, sent_at, created_at)
SELECT gen_random_uuid(), campaign_id, device_id, moment_key, 'enter', store_id, moment_at,
       moment_at + interval '15 minutes', 'sent', moment_at + interval '1 second', moment_at
FROM assignments WHERE arm = 'treated';
INSERT INTO geo_events (device_id, customer_id, fence_id, store_id, kind, at)
SELECT v.id, v.customer_id, gen_random_uuid(),
       ('00000000-0000-0000-0001-' || lpad((1 + (random() * ({stores} - 1))::int)::text, 12,
                                           '0'))::uuid,
       'entered', $1::timestamptz - random() * interval '31 days'
FROM devices v, generate_series(1, {events});
INSERT INTO signals (device_id, ts, kind, attributes)
SELECT v.id, $1::timestamptz - random() * interval '31 days',
       CASE WHEN random() < 0.1 THEN 'purchase' ELSE 'product_view' END,
       jsonb_build_object('amount', '12.50')
FROM devices v, generate_series(1, {events});
ANALYZE;
"""


async def timed(call: Callable[[], Awaitable[Any]], runs: int = 5) -> tuple[float, Any]:
    """The median wall time of `runs` calls (after one to warm the cache), and the last result."""
    result = await call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


async def run(dsn: str, devices: int, events: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        start = time.perf_counter()
        for statement in FILL.format(stores=STORES, campaign=CAMPAIGN, devices=devices,
                                     events=events).split(";\n"):
            if statement.strip():
                await conn.execute(statement, *([NOW] if "$1" in statement else []))
        filled = time.perf_counter() - start
        ever = datetime(1970, 1, 1, tzinfo=UTC)
        print(f"$ {shlex.join(['python', '-m', 'bench.uplift', *sys.argv[1:]])}")
        print(f"{devices} devices, one moment each, {devices * events} enters and as many "
              f"signals over 31 days; filled in {filled:.1f} s")
        for goal in uplift.GOALS:
            def counts(g: uplift.Goal = goal) -> Awaitable[tuple[uplift.Counts, uplift.Counts]]:
                return uplift.campaign_counts(conn, CAMPAIGN, g, 24, NOW, ever)

            seconds, (treated, control) = await timed(counts)
            print(f"campaign uplift, {goal}: {seconds * 1000:.0f} ms "
                  f"(treated {treated.n}, control {control.n} moments)")
        seconds, (treated, control) = await timed(lambda: uplift.global_counts(
            conn, "visit", 24, NOW - timedelta(days=30), NOW, NOW, ever))
        print(f"global report, visit, 30 days: {seconds * 1000:.0f} ms "
              f"(treated {treated.n}, global control {control.n} moments)")
        seconds, credited = await timed(lambda: attribution.credited(conn, CAMPAIGN))
        print(f"stats attribution: {seconds * 1000:.0f} ms ({credited.conversions} purchases "
              "credited)")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=10)
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
        await run(dsn, args.devices, args.events)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
