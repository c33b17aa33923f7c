"""A week of pings of many devices, generated as the service would have stored them, for the
backtest benchmark (`bench.backtest`).

One rule: every day is drawn from a seeded generator, per device, and written as one binary
COPY in the order the batches arrived (what `POST /v1/pings` would have left in the table), so
a run can be repeated exactly and the table's physical order is the real one.

A device lives at home somewhere in the city (`bench.e2e`'s 10 × 10 km around Paris) and:
- at home, its app reports a fix every 30 minutes from 07:00 to 23:00, sent every 2 hours;
- makes `TRIPS_PER_DAY` trips a day on average (Poisson), leaving between 08:00 and 20:00:
  walking (1.4 m/s) when the destination is under 1.2 km, else 6 m/s, a fix every 30 s and a
  batch every 5 minutes while moving;
- a trip is, with `VISIT_SHARE`, a visit to one of the `NEAREST_STORES` stores nearest home
  (4–25 minutes inside, a fix a minute, 5–20 m accuracy), else an errand 0.5–3 km away (30–180
  minutes there without fixes); then it comes home the same way.
The home fixes of the trip's hours are left out; a 2-hour home batch that arrives after a trip's
batches carries fixes older than them (late fixes, as real apps send).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from bench.e2e import HALF_SIDE_M, LAT0, LNG0
from bench.loadgen import METRES_PER_DEG_LAT
from geo.cells import cells_of

TRIPS_PER_DAY = 1.2
VISIT_SHARE = 0.3
NEAREST_STORES = 15
HOME_EVERY_S = 1800
HOME_BATCH_S = 7200
MOVING_EVERY_S = 30
INSIDE_EVERY_S = 60
MOVING_BATCH_S = 300
# The service's local day (Europe/Paris in winter): homes and trips keep local hours.
UTC_OFFSET_H = 1

PING_COLUMNS = ("device_id", "ts", "lat", "lng", "accuracy_m", "cell", "received_at")
_ROW = np.dtype([
    ("count", ">i2"),
    ("l0", ">i4"), ("device_id", "V16"), ("l1", ">i4"), ("ts", ">i8"),
    ("l2", ">i4"), ("lat", ">f8"), ("l3", ">i4"), ("lng", ">f8"),
    ("l4", ">i4"), ("accuracy_m", ">f4"), ("l5", ">i4"), ("cell", ">i8"),
    ("l6", ">i4"), ("received_at", ">i8"),
])
_PG_EPOCH_S = 946_684_800  # 2000-01-01 in Unix seconds


@dataclass
class Pings:
    """Parallel arrays: device index, Unix seconds of the fix and of its batch's arrival."""

    device: NDArray[np.int64]
    ts: NDArray[np.float64]
    received: NDArray[np.float64]
    x: NDArray[np.float64]  # metres east of the centre
    y: NDArray[np.float64]
    accuracy: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.device)


@dataclass
class City:
    homes: NDArray[np.float64]  # (devices, 2) metres
    nearest: NDArray[np.int64]  # (devices, NEAREST_STORES) store indexes
    stores: NDArray[np.float64]  # (stores, 2) metres


def city(devices: int, stores: Sequence[tuple[float, float]], seed: int) -> City:
    rng = np.random.default_rng(seed + 21)
    homes = rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, (devices, 2))
    centres = np.asarray(stores, dtype=np.float64)
    k = min(NEAREST_STORES, len(centres))
    nearest = np.empty((devices, k), dtype=np.int64)
    for lo in range(0, devices, 1000):
        d = np.hypot(homes[lo:lo + 1000, None, 0] - centres[None, :, 0],
                     homes[lo:lo + 1000, None, 1] - centres[None, :, 1])
        nearest[lo:lo + 1000] = np.argpartition(d, k - 1, axis=1)[:, :k]
    return City(homes, nearest, centres)


def _path(rng: np.random.Generator, a: NDArray[np.float64], b: NDArray[np.float64],
          t0: float) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Fixes every MOVING_EVERY_S from a to b: (times, xy (n, 2), accuracy)."""
    distance = float(np.hypot(*(b - a)))
    speed = 1.4 if distance < 1200 else 6.0
    n = max(1, math.ceil(distance / speed / MOVING_EVERY_S))
    f = np.arange(1, n + 1) / n
    xy = np.asarray(a + (b - a) * f[:, None] + rng.normal(0, 6, (n, 2)), dtype=np.float64)
    times = np.asarray(t0 + np.arange(1, n + 1) * MOVING_EVERY_S, dtype=np.float64)
    return times, xy, rng.uniform(8, 30, n)


def _batched(rng: np.random.Generator, t: NDArray[np.float64], every_s: float,
             origin: float = 0.0) -> NDArray[np.float64]:
    """When each fix arrived: its batch is sent at the end of its `every_s` slot, a few
    seconds late."""
    slots, inverse = np.unique(np.floor((t - origin) / every_s), return_inverse=True)
    return origin + (slots[inverse] + 1) * every_s + rng.uniform(1, 20, len(slots))[inverse]


def day_of(c: City, day_start: float, seed: int) -> Pings:
    """Every device's fixes of one local day starting at `day_start` (Unix seconds, local
    midnight), with the arrival of the batch that carried each."""
    rng = np.random.default_rng(seed)
    parts: list[tuple[int, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                      NDArray[np.float64]]] = []
    for d in range(len(c.homes)):
        home = c.homes[d]
        busy: list[tuple[float, float]] = []
        free_from = day_start
        leaves = np.sort(day_start + rng.uniform(8 * 3600, 20 * 3600,
                                                 int(rng.poisson(TRIPS_PER_DAY))))
        for leave in np.maximum.accumulate(leaves).tolist():
            leave = max(leave, free_from)  # one trip at a time
            if rng.random() < VISIT_SHARE:
                target = c.stores[c.nearest[d, rng.integers(0, c.nearest.shape[1])]]
                stay, inside = rng.uniform(4 * 60, 25 * 60), True
            else:
                angle, far = rng.uniform(0, 2 * math.pi), rng.uniform(500, 3000)
                target = np.clip(home + far * np.array([math.cos(angle), math.sin(angle)]),
                                 -HALF_SIDE_M, HALF_SIDE_M)
                stay, inside = rng.uniform(30 * 60, 180 * 60), False  # no fixes out there
            t_out, xy_out, acc_out = _path(rng, home, target, leave)
            arrived = float(t_out[-1])
            n = int(stay // INSIDE_EVERY_S) if inside else 0
            t_in = arrived + np.arange(1, n + 1) * INSIDE_EVERY_S
            xy_in = target + rng.normal(0, 5, (n, 2))
            acc_in = rng.uniform(5, 20, n)
            t_back, xy_back, acc_back = _path(rng, target, home, arrived + stay)
            t = np.concatenate([t_out, t_in, t_back])
            parts.append((d, t, _batched(rng, t, MOVING_BATCH_S),
                          np.concatenate([xy_out, xy_in, xy_back]),
                          np.concatenate([acc_out, acc_in, acc_back])))
            busy.append((leave - 600, float(t[-1]) + 600))
            free_from = float(t[-1]) + 600
        t_home = day_start + np.arange(7 * 3600, 23 * 3600, HOME_EVERY_S) \
            + rng.uniform(-180, 180, (23 - 7) * 3600 // HOME_EVERY_S)
        keep = np.ones(len(t_home), dtype=bool)
        for lo, hi in busy:
            keep &= ~((t_home >= lo) & (t_home <= hi))
        t_home = t_home[keep]
        parts.append((d, t_home, _batched(rng, t_home, HOME_BATCH_S, day_start),
                      home + rng.normal(0, 10, (len(t_home), 2)),
                      rng.uniform(15, 50, len(t_home))))
    device = np.concatenate([np.full(len(p[1]), p[0], dtype=np.int64) for p in parts])
    xy = np.concatenate([p[3] for p in parts])
    return Pings(device=device, ts=np.concatenate([p[1] for p in parts]),
                 received=np.concatenate([p[2] for p in parts]), x=xy[:, 0], y=xy[:, 1],
                 accuracy=np.concatenate([p[4] for p in parts]))


def local_midnights(start: datetime, days: int) -> list[float]:
    """Unix seconds of each local midnight from `start` (a UTC midnight)."""
    return [(start + timedelta(days=k, hours=-UTC_OFFSET_H)).timestamp() for k in range(days)]


def copy_rows(pings: Pings, device_ids: Sequence[uuid.UUID], resolution: int) -> bytes:
    """The day's pings as one binary COPY of PING_COLUMNS, in arrival order."""
    order = np.lexsort((pings.ts, pings.device, pings.received))
    lat = LAT0 + pings.y[order] / METRES_PER_DEG_LAT
    lng = LNG0 + pings.x[order] / (METRES_PER_DEG_LAT * math.cos(math.radians(LAT0)))
    rows = np.zeros(len(order), dtype=_ROW)
    rows["count"] = len(PING_COLUMNS)
    for i, width in enumerate((16, 8, 8, 8, 4, 8, 8)):
        rows[f"l{i}"] = width
    ids = np.frombuffer(b"".join(u.bytes for u in device_ids), dtype="V16")
    rows["device_id"] = ids[pings.device[order]]
    rows["ts"] = np.round((pings.ts[order] - _PG_EPOCH_S) * 1e6).astype(np.int64)
    rows["received_at"] = np.round((pings.received[order] - _PG_EPOCH_S) * 1e6).astype(np.int64)
    rows["lat"], rows["lng"] = lat, lng
    rows["accuracy_m"] = pings.accuracy[order]
    rows["cell"] = cells_of(lat, lng, resolution).view(np.int64)
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + rows.tobytes() + b"\xff\xff"
