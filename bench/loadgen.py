"""The load generator of `bench.e2e`: simulated devices posting 100-ping batches over loopback.

One rule: spend as little CPU as possible while the clock runs (the server shares the machine's
cores). Every request is built before the measurement starts — movement simulated with numpy,
JSON bodies and HTTP/1.1 headers pre-encoded — and sent over plain keep-alive connections
(asyncio streams, no HTTP library), so the generator only writes bytes and reads short answers.

Run by `bench.e2e` in its own process: `python -m bench.loadgen SPEC.json RESULT.json`. It prints
`ready`, `measure-start` and `measure-end` on stdout as it goes, stops by itself after the warm-up
and the measured seconds (in-flight requests get a bounded grace), and only talks to 127.0.0.1.

Movement: each device walks (1.4 m/s) or rides (3-10 m/s) through the city, turning gently; in
each batch (100 fixes, 1 s apart) a share of the devices instead heads for the nearest store and
stays inside its fence, so Entered events (and pushes) follow. Batch `r` of every device covers
`t0 + 100·r … t0 + 100·r + 99` s, which lets `bench.e2e` find the request that carried a moment.
"""

from __future__ import annotations

import asyncio
import math
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import numpy as np

PINGS_PER_BATCH = 100
PING_INTERVAL_S = 1.0
ROUND_SECONDS = PINGS_PER_BATCH * PING_INTERVAL_S
METRES_PER_DEG_LAT = 111_195.0
CHUNK = 100  # bodies built between two turns of the event loop
ROUNDS_AHEAD = 2  # while sending, keep this many rounds built beyond the current one
GRACE_SECONDS = 30.0  # in-flight requests may finish for this long after the measured window


class Plan(msgspec.Struct, kw_only=True, frozen=True):
    """What to build before the devices exist (the bodies do not depend on their tokens)."""

    devices: int
    store_x: list[float]  # store centres, metres east of (lat0, lng0)
    store_y: list[float]  # metres north
    lat0: float
    lng0: float
    half_side_m: float
    t0: float  # epoch seconds of round 0's first fix
    max_rounds: int  # no device sends more batches than this (keeps fixes in the past)
    visit_share: float
    prebuilt_rounds: int
    seed: int


class Go(msgspec.Struct, kw_only=True, frozen=True):
    """How to send, once the service and the devices are ready."""

    port: int
    tokens: list[str]  # device index -> device token
    concurrency: int
    warmup_s: float
    seconds: float


class Result(msgspec.Struct, kw_only=True):
    device: list[int]
    round: list[int]
    sent_at: list[float]  # wall clock (epoch s) when the request was written
    latency_s: list[float]  # until the whole answer was read; -1 when none came
    status: list[int]  # HTTP status; 0 when the connection failed
    accepted: list[int]
    measured: list[bool]  # started inside the measured window (not the warm-up)
    measure_start: float
    measure_end: float
    cpu_s: float  # this process's CPU time during the measured window
    build_s: float  # time spent pre-building requests
    prebuilt: int
    built_late: int  # requests built while the clock ran (by the builder task, or on demand)
    unfinished: int  # still in flight when the grace ran out


class Movement:
    """Every device's position and heading, advanced one batch (round) at a time."""

    def __init__(self, spec: Plan, rng: np.random.Generator) -> None:
        n = spec.devices
        self.spec = spec
        self.rng = rng
        self.sx = np.asarray(spec.store_x)
        self.sy = np.asarray(spec.store_y)
        h = spec.half_side_m
        self.x = rng.uniform(-h, h, n)
        self.y = rng.uniform(-h, h, n)
        self.heading = rng.uniform(0, 2 * math.pi, n)
        rider = rng.random(n) < 0.2
        self.speed = np.where(rider, rng.uniform(3.0, 10.0, n), rng.normal(1.4, 0.2, n).clip(0.8))
        self.cos_lat0 = math.cos(math.radians(spec.lat0))

    def advance(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One round for all devices: lat, lng, accuracy and speed, each of shape (n, 100)."""
        rng, n, k = self.rng, len(self.x), PINGS_PER_BATCH
        t = np.arange(1, k + 1) * PING_INTERVAL_S
        # Wandering: a gentle random turn each second, bounced back towards the centre at the edge.
        turns = np.cumsum(rng.normal(0.0, 0.08, (n, k)), axis=1) + self.heading[:, None]
        step = self.speed[:, None] * PING_INTERVAL_S
        wx = self.x[:, None] + np.cumsum(step * np.cos(turns), axis=1)
        wy = self.y[:, None] + np.cumsum(step * np.sin(turns), axis=1)
        h = self.spec.half_side_m
        wx = np.clip(wx, -h, h)
        wy = np.clip(wy, -h, h)
        heading_end = turns[:, -1]
        at_edge = (np.abs(wx[:, -1]) >= h) | (np.abs(wy[:, -1]) >= h)
        heading_end = np.where(at_edge, np.arctan2(-wy[:, -1], -wx[:, -1]), heading_end)
        # Visiting: straight to the nearest store's centre, then standing inside it.
        visit = rng.random(n) < self.spec.visit_share
        vx, vy = wx, wy
        if visit.any() and len(self.sx):
            idx = np.flatnonzero(visit)
            d2 = (self.x[idx, None] - self.sx[None, :]) ** 2 + \
                 (self.y[idx, None] - self.sy[None, :]) ** 2
            target = d2.argmin(axis=1)
            tx, ty = self.sx[target], self.sy[target]
            dx, dy = tx - self.x[idx], ty - self.y[idx]
            dist = np.hypot(dx, dy)
            v = np.clip(dist / 40.0, 1.2, 15.0)  # arrive within ~40 s, stay the rest
            travelled = np.minimum(v[:, None] * t[None, :], dist[:, None])
            frac = np.divide(travelled, dist[:, None], out=np.ones_like(travelled),
                             where=dist[:, None] > 0)
            vx = wx.copy()
            vy = wy.copy()
            vx[idx] = self.x[idx, None] + frac * dx[:, None]
            vy[idx] = self.y[idx, None] + frac * dy[:, None]
            heading_end[idx] = rng.uniform(0, 2 * math.pi, len(idx))  # leave any way next round
        accuracy = rng.uniform(5.0, 20.0, (n, k))
        noise = accuracy / 2.0
        px = vx + rng.normal(0.0, 1.0, (n, k)) * noise
        py = vy + rng.normal(0.0, 1.0, (n, k)) * noise
        speed = np.where(visit[:, None], 0.5, self.speed[:, None]) * np.ones((1, k))
        self.x, self.y, self.heading = vx[:, -1].copy(), vy[:, -1].copy(), heading_end
        lat = self.spec.lat0 + py / METRES_PER_DEG_LAT
        lng = self.spec.lng0 + px / (METRES_PER_DEG_LAT * self.cos_lat0)
        return lat, lng, accuracy, speed


class Bodies:
    """Pre-encoded request tails (Content-Length, blank line, JSON body), round by round."""

    def __init__(self, spec: Plan) -> None:
        self.spec = spec
        self.movement = Movement(spec, np.random.default_rng(spec.seed))
        self.rounds: list[list[bytes]] = []

    def _round(self) -> Iterator[None]:
        """Build the next round, pausing (yielding) every CHUNK bodies."""
        r = len(self.rounds)
        lat, lng, acc, speed = self.movement.advance()
        stamps = [
            datetime.fromtimestamp(self.spec.t0 + r * ROUND_SECONDS + i * PING_INTERVAL_S, UTC)
            .isoformat().replace("+00:00", "Z")
            for i in range(PINGS_PER_BATCH)
        ]
        # One %-format per body, its 100 timestamps baked into the template of this round.
        template = '{"pings":[' + ",".join(
            '{"lat":%.6f,"lng":%.6f,"ts":"' + ts + '","accuracy_m":%.1f,"speed_mps":%.1f}'
            for ts in stamps) + "]}"
        values = np.stack([lat, lng, acc, speed], axis=-1).reshape(len(lat), -1).tolist()
        built = []
        for k, row in enumerate(values, 1):
            body = (template % tuple(row)).encode()
            built.append(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            if k % CHUNK == 0:
                yield
        self.rounds.append(built)

    def build_round(self) -> None:
        for _ in self._round():
            pass

    async def build_round_async(self) -> None:
        """The same, letting the event loop run between chunks (used while sending)."""
        for _ in self._round():
            await asyncio.sleep(0)

    def get(self, device: int, r: int) -> bytes:
        while len(self.rounds) <= r:
            self.build_round()
        return self.rounds[r][device]


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    close = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    body = await reader.readexactly(length) if length else b""
    if close:
        raise _Closed(status, body)
    return status, body


class _Closed(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__("connection: close")
        self.status, self.body = status, body


_answer = msgspec.json.Decoder(dict[str, object])


def _accepted(body: bytes) -> int:
    try:
        value = _answer.decode(body).get("accepted")
    except msgspec.DecodeError:
        return 0
    return value if isinstance(value, int) else 0


def heads(go: Go) -> list[bytes]:
    return [
        (f"POST /v1/pings HTTP/1.1\r\nHost: 127.0.0.1:{go.port}\r\n"
         f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n").encode()
        for token in go.tokens
    ]


async def run(plan: Plan, bodies: Bodies, go: Go, build_s: float) -> Result:
    """Send request `j` = device `j % n`, round `j // n`, from `go.concurrency` connections."""
    n = plan.devices
    if len(go.tokens) != n:
        raise ValueError("one token per planned device")
    head = heads(go)
    prebuilt = len(bodies.rounds) * n
    result = Result(device=[], round=[], sent_at=[], latency_s=[], status=[], accepted=[],
                    measured=[], measure_start=0.0, measure_end=0.0, cpu_s=0.0,
                    build_s=build_s, prebuilt=prebuilt, built_late=0, unfinished=0)
    busy: list[asyncio.Future[None] | None] = [None] * n
    next_index = 0
    limit = n * plan.max_rounds
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    measure_from = start + go.warmup_s
    stop_at = measure_from + go.seconds

    def cpu_now() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    async def clock() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        cpu_at_start = cpu_now()
        result.measure_start = time.time()
        print("measure-start", flush=True)
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        result.measure_end = time.time()
        result.cpu_s = cpu_now() - cpu_at_start
        print("measure-end", flush=True)

    async def builder() -> None:
        while True:
            wanted = min(next_index // n + 1 + ROUNDS_AHEAD, plan.max_rounds)
            if len(bodies.rounds) >= wanted:
                await asyncio.sleep(0.05)
                continue
            late = time.monotonic() >= measure_from
            await bodies.build_round_async()
            if late:
                result.built_late += n

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection("127.0.0.1", go.port)
        try:
            while True:
                if time.monotonic() >= stop_at or next_index >= limit:
                    return
                j = next_index
                next_index += 1
                device, r = j % n, j // n
                previous = busy[device]
                if previous is not None:  # this device's last batch is still in flight
                    await previous
                done: asyncio.Future[None] = loop.create_future()
                busy[device] = done
                if r >= len(bodies.rounds):  # the builder fell behind: build it now
                    result.built_late += n * (r + 1 - len(bodies.rounds))
                tail = bodies.get(device, r)
                measured = time.monotonic() >= measure_from
                sent_wall = time.time()
                t = time.perf_counter()
                status, accepted = 0, 0
                try:
                    writer.writelines((head[device], tail))
                    status, body = await _read_answer(reader)
                    accepted = _accepted(body) if status == 202 else 0
                    latency = time.perf_counter() - t
                except (ConnectionError, asyncio.IncompleteReadError, _Closed) as exc:
                    latency = time.perf_counter() - t if isinstance(exc, _Closed) else -1.0
                    if isinstance(exc, _Closed):
                        status, accepted = exc.status, _accepted(exc.body)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", go.port)
                finally:
                    busy[device] = None
                    done.set_result(None)
                result.device.append(device)
                result.round.append(r)
                result.sent_at.append(sent_wall)
                result.latency_s.append(latency)
                result.status.append(status)
                result.accepted.append(accepted)
                result.measured.append(measured)
        finally:
            writer.close()

    timer = asyncio.create_task(clock())
    building = asyncio.create_task(builder())
    tasks = [asyncio.create_task(worker()) for _ in range(go.concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=go.warmup_s + go.seconds + GRACE_SECONDS)
    result.unfinished = len(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    building.cancel()
    await asyncio.gather(building, return_exceptions=True)
    await timer
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m bench.loadgen PLAN.json RESULT.json "
                         "(then one line of `Go` JSON on stdin)")
    with open(args[0], "rb") as f:
        plan = msgspec.json.decode(f.read(), type=Plan)
    t = time.perf_counter()
    bodies = Bodies(plan)
    for _ in range(min(plan.prebuilt_rounds, plan.max_rounds)):
        bodies.build_round()
    build_s = time.perf_counter() - t
    print("built", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return  # the benchmark gave up before the load
    go = msgspec.json.decode(line.encode(), type=Go)
    result = asyncio.run(run(plan, bodies, go, build_s))
    with open(args[1], "wb") as f:
        f.write(msgspec.json.encode(result))


if __name__ == "__main__":
    main()
