"""What webhooks cost: what writing `moment` events adds to the ping path, and how many events
per second the relay delivers to a receiver on loopback — alone, and beside a receiver that
never answers in time.

One rule: each figure compares like with like. The ping path is `bench.context`'s harness (the
same world, the same batches, replayed batch by batch on two clones of one database, CPU of this
process and its PostgreSQL backend per batch, medians of the runs); the two clones differ only in
one subscription to every event type, so one side writes events and the other does not. The
relay's throughput is measured in this process against a real HTTP receiver in a process of its
own (uvicorn, on loopback), from the moment the relay starts until every delivery is recorded
`delivered`, on events already in the stream.

Run: `python -m bench.webhooks [--devices N] [--stores N] [--rounds N] [--runs N]
[--events N] [--skip-ping-path] [--database-url URL]` (without a URL, nor `DATABASE_URL`, an
embedded PostgreSQL is started).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import platform
import shlex
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import uvicorn

from app.db import open_pool
from app.dsn import with_database
from bench.context import Cost, _admin, _share, batches, postgres_server, prepare, run_sides
from campaigns.webhooks import store as webhook_store
from campaigns.webhooks.model import EVENT_TYPES
from campaigns.webhooks.relay import Relay
from campaigns.webhooks.safety import AllowList
from campaigns.webhooks.sealing import Sealer

KEY = "bench-webhook-key-" + "k" * 32
SECRET = "bench-receiver-secret-0123456789"


# ---------------------------------------------------------------------------------------------
# A receiver on loopback
# ---------------------------------------------------------------------------------------------
class _Receiver:
    """Answers 204 to every POST (after `delay` seconds); counts them."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.count = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _serve(delay: float, ready: Any) -> None:
    """The receiver process: uvicorn on a free loopback port, which it reports on `ready`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    ready.put(f"http://127.0.0.1:{sock.getsockname()[1]}/hook")
    # Critical only: the hanging receiver's requests are cut short when it stops.
    server = _Server(uvicorn.Config(_Receiver(delay), log_level="critical", access_log=False,
                                    lifespan="off"))
    asyncio.run(server.serve(sockets=[sock]))


@contextlib.contextmanager
def receiving(delay: float = 0.0) -> Iterator[str]:
    """A receiver on 127.0.0.1 in a process of its own (in a thread of this one, it would
    compete with the relay for the interpreter lock, and the figure would measure that);
    yields its URL."""
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    process = context.Process(target=_serve, args=(delay, ready), daemon=True)
    process.start()
    try:
        url: str = ready.get(timeout=60)
        time.sleep(0.5)  # uvicorn is listening once it has started; give it that moment
        yield url
    finally:
        process.terminate()
        process.join(timeout=30)


# ---------------------------------------------------------------------------------------------
# The two measurements
# ---------------------------------------------------------------------------------------------
async def subscribe(url: str, receiver_url: str) -> uuid.UUID:
    conn = await asyncpg.connect(url)
    try:
        webhook_id = uuid.uuid4()
        await webhook_store.insert(conn, webhook_id, receiver_url, list(EVENT_TYPES),
                                   Sealer(KEY).seal(webhook_id, SECRET), datetime.now(UTC))
        return webhook_id
    finally:
        await conn.close()


async def throughput(url: str, events: int, *,
                     beside_slow: bool) -> tuple[float, int, float]:
    """Seconds to deliver `events` events to one receiver (with a second subscription to a
    receiver that holds every request past the timeout, if `beside_slow`); how many attempts
    the slow one had meanwhile; and the CPU seconds this process spent relaying (the receivers
    run in processes of their own)."""
    with contextlib.ExitStack() as stack:
        fast_url = stack.enter_context(receiving())
        fast = await subscribe(url, fast_url)
        if beside_slow:
            await subscribe(url, stack.enter_context(receiving(delay=30.0)))
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("""
                INSERT INTO webhook_events (id, type, created_at, data)
                SELECT gen_random_uuid(), 'moment', now(), jsonb_build_object(
                    'device_id', gen_random_uuid(), 'customer_id', 'c' || n, 'kind', 'enter',
                    'fence_id', gen_random_uuid(), 'store_id', gen_random_uuid(),
                    'at', now(), 'entered_at', NULL)
                FROM generate_series(1, $1) AS n""", events)
            pool = await open_pool(url, min_size=2, max_size=10)
            relay = Relay(pool, Sealer(KEY), AllowList.parse("127.0.0.1"), timeout=2.0,
                          lease=timedelta(seconds=10))
            stop = asyncio.Event()
            started, cpu = time.monotonic(), time.process_time()
            task = asyncio.create_task(relay.run(url, stop))
            while True:
                delivered: int = await conn.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 "
                    "AND status = 'delivered'", fast)
                if delivered >= events:
                    break
                await asyncio.sleep(0.05)
            seconds, cpu = time.monotonic() - started, time.process_time() - cpu
            slow_attempts = int(await conn.fetchval(
                "SELECT count(*) FROM webhook_attempts WHERE webhook_id <> $1", fast))
            stop.set()
            await task
            await pool.close()
        finally:
            await conn.close()
    return seconds, slow_attempts, cpu


async def bench(args: argparse.Namespace, command: str) -> None:
    started = time.monotonic()
    with postgres_server(args.database_url) as server:
        template = f"contexto_whbench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        await _admin(server, f'CREATE DATABASE "{template}"')
        clones: list[str] = []

        async def clone() -> str:
            name = f"{template}_{len(clones)}"
            clones.append(name)
            await _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return with_database(server, name)

        try:
            ids: list[uuid.UUID] = []
            if args.skip_ping_path:  # the relay needs only the schema
                await (await open_pool(with_database(server, template), min_size=1,
                                       max_size=1)).close()
            else:
                print(f"preparing {args.stores:,} stores and {args.devices:,} devices",
                      flush=True)
                ids, _ = await prepare(with_database(server, template), args.stores,
                                       args.devices, args.seed)
            conn = await asyncpg.connect(with_database(server, template))
            try:
                pg_version = "PostgreSQL " + str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()
            work = [] if args.skip_ping_path else batches(ids, args.stores,
                                                          args.warmup + args.rounds, args.seed)
            runs: list[tuple[Cost, Cost]] = []
            written: list[int] = []
            for k in range(0 if args.skip_ping_path else args.runs):
                on_url, off_url = await clone(), await clone()
                await subscribe(on_url, "http://127.0.0.1:9/never-called")
                on, off = await run_sides([(on_url, None), (off_url, None)], work,
                                          warmup_rounds=args.warmup)
                conn = await asyncpg.connect(on_url)
                try:
                    written.append(int(await conn.fetchval("SELECT count(*) FROM webhook_events")))
                finally:
                    await conn.close()
                print(f"run {k + 1}/{args.runs}: {on.per_batch_ms():.2f} ms per batch with a "
                      f"subscription, {off.per_batch_ms():.2f} without", flush=True)
                runs.append((on, off))
            alone = await throughput(await clone(), args.events, beside_slow=False)
            beside = await throughput(await clone(), args.events, beside_slow=True)
            report(command, pg_version, args, runs, written, alone, beside,
                   time.monotonic() - started)
        finally:
            for name in [template, *clones]:
                await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(command: str, pg_version: str, args: argparse.Namespace,
           runs: list[tuple[Cost, Cost]], written: list[int], alone: tuple[float, int, float],
           beside: tuple[float, int, float], total_s: float) -> None:
    med = statistics.median
    on, off = [w for w, _ in runs], [wo for _, wo in runs]
    load = os.getloadavg()
    print()
    print("=" * 98)
    print(f"$ {command}")
    print(f"machine   : {os.cpu_count()} cores (load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}),"
          f" Python {platform.python_version()}, {pg_version}")
    if runs:
        print(f"ping path : bench.context's world ({args.stores:,} stores, "
              f"{args.devices:,} devices), {args.rounds} measured round(s) after "
              f"{args.warmup} warm-up; {args.runs} runs, interleaved")
        print(f"            {med(written):,.0f} events written per run on the "
              "subscribed side")
        print("-" * 98)
        print(f"{'ms of CPU per batch':<34}{'subscribed':>14}{'none':>10}{'added':>10}"
              f"{'share':>10}")
        rows: list[tuple[str, Callable[[Cost], float]]] = [
            ("batches that make a moment", Cost.per_moment_ms),
            ("batches that make none", Cost.per_plain_ms),
            ("the mix (all batches)", Cost.per_batch_ms)]
        for name, ms in rows:
            w, wo = med(ms(c) for c in on), med(ms(c) for c in off)
            share = med(_share(ms(a), ms(b)) for a, b in runs)
            print(f"{name:<34}{w:>14.2f}{wo:>10.2f}{w - wo:>10.2f}{share:>+10.1%}")
    print("-" * 98)
    print(f"relay     : {args.events:,} events, one receiver on loopback, 4 POSTs in flight per "
          "receiver, a new HTTP request per event")
    print(f"alone                             {args.events / alone[0]:>10,.0f} events/s "
          f"({alone[0]:.1f} s; {alone[2] / args.events * 1000:.2f} ms of CPU per event in the "
          "relay's process)")
    print(f"beside a receiver that hangs      {args.events / beside[0]:>10,.0f} events/s "
          f"({beside[0]:.1f} s; the hanging one had {beside[1]} attempts, each cut at 2 s)")
    print(f"total run {total_s:.0f} s")
    print("=" * 98)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--stores", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=1, help="rounds before measuring")
    parser.add_argument("--runs", type=int, default=3, help="runs per side")
    parser.add_argument("--events", type=int, default=3000, help="events for the relay")
    parser.add_argument("--skip-ping-path", action="store_true",
                        help="measure the relay only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None)
    args = parser.parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    command = ("python -m bench.webhooks " + " ".join(shlex.quote(a) for a in shown)).strip()
    print(f"$ {command}", flush=True)
    for name in ("httpx", "contexto", "uvicorn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    asyncio.run(bench(args, command))


if __name__ == "__main__":
    main()
