"""The pings table's day partitions: which exist, creating one day's (with what the DEFAULT
partition already holds of that day), dropping one day's.

One rule: a day is a UTC day, [00:00 UTC, next 00:00 UTC), in a partition named `pings_pYYYYMMDD`;
which day to create or drop is always the caller's to say (the service asks its own clock), never
the database's `now()`.

Creating a day attaches a table built apart: it locks `pings` only against other schema changes
and the DEFAULT partition against writes, so ping batches carry on. Dropping a day needs an
exclusive lock on `pings`, which waits for the batches in flight while the ones arriving queue
behind it: it waits at most `DROP_LOCK_TIMEOUT`, then gives up
(`asyncpg.LockNotAvailableError`) and the caller tries again on its next pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from geo.store import Connection

PARENT = "pings"
DEFAULT = "pings_default"
LOCK_TIMEOUT = "2s"
DROP_LOCK_TIMEOUT = "200ms"
# Serializes partition creation across processes (any constant, the same in every process).
CREATE_LOCK_KEY = 0x70696E6773646179  # "pingsday"

_NAME = re.compile(r"^pings_p(\d{4})(\d{2})(\d{2})$")
_COLUMNS = "device_id, ts, lat, lng, accuracy_m, speed_mps, heading_deg, cell, received_at"

_CHILDREN = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'pings'::regclass
"""


def partition_name(day: date) -> str:
    return f"pings_p{day:%Y%m%d}"


def day_of(name: str) -> date | None:
    """The day a partition's name stands for; None for any other table (the DEFAULT one)."""
    match = _NAME.match(name)
    if match is None:
        return None
    return date(int(match[1]), int(match[2]), int(match[3]))


def bounds(day: date) -> tuple[datetime, datetime]:
    """The instants a day's partition holds: from its start (included) to the next (excluded)."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def days_from(at: datetime, ahead: int) -> list[date]:
    """The UTC day of `at` and the `ahead` days after it."""
    first = utc_day(at)
    return [first + timedelta(days=n) for n in range(ahead + 1)]


async def day_partitions(conn: Connection) -> list[date]:
    """The days that have a partition, oldest first."""
    days = (day_of(r["relname"]) for r in await conn.fetch(_CHILDREN))
    return sorted(d for d in days if d is not None)


async def create_day(conn: Connection, day: date) -> bool:
    """Create `day`'s partition unless it exists, moving into it the rows of that day the DEFAULT
    partition holds (it refuses a new partition while it holds any); True if created.

    The table is built apart and then attached, which locks `pings` only against schema changes
    (ingest carries on); the DEFAULT partition is locked against writes for the move and the
    check that it kept nothing of the day."""
    name = partition_name(day)
    start, end = bounds(day)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CREATE_LOCK_KEY)
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            return False
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute(f'CREATE TABLE "{name}" (LIKE {PARENT} INCLUDING DEFAULTS)')
        await conn.execute(f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute(
            f"""WITH moved AS (DELETE FROM {DEFAULT} WHERE ts >= $1 AND ts < $2
                               RETURNING {_COLUMNS})
                INSERT INTO "{name}" ({_COLUMNS}) SELECT {_COLUMNS} FROM moved""", start, end)
        await conn.execute(f"""ALTER TABLE {PARENT} ATTACH PARTITION "{name}"
                               FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')""")
    return True


async def create_days(conn: Connection, days: Iterable[date]) -> list[date]:
    """Create each day's partition that is missing; the days created."""
    return [day for day in days if await create_day(conn, day)]


async def drop_day(conn: Connection, day: date) -> None:
    """Drop `day`'s partition and every ping in it (nothing if it does not exist)."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
        await conn.execute(f'DROP TABLE IF EXISTS "{partition_name(day)}"')
