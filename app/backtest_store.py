"""What a backtest reads of a past period, a chunk of devices at a time: the devices, their pings
(as arrays), their customers' signals, visits and the pushes they had before the period.

One rule: only reads, a bounded number of devices at a time, each query walking an index per
device (`pings (device_id, ts)`, `signals (device_id, ts)`, `deliveries (device_id, created_at)`,
`visits (customer_key, arrived_at)`), never a sort of the period's pings: a chunk's pings come
out by device and are put in batch order here, in numpy.

Pings are the bulk (a week of 10,000 devices is millions of rows), so they travel as binary
COPY and are decoded as one numpy record array: every column fixed-width and non-null, so each
row has the same layout. That is several times cheaper, on both sides, than a record per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from uuid import UUID

import asyncpg
import numpy as np
from numpy.typing import NDArray

from app.prediction import HISTORY_LENGTH
from campaigns import devices as device_store
from campaigns.decide import PastPush
from campaigns.devices import Device
from customers.model import Signal
from customers.store import customer_key, signal_of
from geo.predict import Visit
from geo.store import Connection

# PostgreSQL's binary timestamps count microseconds from 2000-01-01 UTC.
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_US = int((PG_EPOCH - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000

# One row of PINGS in binary COPY: a field count, then each field's length and value.
_PING_FIELDS = (("device", ">i4"), ("received_at", ">i8"), ("ts", ">i8"), ("lat", ">f8"),
                ("lng", ">f8"), ("accuracy", ">f8"), ("cell", ">i8"))
PING_ROW = np.dtype([("count", ">i2"), *(
    part for i, (name, kind) in enumerate(_PING_FIELDS)
    for part in ((f"length{i}", ">i4"), (name, kind)))])
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"

# `device` is the device's position in $1 (from 1); a missing accuracy is NaN. The time bounds
# walk the index; `received_at` then picks the batches the period received. `OFFSET 0` keeps
# each lateral subquery a walk of one device's index range (pulled up, it may be planned as a
# join over the whole table).
PINGS = """
SELECT d.n::int4, p.received_at, p.ts, p.lat, p.lng, coalesce(p.accuracy_m::float8, 'NaN'),
       p.cell
FROM unnest($1::uuid[]) WITH ORDINALITY AS d (id, n)
CROSS JOIN LATERAL (
    SELECT received_at, ts, lat, lng, accuracy_m, cell FROM pings
    WHERE device_id = d.id AND ts >= $2 AND ts < $3 AND received_at >= $4 AND received_at < $5
    OFFSET 0
) AS p
"""
DEVICES = f"""
SELECT {device_store.DEVICE_COLUMNS} FROM devices
WHERE id > coalesce($1, '00000000-0000-0000-0000-000000000000'::uuid) ORDER BY id LIMIT $2
"""
# The attributes `customers.store.signal_of` reads (a test holds it to that): taken out of the
# jsonb by PostgreSQL, which spares decoding every signal's whole attributes in Python.
SIGNAL_ATTRIBUTES = ("category", "product_id", "store_id", "amount", "query")
# The customers' signals, all their devices (a device without a customer id alone), with when
# each was received: a replayed batch sees only what had arrived by then.
SIGNALS = """
WITH chunk AS (SELECT id, customer_id FROM devices WHERE id = any($1::uuid[])),
members AS (
    SELECT id, NULL::text AS customer_id FROM chunk WHERE customer_id IS NULL
    UNION ALL
    SELECT d.id, d.customer_id FROM devices d
    WHERE d.customer_id IN (SELECT customer_id FROM chunk WHERE customer_id IS NOT NULL)
)
SELECT coalesce(m.customer_id, 'device:' || m.id::text) AS customer, s.ts, s.kind,
       s.received_at, s.attributes ->> 'category' AS category,
       s.attributes ->> 'product_id' AS product_id, s.attributes ->> 'store_id' AS store_id,
       s.attributes ->> 'amount' AS amount, s.attributes ->> 'query' AS query
FROM members m
CROSS JOIN LATERAL (
    SELECT ts, kind, attributes, received_at FROM signals
    WHERE device_id = m.id AND ts > $2 AND ts <= $3 AND received_at <= $3
    OFFSET 0
) AS s
ORDER BY 1, s.ts
"""
# The latest visits recorded before the period (the model's history reaches back that far),
# then every visit recorded during it, with when it was recorded.
VISITS = """
SELECT customer_key, place_id, arrived_at, departed_at, lat, lng, created_at FROM (
    SELECT customer_key, place_id, arrived_at, departed_at, lat, lng, created_at,
           row_number() OVER (PARTITION BY customer_key ORDER BY arrived_at DESC) AS r
    FROM visits WHERE customer_key = any($1::text[]) AND created_at < $2
) AS before WHERE r <= $4
UNION ALL
SELECT customer_key, place_id, arrived_at, departed_at, lat, lng, created_at FROM visits
WHERE customer_key = any($1::text[]) AND created_at >= $2 AND created_at < $3
ORDER BY 1, 3
"""
# What the caps count at the start of the period: the pushes queued or sent before it.
PUSHES = """
SELECT device_id, campaign_id, fence_id, store_id, created_at FROM deliveries
WHERE device_id = any($1::uuid[]) AND status IN ('queued', 'sending', 'sent')
  AND created_at >= $2 AND created_at < $3
ORDER BY device_id, created_at
"""


@dataclass
class PingArrays:
    """A chunk's pings in batch order: by device, then by arrival, then by time."""

    device: NDArray[np.int32]  # the device's position in the chunk (from 0)
    received_at: NDArray[np.int64]  # PostgreSQL microseconds
    ts: NDArray[np.int64]
    lat: NDArray[np.float64]
    lng: NDArray[np.float64]
    accuracy: NDArray[np.float64]  # NaN when the ping had none
    cell: NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.device)


class StoredSignals:
    """One customer's signals in time order, with when each arrived. Each is parsed into a
    `Signal` the first time the replay asks for this customer's: many customers make no moment
    a campaign answers, and need none."""

    __slots__ = ("_rows", "_signals", "at", "received_at")

    def __init__(self) -> None:
        self.at: list[datetime] = []
        self.received_at: list[datetime] = []
        self._rows: list[asyncpg.Record] = []
        self._signals: list[Signal] | None = None

    def add(self, row: asyncpg.Record) -> None:
        """One SIGNALS row, the next in time."""
        self.at.append(row["ts"])
        self.received_at.append(row["received_at"])
        self._rows.append(row)

    @property
    def signals(self) -> list[Signal]:
        if self._signals is None:
            self._signals = [
                signal_of(r["ts"], r["kind"],
                          {k: r[k] for k in SIGNAL_ATTRIBUTES if r[k] is not None})
                for r in self._rows]
            self._rows = []
        return self._signals


@dataclass
class StoredVisit:
    visit: Visit
    recorded_at: datetime


def datetimes(micros: NDArray[np.int64]) -> list[datetime]:
    """PostgreSQL microsecond timestamps as aware datetimes. Exact: a Unix time in seconds as a
    double is within 0.12 µs of the true value until 2106, and `fromtimestamp` rounds to the
    nearest microsecond."""
    seconds = ((micros + _PG_EPOCH_US) / 1e6).tolist()
    return list(map(datetime.fromtimestamp, seconds, repeat(UTC, len(seconds))))


def pg_micros(at: datetime) -> int:
    return (at - PG_EPOCH) // timedelta(microseconds=1)


def decode_pings(data: bytes) -> PingArrays:
    """A binary COPY of PINGS as arrays in batch order."""
    if not data.startswith(_COPY_SIGNATURE):
        raise ValueError("not a binary COPY stream")
    extension = int.from_bytes(data[15:19], "big")
    start = 19 + extension
    body = len(data) - start - 2  # the trailer is a field count of -1
    if body % PING_ROW.itemsize or data[-2:] != b"\xff\xff":
        raise ValueError("a binary COPY row of PINGS does not have the expected layout")
    rows = np.frombuffer(data, dtype=PING_ROW, offset=start, count=body // PING_ROW.itemsize)
    widths = [np.dtype(kind).itemsize for _, kind in _PING_FIELDS]
    if len(rows) and not (
        bool(np.all(rows["count"] == len(_PING_FIELDS)))
        and all(bool(np.all(rows[f"length{i}"] == w)) for i, w in enumerate(widths))
    ):
        raise ValueError("a binary COPY row of PINGS does not have the expected layout")
    order = np.lexsort((rows["ts"], rows["received_at"], rows["device"]))
    rows = rows[order]
    return PingArrays(
        device=rows["device"].astype(np.int32) - 1,
        received_at=rows["received_at"].astype(np.int64),
        ts=rows["ts"].astype(np.int64),
        lat=rows["lat"].astype(np.float64),
        lng=rows["lng"].astype(np.float64),
        accuracy=rows["accuracy"].astype(np.float64),
        cell=rows["cell"].astype(np.int64).view(np.uint64),
    )


async def devices_after(conn: Connection, after: UUID | None, limit: int) -> list[Device]:
    """The next `limit` devices by id (keyset pages: `after` is the last id of the previous)."""
    return [device_store.device_of(r) for r in await conn.fetch(DEVICES, after, limit)]


async def pings_of(conn: Connection, device_ids: Sequence[UUID], ts_from: datetime,
                   ts_to: datetime, received_from: datetime, received_to: datetime) -> PingArrays:
    """The devices' pings received in [received_from, received_to) (whose `ts` is within
    [ts_from, ts_to), which the ping rules guarantee for a wide enough range)."""
    parts: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        parts.append(chunk)

    await conn.copy_from_query(PINGS, list(device_ids), ts_from, ts_to, received_from,
                               received_to, output=keep, format="binary")
    return decode_pings(b"".join(parts))


async def signals_of(conn: Connection, device_ids: Sequence[UUID], since: datetime,
                     until: datetime) -> dict[str, StoredSignals]:
    """The signals in (since, until] of every customer of these devices, by customer key."""
    return signals_by_customer(await conn.fetch(SIGNALS, list(device_ids), since, until))


def signals_by_customer(rows: Sequence[asyncpg.Record]) -> dict[str, StoredSignals]:
    """SIGNALS rows as each customer's signals, in their order."""
    out: dict[str, StoredSignals] = {}
    for r in rows:
        held = out.get(r["customer"])
        if held is None:
            held = out[r["customer"]] = StoredSignals()
        held.add(r)
    return out


async def visits_of(conn: Connection, devices: Sequence[Device], start: datetime,
                    end: datetime) -> dict[str, list[StoredVisit]]:
    """The visits of these devices' customers: the latest recorded before `start`, and all
    those recorded in [start, end); by customer key, oldest arrival first."""
    keys = sorted({customer_key(d.customer_id, d.id) for d in devices})
    out: dict[str, list[StoredVisit]] = {}
    for r in await conn.fetch(VISITS, keys, start, end, HISTORY_LENGTH):
        visit = Visit(user_id=r["customer_key"], place_id=r["place_id"],
                      arrived_at=r["arrived_at"], departed_at=r["departed_at"], lat=r["lat"],
                      lng=r["lng"])
        out.setdefault(r["customer_key"], []).append(StoredVisit(visit, r["created_at"]))
    return out


async def pushes_before(conn: Connection, device_ids: Sequence[UUID], since: datetime,
                        start: datetime) -> dict[UUID, list[PastPush]]:
    """The pushes queued or sent to these devices in [since, start), by device, oldest first."""
    out: dict[UUID, list[PastPush]] = {}
    for r in await conn.fetch(PUSHES, list(device_ids), since, start):
        out.setdefault(r["device_id"], []).append(PastPush(
            campaign_id=r["campaign_id"], fence_id=r["fence_id"], store_id=r["store_id"],
            at=r["created_at"]))
    return out
