"""Reading a transactions CSV (`customer_id,ts,amount[,store_id]`) for the value matrix, a chunk
of lines at a time.

One rule: every row is checked whole before any is stored, and the first bad one is reported by
its row number (the header is row 1) and column, with the reason. Pure: the caller hands in the
lines and `now`; nothing here stores anything.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from uuid import UUID

from customers.value_store import Row

HEADER = ("customer_id", "ts", "amount")
OPTIONAL = ("store_id",)
MAX_CUSTOMER_ID = 200
MAX_AMOUNT = Decimal("1e12")


class InvalidTransaction(ValueError):
    def __init__(self, row: int, column: str, reason: str) -> None:
        super().__init__(f"row {row}, {column}: {reason}")
        self.row, self.column, self.reason = row, column, reason


def columns_of(header_line: str) -> tuple[str, ...]:
    """The header's columns: the three required ones in order, then optionally store_id."""
    names = tuple(c.strip() for c in next(csv.reader([header_line]), []))
    if names[:3] != HEADER or any(n not in OPTIONAL for n in names[3:]) or len(names) > 4:
        raise InvalidTransaction(1, "header", f"expected customer_id,ts,amount[,store_id], got "
                                              f"{','.join(names)[:200]}")
    return names


def parse_rows(lines: Sequence[str], first_row: int, columns: Sequence[str],
               now: datetime) -> list[Row]:
    """The rows of `lines` (row `first_row` first); blank lines are skipped."""
    rows: list[Row] = []
    for offset, fields in enumerate(csv.reader(lines)):
        row = first_row + offset
        if not fields or fields == [""]:
            continue
        if len(fields) != len(columns):
            raise InvalidTransaction(row, "row", f"expected {len(columns)} fields, got "
                                                 f"{len(fields)}")
        rows.append(_row(row, fields, now))
    return rows


def _row(row: int, fields: Sequence[str], now: datetime) -> Row:
    customer = fields[0].strip()
    if not customer or len(customer) > MAX_CUSTOMER_ID or "\x00" in customer:
        raise InvalidTransaction(row, "customer_id",
                                 f"must be 1 to {MAX_CUSTOMER_ID} characters")
    try:
        ts = datetime.fromisoformat(fields[1].strip())
    except ValueError:
        raise InvalidTransaction(row, "ts", f"{fields[1][:40]!r} is not an RFC 3339 "
                                            "timestamp") from None
    if ts.tzinfo is None:
        raise InvalidTransaction(row, "ts", "must carry a time zone offset (e.g. Z)")
    if ts > now:
        raise InvalidTransaction(row, "ts", "is in the future")
    try:
        amount = Decimal(fields[2].strip())
    except InvalidOperation:
        raise InvalidTransaction(row, "amount", f"{fields[2][:40]!r} is not a number") from None
    if not amount.is_finite() or not math.isfinite(float(amount)) or amount < 0 \
            or amount >= MAX_AMOUNT:
        raise InvalidTransaction(row, "amount", "must be a number at least 0 and below 1e12")
    store: UUID | None = None
    if len(fields) > 3 and fields[3].strip():
        try:
            store = UUID(fields[3].strip())
        except ValueError:
            raise InvalidTransaction(row, "store_id", "must be a UUID or empty") from None
    return customer, ts, amount.quantize(Decimal("0.01")), store
