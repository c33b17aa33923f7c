"""The distribution key on devices (migration 0012): the database computes each device's
`customer_key` exactly as `customers.store.customer_key` does, keeps it in step when the
customer changes, and refuses to have it written by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest

from customers.store import customer_key

INSERT_DEVICE = """
INSERT INTO devices (id, token_hash, platform, customer_id, consent_location, consent_marketing)
VALUES ($1, $2, 'android', $3, true, true)
"""
KEY_OF = "SELECT customer_key FROM devices WHERE id = $1"
DEVICE = UUID("6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


CASES = [
    ("a device with a customer is keyed by the customer's id", "C-77", "C-77"),
    ("a device without a customer is keyed by itself", None, f"device:{DEVICE}"),
]


@pytest.mark.parametrize(("customer_id", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_the_database_keys_a_device_as_python_does(
        db: asyncpg.Connection, customer_id: str | None, expected: str) -> None:
    await db.execute(INSERT_DEVICE, DEVICE, DEVICE.bytes, customer_id)

    stored = await db.fetchval(KEY_OF, DEVICE)

    assert (stored, customer_key(customer_id, DEVICE)) == (expected, expected)


async def test_a_sign_in_re_keys_the_device_and_a_sign_out_gives_it_its_own_key_back(
        db: asyncpg.Connection) -> None:
    device = uuid4()
    await db.execute(INSERT_DEVICE, device, device.bytes, None)
    keys = [await db.fetchval(KEY_OF, device)]
    for customer in ("C-1", None):
        await db.execute("UPDATE devices SET customer_id = $2 WHERE id = $1", device, customer)
        keys.append(await db.fetchval(KEY_OF, device))

    assert keys == [f"device:{device}", "C-1", f"device:{device}"]


async def test_the_key_cannot_be_written_by_hand(db: asyncpg.Connection) -> None:
    await db.execute(INSERT_DEVICE, DEVICE, DEVICE.bytes, "C-1")

    with pytest.raises(asyncpg.GeneratedAlwaysError):
        await db.execute("UPDATE devices SET customer_key = 'C-2' WHERE id = $1", DEVICE)
