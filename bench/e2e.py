"""End-to-end benchmark: (b) pings/s and request latency of `POST /v1/pings` with 100-ping batches
from thousands of simulated devices, and (c) ping → FCM-emulator receipt latency under that load.

One rule: measure the real thing from outside — the service as `make run` starts it
(`python -m app`, one process, its in-process dispatcher and FCM emulator) on a fresh PostgreSQL,
driven over loopback by a load generator in a separate process (`bench.loadgen`) — and print the
command line, the machine and the set-up sizes with the figures.

Set-up: ~1,000 stores with circle/rectangle fences over a 10 × 10 km city, six active `enter`
campaigns, three of them with an audience (generous caps; a policy without quiet hours nor
minimum gap), an app key and a few thousand devices registered concurrently, as customers with
signal histories of the past days (`bench.shoppers`), so the context engine runs on every batch
that makes a moment. The three campaigns without an audience share one priority and overlap
(every store, three tags of four, 100 flagships) at different `value`s, so most entries that no
audience campaign takes are decided by arbitration's draw; the report counts how the pushed
moments were decided (their `why`). Two control runs: `--skip-context`, the same load on a
service that skips the context engine (`CONTEXTO_BENCH_SKIP_CONTEXT=1`), and
`--skip-arbitration`, one that ranks the survivors by priority then rank without evidence nor
draw (`CONTEXTO_BENCH_SKIP_ARBITRATION=1`); the server CPU per request of a full run against a
control is what that feature adds to the ping path (`bench.controls`: every run is appended to
`.contexto/bench/e2e_runs.jsonl`, and a control run prints itself against the latest full run of
the same settings, and the medians of several).

Then the generator keeps `--concurrency` requests in flight for a warm-up and `--seconds`
measured seconds; some devices walk into stores, so pushes are queued. Each push the emulator
received is traced back, through its delivery's device and moment, to the request that carried
the entering ping: (c) is that request's send time → the emulator's `received_at`.

Run: `python -m bench.e2e [--devices N] [--concurrency N] [--seconds S] [--database-url URL]
[--skip-context | --skip-arbitration]`
(without a URL, nor `DATABASE_URL`, the service starts an embedded PostgreSQL; with one, a new
database is created on that server and dropped afterwards). Targets: (b) ≥ 50 k pings/s,
(c) p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import re
import shlex
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import msgspec
import numpy as np

from bench import controls
from bench.controls import Decided, Measured, RunFigures, RunKey
from bench.loadgen import METRES_PER_DEG_LAT, PINGS_PER_BATCH, ROUND_SECONDS, Go, Plan, Result
from bench.shoppers import HISTORY_DAYS, as_json_rows, campaign_bodies, customer_ids, signal_records
from fixtures.launch import Service, service
from geo.store import SIGNAL_COLUMNS

LAT0, LNG0 = 48.8566, 2.3522  # Paris
HALF_SIDE_M = 5_000.0
TAGS = ("grocery", "fashion", "cafe", "pharmacy")
SETUP_CONCURRENCY = 16
TARGET_PINGS_PER_S = 50_000
TARGET_PUSH_P99_MS = 250.0
PREBUILD_FOR_PINGS_PER_S = 20_000  # pre-built for this rate; more are built as they are needed
MAX_ROUNDS = 100  # batches per device at most; round 0 starts this many batches ago
DRAIN_SECONDS = 20.0  # after the load, how long the outbox may take to empty


@dataclass
class World:
    store_x: list[float] = field(default_factory=list)
    store_y: list[float] = field(default_factory=list)
    fences: int = 0
    campaigns: int = 0
    audience_campaigns: int = 0
    customers: int = 0
    shoppers: int = 0  # devices with a signal history
    signals: int = 0
    device_ids: list[uuid.UUID] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    stores_s: float = 0.0  # time to create the stores and fences
    devices_s: float = 0.0  # time to register the devices
    signals_s: float = 0.0  # time to write the signal histories


# ---------------------------------------------------------------------------------------------
# Set-up through the public API
# ---------------------------------------------------------------------------------------------
def _lnglat(x: float, y: float) -> list[float]:
    return [LNG0 + x / (METRES_PER_DEG_LAT * math.cos(math.radians(LAT0))),
            LAT0 + y / METRES_PER_DEG_LAT]


def fence_body(k: int, x: float, y: float, rng: np.random.Generator) -> dict[str, Any]:
    tag = TAGS[k % len(TAGS)]
    if k % 2:
        return {"name": f"store {k}", "geometry": {"type": "Point", "coordinates": _lnglat(x, y)},
                "radius_m": float(rng.uniform(20.0, 80.0)), "tags": [tag]}
    w = float(rng.uniform(15.0, 60.0))
    h = w * float(rng.uniform(0.4, 1.0))
    a = float(rng.uniform(0.0, math.pi))
    ring = []
    for cx, cy in ((-w, -h), (w, -h), (w, h), (-w, h), (-w, -h)):
        ring.append(_lnglat(x + cx * math.cos(a) - cy * math.sin(a),
                            y + cx * math.sin(a) + cy * math.cos(a)))
    return {"name": f"store {k}", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "tags": [tag]}


async def _gather_limited(calls: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def _ok(client: httpx.AsyncClient, method: str, path: str, token: str,
              body: Any) -> Any:
    for attempt in range(3):
        try:
            response = await client.request(method, path, json=body,
                                            headers={"Authorization": f"Bearer {token}"})
            break
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # A pooled connection the server closed while idle; set-up may simply retry.
            if attempt == 2:
                raise
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
    return response.json()


def store_centres(stores: int, seed: int) -> list[tuple[float, float]]:
    """Store centres in metres east and north of the city centre."""
    rng = np.random.default_rng(seed)
    return [(float(x), float(y)) for x, y in rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, (stores, 2))]


async def set_up(svc: Service, db_url: str, *, centres: list[tuple[float, float]],
                 devices: int, seed: int) -> World:
    rng = np.random.default_rng(seed + 1)
    stores = len(centres)
    world = World()
    admin = svc.admin_token
    limits = httpx.Limits(max_connections=SETUP_CONCURRENCY)
    async with httpx.AsyncClient(base_url=svc.url, timeout=60.0, limits=limits) as client:
        await _ok(client, "PUT", "/v1/policy", admin, {
            "max_per_device_per_day": 100, "min_seconds_between_pushes": 0,
            "quiet_hours": None})
        fences = [fence_body(k, x, y, rng) for k, (x, y) in enumerate(centres)]

        async def store(k: int) -> str:
            made = await _ok(client, "POST", "/v1/stores", admin,
                             {"name": f"bench store {k}", "timezone": "Europe/Paris"})
            await _ok(client, "POST", f"/v1/stores/{made['id']}/geofences", admin, fences[k])
            store_id: str = made["id"]
            return store_id

        t = time.monotonic()
        store_ids: list[str] = await _gather_limited(
            [lambda k=k: store(k) for k in range(stores)], SETUP_CONCURRENCY)  # type: ignore[misc]
        world.store_x = [c[0] for c in centres]
        world.store_y = [c[1] for c in centres]
        world.fences = stores
        world.stores_s = time.monotonic() - t

        now = datetime.now(UTC)
        campaigns = campaign_bodies(store_ids, now)
        for body in campaigns:
            await _ok(client, "POST", "/v1/campaigns", admin, body)
        world.campaigns = len(campaigns)
        world.audience_campaigns = sum(1 for body in campaigns if "audience" in body)

        key = await _ok(client, "POST", "/v1/api-keys", admin, {"name": "bench app", "role": "app"})
        app_token: str = key["token"]
        run = uuid.uuid4().hex[:8]
        customers = customer_ids(devices, run)

        async def device(i: int) -> tuple[str, str]:
            body: dict[str, Any] = {
                "platform": "android" if i % 3 else "ios", "fcm_token": f"bench-{run}-{i}",
                "timezone": "Europe/Paris",
                "consent": {"location": True, "marketing_push": True}}
            if customers[i] is not None:
                body["customer_id"] = customers[i]
            reg = await _ok(client, "POST", "/v1/devices", app_token, body)
            return reg["device_id"], reg["device_token"]

        t = time.monotonic()
        registered: list[tuple[str, str]] = await _gather_limited(
            [lambda i=i: device(i) for i in range(devices)],  # type: ignore[misc]
            SETUP_CONCURRENCY)
        world.device_ids = [uuid.UUID(d) for d, _ in registered]
        world.tokens = [token for _, token in registered]
        world.devices_s = time.monotonic() - t
        world.customers = len(set(c or str(d) for c, d in zip(customers, world.device_ids,
                                                               strict=True)))
    # Histories of the past days: the API takes only the last 24 h, so they are written directly.
    t = time.monotonic()
    records = signal_records(world.device_ids, store_ids, now, seed)
    conn = await asyncpg.connect(db_url)
    try:
        await conn.copy_records_to_table("signals", records=as_json_rows(records),
                                         columns=SIGNAL_COLUMNS)
    finally:
        await conn.close()
    world.signals = len(records)
    world.shoppers = len({r[0] for r in records})
    world.signals_s = time.monotonic() - t
    return world


# ---------------------------------------------------------------------------------------------
# Databases, processes, CPU
# ---------------------------------------------------------------------------------------------
def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(server_url: str) -> tuple[str, str]:
    name = f"contexto_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(server_url, name), name


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def service_log(svc: Service) -> Path:
    """The child's log: its state folder is in its environment (fixtures.launch sets it)."""
    environ = Path(f"/proc/{svc.process.pid}/environ").read_bytes().split(b"\0")
    home = next(v.split(b"=", 1)[1] for v in environ if v.startswith(b"CONTEXTO_HOME="))
    return Path(home.decode()) / "service.log"


def embedded_url(svc: Service) -> str:
    text = service_log(svc).read_text(errors="replace")
    found = re.search(r"embedded PostgreSQL: (\S+)", text)
    if found is None:
        raise RuntimeError("the service did not print its embedded PostgreSQL URL")
    return found.group(1)


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def _server_ticks(root: int) -> int:
    """CPU ticks of the service: its process and every descendant but PostgreSQL's (worker
    processes with CONTEXTO_WORKERS > 1, the FCM emulator process)."""
    parent: dict[int, int] = {}
    comm: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            pid = int(entry.name)
            parent[pid] = int(stat.rsplit(")", 1)[1].split()[1])
            comm[pid] = stat[stat.index("(") + 1:stat.rindex(")")]
    total = 0
    for pid in parent:
        p = pid
        while p not in (0, 1, root) and p in parent:
            p = parent[p]
        if p == root and comm.get(pid) != "postgres":
            total += _ticks(pid)
    return total


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuSample:
    at: float
    server: int
    loadgen: int
    postgres: dict[int, int]
    machine_busy: int
    machine_total: int

    @classmethod
    def take(cls, server_pid: int, loadgen_pid: int) -> CpuSample:
        busy, total = _machine_ticks()
        return cls(time.monotonic(), _server_ticks(server_pid), _ticks(loadgen_pid),
                   {p: _ticks(p) for p in _postgres_pids()}, busy, total)


def cpu_shares(a: CpuSample, b: CpuSample) -> dict[str, float]:
    """CPU use between two samples, in cores (1.0 = one core busy all the time)."""
    hz = os.sysconf("SC_CLK_TCK")
    seconds = max(b.at - a.at, 1e-9)
    postgres = sum(t - a.postgres.get(p, t) for p, t in b.postgres.items())
    cores = os.cpu_count() or 1
    return {
        "server": (b.server - a.server) / hz / seconds,
        "loadgen": (b.loadgen - a.loadgen) / hz / seconds,
        "postgres": postgres / hz / seconds,
        "machine": (b.machine_busy - a.machine_busy) / max(b.machine_total - a.machine_total, 1)
        * cores,
    }


class LoadGenerator:
    """`python -m bench.loadgen` in its own process: started early so that it builds its
    requests while the service starts and the world is set up, then told to go."""

    def __init__(self, folder: Path) -> None:
        self.plan_path, self.result_path = folder / "plan.json", folder / "result.json"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, plan: Plan) -> None:
        self.plan_path.write_bytes(msgspec.json.encode(plan))
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen", str(self.plan_path), str(self.result_path),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    async def _line(self, within: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=max(1.0, within))
        return line.decode().strip()

    async def go(self, go: Go, server_pid: int) -> tuple[Result, dict[str, float]]:
        process = self.process
        assert process is not None and process.stdin is not None
        if await self._line(120.0) != "built":
            raise RuntimeError("the load generator failed while building its requests")
        process.stdin.write(msgspec.json.encode(go) + b"\n")
        await process.stdin.drain()
        samples: dict[str, CpuSample] = {}
        deadline = time.monotonic() + go.warmup_s + go.seconds + 120.0
        while True:
            marker = await self._line(deadline - time.monotonic())
            if not marker:
                break
            if marker in ("measure-start", "measure-end"):
                samples[marker] = CpuSample.take(server_pid, process.pid)
        if await process.wait() != 0:
            raise RuntimeError(f"the load generator failed ({process.returncode})")
        result = msgspec.json.decode(self.result_path.read_bytes(), type=Result)
        shares = (cpu_shares(samples["measure-start"], samples["measure-end"])
                  if len(samples) == 2 else {})
        return result, shares

    async def close(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            if process.stdin is not None and not process.stdin.is_closing():
                process.stdin.close()  # an empty line: stop before sending anything
            try:
                await asyncio.wait_for(process.wait(), timeout=5.0)
            except TimeoutError:
                process.kill()
                await process.wait()


# ---------------------------------------------------------------------------------------------
# Measuring pushes
# ---------------------------------------------------------------------------------------------
PENDING = "SELECT count(*) FROM deliveries WHERE status IN ('queued', 'sending')"
DELIVERIES = "SELECT id, device_id, moment_at, created_at, status FROM deliveries"


async def drain(conn: asyncpg.Connection, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        pending: int = await conn.fetchval(PENDING)
        if pending == 0 or time.monotonic() > deadline:
            return pending
        await asyncio.sleep(0.25)


@dataclass
class PushFigures:
    deliveries: int
    statuses: Counter[str]
    received: int
    traced: list[float]  # ping request sent -> emulator receipt, for measured requests (s)
    answered_to_receipt: list[float]  # the ping request's answer -> emulator receipt (s)
    untraced: int
    pending_after_drain: int


async def push_figures(db_url: str, emulator_url: str, world: World, spec: Plan,
                       result: Result) -> PushFigures:
    conn = await asyncpg.connect(db_url)
    try:
        pending = await drain(conn, DRAIN_SECONDS)
        rows = await conn.fetch(DELIVERIES)
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=emulator_url, timeout=120.0) as client:
        response = await client.get("/emulator/messages")
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()["messages"]
    index_of = {d: i for i, d in enumerate(world.device_ids)}
    sent: dict[tuple[int, int], tuple[float, float, bool]] = {
        (d, r): (s, lat, m)
        for d, r, s, lat, m in zip(result.device, result.round, result.sent_at,
                                   result.latency_s, result.measured, strict=True)
    }
    by_id = {str(r["id"]): r for r in rows}
    traced: list[float] = []
    after_answer: list[float] = []
    untraced = 0
    for message in messages:
        row = by_id.get(message["message"].get("data", {}).get("delivery_id", ""))
        if row is None or row["device_id"] not in index_of:
            untraced += 1
            continue
        device = index_of[row["device_id"]]
        r = int((row["moment_at"].timestamp() - spec.t0) // ROUND_SECONDS)
        request = sent.get((device, r))
        if request is None:
            untraced += 1
            continue
        sent_at, latency, measured = request
        if not measured:
            continue
        received = datetime.fromisoformat(message["received_at"]).timestamp()
        traced.append(received - sent_at)
        if latency >= 0:
            after_answer.append(received - sent_at - latency)
    return PushFigures(len(rows), Counter(r["status"] for r in rows), len(messages), traced,
                       after_answer, untraced, pending)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "n/a (no samples)"
    return (f"p50 {_pct(values, 50) * 1e3:7.1f} ms | p99 {_pct(values, 99) * 1e3:7.1f} ms | "
            f"max {max(values) * 1e3:7.1f} ms  (n={len(values):,})")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(*, command: str, pg_version: str, database: str, world: World, spec: Plan,
           go: Go, result: Result, pushes: PushFigures, decided: Decided,
           cpu: dict[str, float], setup_s: float, total_s: float, workers: int,
           skip_context: bool, skip_arbitration: bool) -> Measured:
    """Print the run's figures and return the ones a control run is compared on."""
    window = max(result.measure_end - result.measure_start, 1e-9)
    # Throughput counts the answers that arrived inside the window (whenever they were sent);
    # latency, the requests sent inside it.
    done = [
        i for i in range(len(result.device))
        if result.latency_s[i] >= 0
        and result.measure_start <= result.sent_at[i] + result.latency_s[i] <= result.measure_end
    ]
    measured = [i for i in range(len(result.device)) if result.measured[i]]
    ok = [i for i in done if result.status[i] == 202]
    pings = sum(result.accepted[i] for i in ok)
    rejected_pings = sum(PINGS_PER_BATCH - result.accepted[i] for i in ok)
    latencies = [result.latency_s[i] for i in measured if result.latency_s[i] >= 0]
    errors = Counter(result.status[i] for i in measured if result.status[i] != 202)
    pings_per_s = pings / window
    print()
    print("=" * 98)
    print(f"$ {command}")
    print(f"machine   : {os.cpu_count()} cores ({_cpu_model()}), Python "
          f"{platform.python_version()}, {pg_version}")
    print(f"database  : {database}")
    shape = ("1 process, in-process dispatcher and FCM emulator" if workers <= 1 else
             f"{workers} worker processes, each with its dispatcher; FCM emulator process")
    print(f"service   : python -m app ({shape}, uvicorn); generator: separate process, raw "
          "HTTP/1.1 keep-alive")
    print(f"set-up    : {len(world.store_x):,} stores / {world.fences:,} fences (circles and "
          f"rectangles, 10 x 10 km), {world.campaigns} active enter campaigns "
          f"({world.audience_campaigns} with an audience), {len(world.device_ids):,} devices "
          f"({world.customers:,} customers); {setup_s:.1f} s (stores and fences "
          f"{world.stores_s:.1f} s, devices {world.devices_s:.1f} s, "
          f"{SETUP_CONCURRENCY} requests at a time)")
    print(f"shoppers  : {world.shoppers:,} devices with a signal history, {world.signals:,} "
          f"signals over {HISTORY_DAYS:g} days (written in {world.signals_s:.1f} s); context "
          + ("engine SKIPPED (CONTEXTO_BENCH_SKIP_CONTEXT=1, the control run)" if skip_context
             else "engine on (signals read once per batch that makes a moment)"))
    print(f"load      : {go.concurrency} requests in flight, {PINGS_PER_BATCH} pings per "
          f"batch (1 s apart), {spec.visit_share:.0%} of batches walk into a store; warm-up "
          f"{go.warmup_s:g} s, measured {window:.1f} s")
    print("-" * 98)
    print(f"(b) throughput : {pings_per_s:>10,.0f} pings/s   {len(ok) / window:>8,.1f} "
          f"requests/s   (target >= {TARGET_PINGS_PER_S:,} pings/s: "
          + ("met)" if pings_per_s >= TARGET_PINGS_PER_S else
             f"NOT met, {pings_per_s / TARGET_PINGS_PER_S:.1%} of it, "
             f"x{TARGET_PINGS_PER_S / max(pings_per_s, 1e-9):.1f} short)"))
    print(f"    latency    : {_ms(latencies)}")
    print(f"    errors     : {sum(errors.values())} of {len(measured):,} requests"
          + (f" {dict(errors)}" if errors else "")
          + f"; pings rejected by the rules: {rejected_pings}; unfinished workers: "
          f"{result.unfinished}")
    p99 = _pct(pushes.traced, 99) * 1e3
    print(f"(c) ping->push : {_ms(pushes.traced)}   (target p99 < {TARGET_PUSH_P99_MS:g} ms: "
          + ("n/a)" if not pushes.traced else "met)" if p99 < TARGET_PUSH_P99_MS else
             f"NOT met, x{p99 / TARGET_PUSH_P99_MS:.1f} over)"))
    print(f"    after the ping request was answered (NOTIFY, claim, FCM send): "
          f"{_ms(pushes.answered_to_receipt)}")
    if latencies:
        print(f"    at {go.concurrency} in flight, Little's law alone puts the request latency at "
              f"{go.concurrency / max(len(ok) / window, 1e-9) * 1e3:.0f} ms when the server is "
              f"saturated")
    print(f"    pushes     : {pushes.deliveries:,} deliveries queued ({dict(pushes.statuses)}), "
          f"{pushes.received:,} received by the emulator, {pushes.pending_after_drain} still "
          f"pending {DRAIN_SECONDS:g} s after the load, {pushes.untraced} not traceable")
    print(controls.decided_line(decided, skipped=skip_arbitration))
    per_request = postgres_per_request = others = 0.0
    if cpu:
        others = max(cpu["machine"] - cpu["server"] - cpu["postgres"] - cpu["loadgen"], 0.0)
        print(f"CPU (cores, measured window): server {cpu['server']:.2f} | postgres (all on the "
              f"machine) {cpu['postgres']:.2f} | load generator {cpu['loadgen']:.2f} | other "
              f"processes {others:.2f} | machine {cpu['machine']:.2f} of "
              f"{os.cpu_count()}")
        rate = len(ok) / window
        if rate > 0 and cpu["server"] > 0:
            per_request, postgres_per_request = cpu["server"] / rate, cpu["postgres"] / rate
            print(f"    server CPU per 100-ping request: {per_request * 1e3:.1f} ms, i.e. at most "
                  f"{PINGS_PER_BATCH / per_request:,.0f} pings/s per core of the "
                  f"server; postgres {cpu['postgres'] / rate * 1e3:.1f} ms per request")
            need = TARGET_PINGS_PER_S / PINGS_PER_BATCH * per_request
            print(f"    the (b) target needs {need:.1f} cores of server CPU at this cost per "
                  f"request ({workers} worker process{'es' if workers > 1 else ''} here, "
                  f"{os.cpu_count()} cores shared with PostgreSQL and the generator)")
    print(f"generator: pre-built {result.prebuilt:,} requests in {result.build_s:.1f} s, "
          f"{result.built_late:,} built while measuring; total run {total_s:.0f} s")
    print("=" * 98)
    return Measured(pings_per_s=pings_per_s, requests_per_s=len(ok) / window,
                    server_ms_per_request=per_request * 1e3,
                    postgres_ms_per_request=postgres_per_request * 1e3, other_cores=others)


# ---------------------------------------------------------------------------------------------
async def bench(args: argparse.Namespace, command: str) -> None:
    started = time.monotonic()
    server_url: str | None = args.database_url or None
    centres = store_centres(args.stores, args.seed)
    rounds = math.ceil(PREBUILD_FOR_PINGS_PER_S * (args.warmup + args.seconds)
                       / PINGS_PER_BATCH / args.devices) + 1
    plan = Plan(
        devices=args.devices, store_x=[c[0] for c in centres], store_y=[c[1] for c in centres],
        lat0=LAT0, lng0=LNG0, half_side_m=HALF_SIDE_M,
        t0=float(int(time.time()) - MAX_ROUNDS * int(ROUND_SECONDS) - 60),
        max_rounds=MAX_ROUNDS, visit_share=args.visit_share,
        prebuilt_rounds=min(rounds, MAX_ROUNDS), seed=args.seed)
    created: str | None = None
    db_url: str | None = None
    with tempfile.TemporaryDirectory(prefix="contexto-bench-") as folder:
        loadgen = LoadGenerator(Path(folder))
        try:
            await loadgen.start(plan)  # it builds its requests meanwhile
            if server_url:
                db_url, created = await create_database(server_url)
            where = (f"PostgreSQL at {_redacted(server_url)}" if server_url
                     else "embedded PostgreSQL")
            print(f"starting the service ({where})", flush=True)
            # The per-device budget is lifted: this measures throughput, not back-pressure.
            extra = {"CONTEXTO_WORKERS": str(args.workers), "DB_POOL_MAX": str(args.pool),
                     "DEVICE_BURST": "1000000", "DEVICE_BATCHES_PER_SECOND": "1000000"}
            if args.skip_context:
                extra["CONTEXTO_BENCH_SKIP_CONTEXT"] = "1"
            if args.skip_arbitration:
                extra["CONTEXTO_BENCH_SKIP_ARBITRATION"] = "1"
            with service(database_url=db_url, extra_env=extra) as svc:
                if db_url is None:
                    db_url = embedded_url(svc)
                conn = await asyncpg.connect(db_url)
                try:
                    pg_version = "PostgreSQL " + str(await conn.fetchval("SHOW server_version"))
                finally:
                    await conn.close()
                print(f"setting up {args.stores:,} stores and {args.devices:,} devices", flush=True)
                t = time.monotonic()
                world = await set_up(svc, db_url, centres=centres, devices=args.devices,
                                     seed=args.seed)
                setup_s = time.monotonic() - t
                go = Go(port=int(urlsplit(svc.url).port or 0), tokens=world.tokens,
                        concurrency=args.concurrency, warmup_s=args.warmup, seconds=args.seconds)
                print(f"running the load: {args.concurrency} in flight, warm-up {args.warmup:g} s, "
                      f"measured {args.seconds:g} s", flush=True)
                result, cpu = await loadgen.go(go, svc.process.pid)
                print("waiting for the outbox to drain", flush=True)
                pushes = await push_figures(db_url, svc.emulator_url, world, plan, result)
                conn = await asyncpg.connect(db_url)
                try:
                    decided = await controls.decided(conn)
                finally:
                    await conn.close()
                database = (f"fresh database on {_redacted(server_url)}" if server_url
                            else "embedded PostgreSQL (pgserver), fresh")
                figures = report(
                    command=command, pg_version=pg_version, database=database, world=world,
                    spec=plan, go=go, result=result, pushes=pushes, decided=decided, cpu=cpu,
                    setup_s=setup_s, total_s=time.monotonic() - started, workers=args.workers,
                    skip_context=args.skip_context, skip_arbitration=args.skip_arbitration)
                remember(args, command, figures)
        finally:
            await loadgen.close()
            if server_url and created:
                await drop_database(server_url, created)


def remember(args: argparse.Namespace, command: str, measured: Measured) -> None:
    """Append the run to `controls.RUNS_FILE`; a control run prints itself against full runs."""
    if measured.server_ms_per_request <= 0:
        return  # no CPU figures: nothing to compare
    mode: controls.Mode = ("skip-context" if args.skip_context else
                           "skip-arbitration" if args.skip_arbitration else "full")
    key = RunKey(concurrency=args.concurrency, devices=args.devices, stores=args.stores,
                 seconds=args.seconds, warmup=args.warmup, visit_share=args.visit_share,
                 seed=args.seed, workers=args.workers, pool=args.pool)
    run = RunFigures(at=datetime.now(UTC), mode=mode, key=key, command=command,
                     **msgspec.structs.asdict(measured))
    controls.record(run)
    for line in controls.compare(run, controls.earlier_runs()):
        print(line)
    if mode != "full":
        print("=" * 98)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--visit-share", type=float, default=0.1,
                        help="share of batches in which the device walks into a store")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None,
                        help="a PostgreSQL server (a fresh database is created on it); "
                             "default: $DATABASE_URL, else an embedded PostgreSQL")
    parser.add_argument("--seed", type=int, default=7)
    control = parser.add_mutually_exclusive_group()
    control.add_argument("--skip-context", action="store_true",
                         help="a control run: the service skips the context engine "
                              "(CONTEXTO_BENCH_SKIP_CONTEXT=1), to measure what it adds")
    control.add_argument("--skip-arbitration", action="store_true",
                         help="a control run: the service ranks survivors by priority then rank, "
                              "with no evidence nor draw (CONTEXTO_BENCH_SKIP_ARBITRATION=1), to "
                              "measure what arbitration adds")
    parser.add_argument("--workers", type=int, default=2,
                        help="service worker processes (CONTEXTO_WORKERS)")
    parser.add_argument("--pool", type=int, default=10,
                        help="database connections per worker (DB_POOL_MAX)")
    args = parser.parse_args(argv)
    if args.devices <= args.concurrency:
        parser.error("--devices must exceed --concurrency (one batch per device in flight)")
    shown = sys.argv[1:] if argv is None else argv
    command = "python -m bench.e2e " + " ".join(shlex.quote(_redacted(a)) for a in shown)
    print(f"$ {command.strip()}", flush=True)
    asyncio.run(bench(args, command.strip()))


if __name__ == "__main__":
    main()
