"""The context engine's shell on a real PostgreSQL: a customer's signals read across their
devices (one query), device-only customers, attributes parsed; and the service's purchase model,
which keeps the prior until the stored signals hold enough purchases, then is refitted on them.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from app.db import init_connection, open_pool
from app.intent import IntentModel
from customers import store as customer_store
from geo import store as geo_store

NOW = datetime(2026, 6, 17, 10, 0, tzinfo=UTC)

INSERT_DEVICE = """
INSERT INTO devices (id, token_hash, platform, customer_id, consent_location, consent_marketing)
VALUES ($1, $2, 'android', $3, true, true)
"""


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    try:
        yield conn
    finally:
        await conn.close()


async def device(db: asyncpg.Connection, customer_id: str | None = None) -> UUID:
    ident = uuid4()
    await db.execute(INSERT_DEVICE, ident, ident.bytes, customer_id)
    return ident


async def signals(db: asyncpg.Connection, device_id: UUID,
                  *items: tuple[str, timedelta, dict[str, str]]) -> None:
    await geo_store.copy_signals(db, [(device_id, NOW - before, kind, attributes, NOW)
                                      for kind, before, attributes in items])


async def test_a_customer_s_signals_come_from_all_their_devices_in_time_order(
        db: asyncpg.Connection) -> None:
    phone, tablet = await device(db, "C-1"), await device(db, "C-1")
    stranger = await device(db, "C-2")
    await signals(db, phone, ("search", timedelta(minutes=30), {"query": "tv"}))
    await signals(db, tablet, ("cart_add", timedelta(minutes=10), {"category": "electronics.tv"}))
    await signals(db, stranger, ("purchase", timedelta(minutes=5), {"amount": "9.90"}))

    got = await customer_store.customer_signals(db, "C-1", None, NOW)

    assert [(s.kind, s.query, s.category) for s in got] == [
        ("search", "tv", None), ("cart_add", None, "electronics.tv")]


async def test_a_device_without_a_customer_id_is_its_own_customer(
        db: asyncpg.Connection) -> None:
    alone = await device(db)
    named = await device(db, "C-3")
    await signals(db, alone, ("search", timedelta(minutes=3), {}))
    await signals(db, named, ("search", timedelta(minutes=2), {}))

    own = await customer_store.signals_of_key(db, f"device:{alone}", NOW)
    named_by_device = await customer_store.signals_of_key(db, f"device:{named}", NOW)
    unknown = await customer_store.signals_of_key(db, "nobody", NOW)

    assert ([s.at for s in own or []], named_by_device, unknown) == (
        [NOW - timedelta(minutes=3)], None, None)


CASES = [
    pytest.param({"amount": "24.90", "store_id": "7d0e6a4e-3b0c-4a4f-9a57-0d0b3f7f2a10"},
                 (24.9, UUID("7d0e6a4e-3b0c-4a4f-9a57-0d0b3f7f2a10")),
                 id="amount and store id are parsed"),
    pytest.param({"amount": "-1", "store_id": "rue-cler"}, (None, None),
                 id="unreadable amount and store id are left out, not trusted"),
]


@pytest.mark.parametrize(("attributes", "parsed"), CASES)
def test_stored_attributes_are_parsed_into_the_signal(attributes: dict[str, Any],
                                                       parsed: tuple[Any, Any]) -> None:
    signal = customer_store.signal_of(NOW, "purchase", attributes)

    assert (signal.amount, signal.store_id) == parsed


async def test_signals_older_than_the_window_or_after_now_are_not_read(
        db: asyncpg.Connection) -> None:
    me = await device(db, "C-4")
    await signals(db, me, ("search", customer_store.CONTEXT_WINDOW + timedelta(hours=1), {}),
                  ("search", timedelta(hours=1), {}), ("search", -timedelta(minutes=1), {}))

    got = await customer_store.customer_signals(db, "C-4", None, NOW)

    assert [s.at for s in got] == [NOW - timedelta(hours=1)]


async def shop_history(db: asyncpg.Connection, customers: int, buyers_share: float) -> None:
    """Ten days of a shop: everyone views; a share adds to cart and mostly buys within hours."""
    rng = random.Random(7)
    for c in range(customers):
        me = await device(db, f"S-{c}")
        items: list[tuple[str, timedelta, dict[str, str]]] = []
        for day in range(1, 10):
            at = timedelta(days=day, hours=rng.uniform(0, 8))
            items.append(("product_view", at, {"category": "cheese.soft"}))
            if rng.random() < buyers_share:
                items.append(("cart_add", at - timedelta(minutes=5), {"category": "cheese.soft"}))
                if rng.random() < 0.8:
                    items.append(("purchase", at - timedelta(hours=2), {"amount": "12.00"}))
        await signals(db, me, *items)


async def refitted(database_url: str) -> tuple[bool, IntentModel]:
    """The service's model after one refit at NOW on what is stored."""
    pool = await open_pool(database_url, min_size=1, max_size=2)
    try:
        model = IntentModel()
        return await model.refit(pool, NOW), model
    finally:
        await pool.close()


async def test_the_model_stays_the_prior_until_purchases_are_stored(
        db: asyncpg.Connection, database_url: str) -> None:
    await shop_history(db, customers=4, buyers_share=0.3)

    changed, model = await refitted(database_url)

    assert (changed, model.model.name, model.fitted_at) == (False, "prior", None)
    assert "kept the prior" in model.last_refit


async def test_with_enough_purchases_the_model_is_refitted_on_the_shop_s_own_signals(
        db: asyncpg.Connection, database_url: str) -> None:
    await shop_history(db, customers=60, buyers_share=0.5)

    changed, model = await refitted(database_url)

    assert (changed, model.model.name, model.fitted_at) == (True, "fitted", NOW), \
        model.last_refit
