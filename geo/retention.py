"""Retention of raw device data: pings and signals older than a cut-off are deleted.

One rule: each statement deletes at most `batch` rows and commits alone, and the loop yields to
the event loop between statements, so a purge never holds a lock for long and never makes
ingest wait behind it, however much has piled up.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

import msgspec

from geo.store import Connection

Table = Literal["pings", "signals"]
TABLES: tuple[Table, ...] = ("pings", "signals")

# The rows are chosen by physical address (the tables have no key) through the `ts` index, and
# locked as they are chosen; rows another transaction holds (a device being erased) are skipped
# and left for the next pass rather than waited for.
_PURGE = """
DELETE FROM {table} WHERE ctid = any(array(
    SELECT ctid FROM {table} WHERE ts < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))
"""
PURGE_PINGS = _PURGE.format(table="pings")
PURGE_SIGNALS = _PURGE.format(table="signals")
_PURGES: dict[Table, str] = {"pings": PURGE_PINGS, "signals": PURGE_SIGNALS}


class Purged(msgspec.Struct, frozen=True):
    """What one pass deleted from one table, and in how many statements (the table is named as
    the metric labels it; other packages purge their own tables too, e.g. webhook events)."""

    table: str
    rows: int
    statements: int


async def purge(conn: Connection, table: Table, before: datetime, *, batch: int) -> Purged:
    """Delete `table`'s rows with `ts` before `before`, `batch` rows per statement, until a
    statement finds fewer than `batch`. `conn` must not be inside a transaction: each statement
    has to commit on its own for its locks to be released."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if conn.is_in_transaction():
        raise RuntimeError("purge commits batch by batch; call it outside a transaction")
    rows = statements = 0
    while True:
        status = await conn.execute(_PURGES[table], before, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        rows, statements = rows + deleted, statements + 1
        if deleted < batch:
            return Purged(table, rows, statements)
        await asyncio.sleep(0)


async def purge_device_data(conn: Connection, before: datetime, *,
                            batch: int) -> list[Purged]:
    """Purge pings, then signals, older than `before`."""
    return [await purge(conn, table, before, batch=batch) for table in TABLES]
