"""SQL for the context engine: a customer's signals, across all their devices.

One rule: a customer is the `customer_id` its devices give (all of them together); a device
without one is its own customer, keyed `device:<uuid>` — the same key visits are stored under.
Signals are read for one customer per ping batch (never per ping), newest first up to a bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from customers.model import Signal
from geo.store import Connection

DEVICE_KEY_PREFIX = "device:"
# How far back a customer's context looks, and how many signals it reads at most: intent decays
# over days (the slowest half-life is a few days), so older or more signals change nothing.
CONTEXT_WINDOW = timedelta(days=30)
CONTEXT_SIGNALS = 1000

# Per device of the customer, newest first along (device_id, ts), then merged: the plan stays an
# index range scan per device whatever the parameters. (A single `device_id = any(...)` scan let
# PostgreSQL's generic plan walk the `ts` index of every customer's recent signals, filtering by
# device: 2 ms for 15 k signals in `make bench`, and growing with the whole shop's traffic.)
CUSTOMER_SIGNALS = """
SELECT ts, kind, attributes FROM (
    SELECT s.ts, s.kind, s.attributes
    FROM (SELECT id FROM devices WHERE $1::text IS NOT NULL AND customer_id = $1
          UNION SELECT $2::uuid WHERE $2::uuid IS NOT NULL) AS d (id)
    CROSS JOIN LATERAL (
        SELECT ts, kind, attributes FROM signals
        WHERE device_id = d.id AND ts > $3 AND ts <= $4
        ORDER BY ts DESC LIMIT $5
    ) AS s
    ORDER BY s.ts DESC LIMIT $5
) recent ORDER BY ts
"""
# A customer is known by a device that gives its id or by imported transactions (a shop's
# past buyer who has not installed the app yet still has a value worth reading).
CUSTOMER_EXISTS = """
SELECT exists(SELECT 1 FROM devices WHERE customer_id = $1)
    OR exists(SELECT 1 FROM transactions WHERE customer_id = $1)
"""
DEVICE_OF_KEY = "SELECT customer_id FROM devices WHERE id = $1"
# Every customer's signals of a period, grouped by customer and in time order: what a refit of
# the purchase model learns from.
ALL_SIGNALS = """
SELECT coalesce(d.customer_id, 'device:' || d.id::text) AS customer, s.ts, s.kind, s.attributes
FROM signals s JOIN devices d ON d.id = s.device_id
WHERE s.ts > $1 AND s.ts <= $2
ORDER BY 1, s.ts
"""


def customer_key(customer_id: str | None, device_id: UUID) -> str:
    """Whose context this is: the customer the app names, else the device alone."""
    return customer_id or f"{DEVICE_KEY_PREFIX}{device_id}"


def device_of_key(key: str) -> UUID | None:
    """The device a `device:<uuid>` key stands for (None for a customer id)."""
    if not key.startswith(DEVICE_KEY_PREFIX):
        return None
    try:
        return UUID(key.removeprefix(DEVICE_KEY_PREFIX))
    except ValueError:
        return None


def signal_of(at: datetime, kind: str, attributes: Mapping[str, Any]) -> Signal:
    """A stored signal with its known attributes parsed (they were checked on the way in;
    anything unreadable is left out rather than trusted)."""
    amount: float | None = None
    if "amount" in attributes:
        try:
            value = float(attributes["amount"])
            amount = value if math.isfinite(value) and value >= 0 else None
        except (TypeError, ValueError):
            amount = None
    store_id: UUID | None = None
    if "store_id" in attributes:
        try:
            store_id = UUID(str(attributes["store_id"]))
        except ValueError:
            store_id = None
    return Signal(
        at=at, kind=kind, category=attributes.get("category") or None,
        product_id=attributes.get("product_id") or None, store_id=store_id, amount=amount,
        query=attributes.get("query") or None,
    )


def _signal(row: asyncpg.Record) -> Signal:
    return signal_of(row["ts"], row["kind"], row["attributes"])


async def customer_signals(conn: Connection, customer_id: str | None, device_id: UUID | None,
                           now: datetime) -> list[Signal]:
    """The customer's signals (all devices naming `customer_id`, or the one device) of the
    context window up to `now`, oldest first; the newest `CONTEXT_SIGNALS` when there are
    more."""
    rows = await conn.fetch(CUSTOMER_SIGNALS, customer_id, device_id, now - CONTEXT_WINDOW, now,
                            CONTEXT_SIGNALS)
    return [_signal(r) for r in rows]


async def signals_of_key(conn: Connection, key: str, now: datetime) -> list[Signal] | None:
    """The signals of the customer a key names (none for a customer known only by imported
    transactions), or None when the key names nobody."""
    device_id = device_of_key(key)
    if device_id is not None:
        row = await conn.fetchrow(DEVICE_OF_KEY, device_id)
        if row is None or row["customer_id"] is not None:
            return None  # unknown, or that device is part of a named customer
        return await customer_signals(conn, None, device_id, now)
    if not await conn.fetchval(CUSTOMER_EXISTS, key):
        return None
    return await customer_signals(conn, key, None, now)


async def all_signals(conn: Connection, since: datetime,
                      now: datetime) -> dict[str, list[Signal]]:
    """Every customer's signals in (since, now], oldest first per customer."""
    histories: dict[str, list[Signal]] = {}
    for row in await conn.fetch(ALL_SIGNALS, since, now):
        histories.setdefault(row["customer"], []).append(_signal(row))
    return histories
