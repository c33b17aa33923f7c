"""Retention of raw device data: pings and signals older than a cut-off are deleted.

One rule: each statement deletes at most `batch` rows and commits alone, and the loop yields to
the event loop between statements, so a purge never holds a lock for long and never makes
ingest wait behind it, however much has piled up.

Pings are partitioned by UTC day (`geo.partitions`): a day that ends at or before the cut-off is
dropped whole, in one short statement whatever it holds (or, when ping batches keep the table
busy past the drop's short lock timeout, at the next pass); rows are deleted one batch at a time
only where old and kept rows live side by side — the day the cut-off falls in, and the DEFAULT
partition (pings of a day that had no partition).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec

from geo.partitions import DEFAULT, bounds, day_partitions, drop_day, partition_name
from geo.store import Connection

Table = Literal["pings", "signals"]
TABLES: tuple[Table, ...] = ("pings", "signals")

# The rows are chosen by physical address (the tables have no key) through the `ts` index, and
# locked as they are chosen; rows another transaction holds (a device being erased) are skipped
# and left for the next pass rather than waited for. A physical address is one table's: for
# pings the statement runs on one partition at a time.
_PURGE = """
DELETE FROM "{table}" WHERE ctid = any(array(
    SELECT ctid FROM "{table}" WHERE ts < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))
"""


class Purged(msgspec.Struct, frozen=True):
    """What one pass deleted from one table: rows in how many statements, and whole days
    dropped (pings only; their rows are not counted, that would mean reading them). The table is
    named as the metric labels it; other packages purge their own tables too (webhook events)."""

    table: str
    rows: int
    statements: int
    days_dropped: int = 0


async def purge(conn: Connection, table: Table, before: datetime, *, batch: int) -> Purged:
    """Delete `table`'s rows with `ts` before `before`, `batch` rows per statement, until a
    statement finds fewer than `batch` — for pings, after dropping the days that end by
    `before`, and only in the day `before` falls in and the DEFAULT partition. `conn` must not be
    inside a transaction: each statement has to commit on its own for its locks to be
    released."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if conn.is_in_transaction():
        raise RuntimeError("purge commits batch by batch; call it outside a transaction")
    if table == "signals":
        rows, statements = await _delete_rows(conn, "signals", before, batch)
        return Purged(table, rows, statements)
    days = await day_partitions(conn)
    dropped = 0
    for day in (day for day in days if bounds(day)[1] <= before):
        try:
            await drop_day(conn, day)
            dropped += 1
        except asyncpg.LockNotAvailableError:  # ping batches kept it busy: the next pass
            continue
    boundary = [partition_name(day) for day in days if bounds(day)[0] < before < bounds(day)[1]]
    rows = statements = 0
    for leaf in [DEFAULT, *boundary]:
        deleted, run = await _delete_rows(conn, leaf, before, batch)
        rows, statements = rows + deleted, statements + run
    return Purged(table, rows, statements, dropped)


async def _delete_rows(conn: Connection, table: str, before: datetime,
                       batch: int) -> tuple[int, int]:
    """Rows of one table (not a partitioned one) with `ts` before `before`, a batch per
    statement until one finds fewer; the rows deleted and the statements run."""
    rows = statements = 0
    purge_sql = _PURGE.format(table=table)
    while True:
        status = await conn.execute(purge_sql, before, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        rows, statements = rows + deleted, statements + 1
        if deleted < batch:
            return rows, statements
        await asyncio.sleep(0)


async def purge_device_data(conn: Connection, before: datetime, *,
                            batch: int) -> list[Purged]:
    """Purge pings, then signals, older than `before`."""
    return [await purge(conn, table, before, batch=batch) for table in TABLES]
