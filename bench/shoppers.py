"""The benchmarks' shoppers: who the simulated devices are as customers, what they did in the app
over the past days, and the campaigns aimed at them — so that the context engine does real work
on every batch that walks into a store.

One rule: everything is drawn from a seeded generator relative to one instant (`now`), so the
end-to-end benchmark (`bench.e2e`) and the in-process one (`bench.context`) build the same kind
of world and a run can be repeated exactly.

Customers: a fifth of the devices come in pairs sharing a `customer_id` (a phone and a tablet),
two fifths name a customer of their own and the rest are anonymous (each its own customer).
Histories: `SIGNALS_SHARE` of the devices have 20–300 signals over the past `HISTORY_DAYS` days,
in sessions of a few minutes across two to four categories: mostly product views and searches,
then cart adds, store look-ups and directions, checkouts and purchases (with an amount). A
quarter of those shoppers were active in the last two hours (so `buy`, `go` and `know` moments
happen), and the signals are written with COPY during set-up (the API takes only the last 24 h).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
import numpy as np

SIGNALS_SHARE = 0.4
SIGNALS_PER_SHOPPER = (20, 300)
HISTORY_DAYS = 14.0
RECENT_SHARE = 0.25  # of shoppers: a session within the last two hours
# Category paths under the bench's fence tags (grocery, fashion, cafe, pharmacy) and beyond.
CATEGORIES = (
    "grocery.fruit", "grocery.dairy", "grocery.bakery", "fashion.shoes", "fashion.women",
    "fashion.men.jackets", "cafe.coffee", "cafe.pastry", "pharmacy.care", "pharmacy.vitamins",
    "electronics.smartphone", "electronics.audio", "home.kitchen", "sports.running",
)
KINDS = ("product_view", "search", "cart_add", "store_locator", "directions", "checkout",
         "purchase")
KIND_WEIGHTS = (0.52, 0.2, 0.12, 0.05, 0.04, 0.035, 0.035)
QUERIES = ("best price", "how to make banana bread", "open now", "size 42", "gift ideas for mum",
           "organic", "waterproof", "near me")


def customer_ids(devices: int, run: str) -> list[str | None]:
    """Device index -> the `customer_id` it registers with (None: anonymous)."""
    out: list[str | None] = []
    for i in range(devices):
        slot = i % 10
        if slot < 2:
            out.append(f"bench-{run}-pair-{i // 10}")  # devices 10k and 10k+1 are one customer
        elif slot < 6:
            out.append(f"bench-{run}-solo-{i}")
        else:
            out.append(None)
    return out


def signal_records(device_ids: Sequence[uuid.UUID], store_ids: Sequence[str], now: datetime,
                   seed: int) -> list[tuple[Any, ...]]:
    """Rows for the `signals` table (device_id, ts, kind, attributes, received_at), oldest first
    per device; attributes is a dict, for the service's jsonb codec (else see `as_json_rows`)."""
    rng = np.random.default_rng(seed + 11)
    records: list[tuple[Any, ...]] = []
    kinds = np.array(KINDS)
    for device in device_ids:
        if rng.random() >= SIGNALS_SHARE:
            continue
        low, high = SIGNALS_PER_SHOPPER
        n = int(math.exp(rng.uniform(math.log(low), math.log(high))))
        interests = rng.choice(len(CATEGORIES), size=int(rng.integers(2, 5)), replace=False)
        sessions = max(1, n // int(rng.integers(5, 15)))
        ages = np.sort(rng.uniform(0.0, HISTORY_DAYS * 86_400.0, sessions))[::-1]
        if rng.random() < RECENT_SHARE:
            ages[-1] = rng.uniform(60.0, 7_200.0)
        session_of = np.sort(rng.integers(0, sessions, n))
        offsets = rng.uniform(0.0, 600.0, n)  # a session lasts up to ten minutes
        at_s = np.maximum(ages[session_of] - offsets, 1.0)
        drawn = kinds[rng.choice(len(KINDS), size=n, p=KIND_WEIGHTS)]
        for age, kind in sorted(zip(at_s.tolist(), drawn.tolist(), strict=True), reverse=True):
            category = CATEGORIES[int(rng.choice(interests))]
            attributes: dict[str, str] = {"category": category}
            if kind in ("product_view", "cart_add", "checkout", "purchase"):
                attributes["product_id"] = f"sku-{int(rng.integers(1, 5_000))}"
            if kind == "purchase":
                attributes["amount"] = f"{rng.uniform(3.0, 150.0):.2f}"
            if kind == "search":
                attributes["query"] = QUERIES[int(rng.integers(0, len(QUERIES)))]
            if kind in ("store_locator", "directions") and store_ids:
                attributes["store_id"] = store_ids[int(rng.integers(0, len(store_ids)))]
            ts = now - timedelta(seconds=age)
            records.append((device, ts, kind, attributes, ts))
    return records


def as_json_rows(records: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The same rows with attributes as jsonb's binary form, for a connection without the
    service's codecs (asyncpg's default jsonb codec takes text)."""
    return [(d, ts, k, msgspec.json.encode(a).decode(), r) for d, ts, k, a, r in records]


def campaign_bodies(store_ids: Sequence[str], now: datetime) -> list[dict[str, Any]]:
    """Active `enter` campaigns: three for everyone at one priority (any store, so every entry
    ends in exactly one delivery with or without the context; three tags of four; 100 flagship
    stores), worth different `value`s, so that most entries have two or three contenders and
    arbitration draws; and three with an audience above them, which only a moment's context can
    let through."""
    common: dict[str, Any] = {
        "schedule": {"starts_at": (now - timedelta(days=1)).isoformat(),
                     "ends_at": (now + timedelta(days=1)).isoformat()},
        "offer_ttl_seconds": 86_400,
        "caps": {"per_device": {"count": 10_000, "period_seconds": 86_400}},
        "status": "active",
    }
    bodies: list[dict[str, Any]] = [
        {"name": "any store", "trigger": {"kind": "enter"}, "priority": 0, "value": 1.0,
         "offer": {"title": "Welcome in", "body": "10 % off today", "data": {"sku": "any"}}},
        {"name": "daily needs",
         "trigger": {"kind": "enter", "tags": ["grocery", "cafe", "pharmacy"]},
         "priority": 0, "value": 3.0, "offer": {"title": "Fresh deal", "body": "Fruit -20 %",
                                                 "deep_link": "shop://offers/fruit"}},
        {"name": "flagships", "trigger": {"kind": "enter", "store_ids": list(store_ids[:100])},
         "priority": 0, "value": 2.0,
         "offer": {"title": "Flagship", "body": "A gift at the counter"}},
        {"name": "ready to buy", "trigger": {"kind": "enter"}, "priority": 30,
         "audience": {"micromoments": ["buy"]},
         "offer": {"title": "Your basket is waiting", "body": "Pick it up here, -5 %"}},
        {"name": "grocery intent", "trigger": {"kind": "enter", "tags": ["grocery"]},
         "priority": 20, "audience": {"categories": ["grocery"], "min_intent": 0.3},
         "offer": {"title": "Your usual groceries", "body": "Double points today"}},
        {"name": "likely buyers", "trigger": {"kind": "enter"}, "priority": 15,
         "audience": {"micromoments": ["go", "know"], "min_intent": 0.05},
         "offer": {"title": "Found it?", "body": "Ask us, we have it in stock"}},
    ]
    return [{**common, **body} for body in bodies]
