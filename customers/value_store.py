"""SQL for the value matrix: imported transactions written chunk by chunk, and every customer's
spend per purchase day read back for a refit.

One rule: a customer's purchases are their imported transactions plus their `purchase` signals
(a signal without an amount is a purchase of 0), keyed as elsewhere: the `customer_id` devices
give, else `device:<uuid>`. Days are UTC days. The refit reads them as a cursor, one customer at a
time, so it holds one History per customer and never every purchase at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

from customers.value import History, history_of
from geo.store import Connection

COLUMNS = ("customer_id", "ts", "amount", "store_id", "source", "created_at")
PURCHASE_DAYS = r"""
SELECT customer, day, sum(amount)::float8 AS amount FROM (
    SELECT customer_id AS customer, (ts AT TIME ZONE 'UTC')::date AS day, amount
    FROM transactions WHERE ts <= $1
    UNION ALL
    SELECT coalesce(d.customer_id, 'device:' || d.id::text), (s.ts AT TIME ZONE 'UTC')::date,
           CASE WHEN s.attributes->>'amount' ~ '^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$'
                THEN (s.attributes->>'amount')::numeric ELSE 0 END
    FROM signals s JOIN devices d ON d.id = s.device_id
    WHERE s.kind = 'purchase' AND s.ts <= $1
) p
GROUP BY customer, day ORDER BY customer, day
"""

Row = tuple[str, datetime, Decimal, UUID | None]


async def copy_transactions(conn: Connection, rows: Sequence[Row],
                            now: datetime) -> None:
    """Append imported transactions (the caller owns the transaction)."""
    await conn.copy_records_to_table(
        "transactions", columns=COLUMNS,
        records=[(c, ts, amount, store, "import", now) for c, ts, amount, store in rows])


async def purchase_histories(conn: Connection, until: datetime) -> dict[str, History]:
    """Every customer's History at `until`, from their purchases up to it."""
    out: dict[str, History] = {}
    current: str | None = None
    by_day: dict[date, float] = {}
    async with conn.transaction():  # a cursor lives in a transaction
        async for row in conn.cursor(PURCHASE_DAYS, until, prefetch=5000):
            if row["customer"] != current:
                if current is not None:
                    out[current] = history_of(by_day, until)
                current, by_day = row["customer"], {}
            by_day[row["day"]] = row["amount"]
    if current is not None:
        out[current] = history_of(by_day, until)
    return out
