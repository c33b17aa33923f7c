"""How busy each fence of a store was: enters, dwells and exits per day, the days being the
store's own (midnight to midnight on the wall clock of its time zone, DST days included).

One rule: these are counts of presence events, never of people; nothing here can say who, so
unlike the heat of pings no floor is needed (a day with one enter says one enter).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

import msgspec

from geo.model import Geofence
from geo.store import Connection

# PostgreSQL computes each event's local day; the UTC range around it (a day wider on each
# side than any zone's offset) only lets the (store_id, at) index narrow the scan.
_EVENTS_PER_DAY = """
SELECT fence_id, (at AT TIME ZONE $2)::date AS day, kind, count(*) AS n
FROM geo_events
WHERE store_id = $1 AND at >= $3 AND at < $4
  AND (at AT TIME ZONE $2)::date BETWEEN $5 AND $6
  AND ($7::uuid IS NULL OR fence_id = $7)
GROUP BY fence_id, day, kind
"""
KINDS = {"entered": "enters", "dwelled": "dwells", "exited": "exits"}


class DayActivity(msgspec.Struct, kw_only=True, frozen=True):
    date: date
    enters: int
    dwells: int
    exits: int


class FenceActivity(msgspec.Struct, kw_only=True, frozen=True):
    geofence_id: UUID
    name: str
    enters: int
    dwells: int
    exits: int
    days: list[DayActivity]


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def per_day(fences: Sequence[Geofence], rows: Iterable[tuple[UUID, date, str, int]],
            first: date, last: date) -> list[FenceActivity]:
    """Every fence of `fences` with every day from `first` to `last`, zeros included (a chart
    wants the empty days too); rows of fences not in `fences` (deleted ones) are left out."""
    counts: dict[tuple[UUID, date], dict[str, int]] = {}
    for fence_id, day, kind, n in rows:
        counts.setdefault((fence_id, day), {})[KINDS[kind]] = n
    out = []
    for fence in fences:
        days = []
        for day in days_between(first, last):
            c = counts.get((fence.id, day), {})
            days.append(DayActivity(date=day, enters=c.get("enters", 0),
                                    dwells=c.get("dwells", 0), exits=c.get("exits", 0)))
        out.append(FenceActivity(geofence_id=fence.id, name=fence.name,
                                 enters=sum(d.enters for d in days),
                                 dwells=sum(d.dwells for d in days),
                                 exits=sum(d.exits for d in days), days=days))
    return out


async def fence_activity(conn: Connection, store_id: UUID, timezone: str,
                         fences: Sequence[Geofence], first: date, last: date,
                         fence_id: UUID | None = None) -> list[FenceActivity]:
    """Enters, dwells and exits of `fences` (the store's) per local day from `first` to
    `last`, both included; only `fence_id`'s events when given."""
    start = datetime.combine(first - timedelta(days=1), time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=2), time(), tzinfo=UTC)
    rows = await conn.fetch(_EVENTS_PER_DAY, store_id, timezone, start, end, first, last,
                            fence_id)
    return per_day(fences, ((r["fence_id"], r["day"], r["kind"], r["n"]) for r in rows),
                   first, last)
