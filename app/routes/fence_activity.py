"""Enters, dwells and exits per day for each fence of a store (`GET /v1/reports/fences`), the
days being the store's: the console charts a fence's from this."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from litestar import get
from litestar.params import Parameter, QueryParameter

from app.auth import Principal, admits
from geo import store as geo_store
from geo.activity import FenceActivity, fence_activity
from geo.errors import InvalidField, NotFound

DEFAULT_DAYS = 14
MAX_DAYS = 92
EARLIEST, LATEST = date(1970, 1, 1), date(9999, 12, 1)


class FenceReport(msgspec.Struct, kw_only=True, frozen=True):
    store_id: UUID
    timezone: str
    first: date = msgspec.field(name="from")
    last: date = msgspec.field(name="to")
    fences: list[FenceActivity]


def day_of(name: str, text: str | None) -> date | None:
    """A `YYYY-MM-DD` query value, named in the error when it is not one (or out of range)."""
    if text is None:
        return None
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise InvalidField(name, "must be a date, YYYY-MM-DD")
    if not EARLIEST <= day <= LATEST:
        raise InvalidField(name, f"must be between {EARLIEST} and {LATEST}")
    return day


@get("/v1/reports/fences", operation_id="getFenceActivity", tags=["reports"],
     opt=admits("campaign_manager", "store_manager", action="read fence activity"))
async def fences_report(
    store_id: Annotated[UUID, Parameter(description="the store whose fences to count")],
    pool: asyncpg.Pool, principal: Principal, now: datetime,
    since: Annotated[str | None, QueryParameter(name="from", format="date", description=(
        "the first day (in the store's time zone); default: 13 days before `to`"))] = None,
    until: Annotated[str | None, QueryParameter(name="to", format="date", description=(
        "the last day, included (in the store's time zone); default: today there"))] = None,
    geofence_id: Annotated[UUID | None, Parameter(description=(
        "only this fence of the store"))] = None,
) -> FenceReport:
    """Each fence of the store (or one) with its enters, dwells and exits on every day from
    `from` to `to` (at most 92 days), empty days included, days running midnight to midnight
    on the store's wall clock. Counts of presence events, not of people; events of deleted
    fences are not counted."""
    principal.require_store(store_id)
    first, last = day_of("from", since), day_of("to", until)
    async with pool.acquire() as conn:
        store = await geo_store.get_store(conn, store_id)
        fences = await geo_store.store_fences(conn, store_id)
        if geofence_id is not None:
            fences = [f for f in fences if f.id == geofence_id]
            if not fences:
                raise NotFound("geofence", geofence_id)
        last = last or now.astimezone(ZoneInfo(store.timezone)).date()
        first = first or last - timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            raise InvalidField("from", "must not be after `to`")
        if (last - first).days + 1 > MAX_DAYS:
            raise InvalidField("to", f"the period may span at most {MAX_DAYS} days")
        activity = await fence_activity(conn, store_id, store.timezone, fences, first, last,
                                        geofence_id)
    return FenceReport(store_id=store_id, timezone=store.timezone, first=first, last=last,
                       fences=activity)
