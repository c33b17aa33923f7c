"""Measurement, for campaign staff: a campaign's uplift against its holdout, and the global
control group against everyone else over a period (`campaigns/uplift.py` says how they count).

One rule: a parameter that cannot be read is refused with 400 naming it, never replaced by a
default (a figure computed on another window or period than asked would look right and be wrong).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

import asyncpg
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import Parameter, QueryParameter

from app.auth import admits
from app.routes.audit import instant_of
from campaigns import store, uplift
from campaigns.uplift import DEFAULT_WINDOW_HOURS, Goal, PeriodUplift, Uplift
from geo.errors import InvalidField

STAFF = ("campaign_manager",)
DEFAULT_PERIOD = timedelta(days=30)
_EVER = datetime(1970, 1, 1, tzinfo=UTC)

GoalParameter = Annotated[Goal, Parameter(
    description="`visit`: an enter at a fence of the campaign's stores; `purchase`: a "
                "`purchase` signal (at one of those stores when it names one)")]
WindowParameter = Annotated[int, Parameter(
    ge=1, le=720, description="hours after the moment within which a conversion counts")]


def _counted_since(goal: Goal, now: datetime, retention_days: int) -> datetime:
    """Purchases are purged with signals after the retention period: a moment older than that
    would look unconverted, so it is not counted."""
    return now - timedelta(days=retention_days) if goal == "purchase" else _EVER


def _period(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    end = instant_of("to", until) or now
    start = instant_of("from", since) or end - DEFAULT_PERIOD
    if start >= end:
        raise InvalidField("from", "must be before `to`")
    if end - start > uplift.MAX_PERIOD:
        days = (end - start) / timedelta(days=1)
        raise InvalidField("from", f"the period to `to` is {days:.1f} days; at most "
                                   f"{uplift.MAX_PERIOD.days} days are compared at once")
    return start, end


class MeasurementController(Controller):
    path = "/v1"
    tags = ["measurement"]

    @get("/campaigns/{campaign_id:uuid}/uplift", operation_id="getCampaignUplift",
         opt=admits(*STAFF, action="read campaign reports"))
    async def campaign_uplift(self, campaign_id: UUID, pool: asyncpg.Pool, state: State,
                              now: datetime, goal: GoalParameter = "visit",
                              window_hours: WindowParameter = DEFAULT_WINDOW_HOURS) -> Uplift:
        """Did the offer change what people did? The conversion rates of the treated moments
        (the campaign's sent deliveries) and of the control moments (its holdout), their
        difference with Newcombe's 95 % interval and a two-sided p-value, and the incremental
        conversions. With no moment in one group, the figures that need both are null and
        `note` says why."""
        since = _counted_since(goal, now, state.settings.retention_days)
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            await store.get_campaign(conn, campaign_id)
            treated, control = await uplift.campaign_counts(conn, campaign_id, goal,
                                                            window_hours, now, since)
        return uplift.compare(goal, window_hours, treated, control)

    @get("/reports/uplift", operation_id="getGlobalUplift",
         opt=admits(*STAFF, action="read reports"))
    async def global_uplift(
        self, pool: asyncpg.Pool, state: State, now: datetime, goal: GoalParameter = "visit",
        window_hours: WindowParameter = DEFAULT_WINDOW_HOURS,
        since: Annotated[str | None, QueryParameter(
            name="from", format="date-time",
            description="moments at or after this time (RFC 3339 with an offset; default: 30 "
                        "days before `to`)")] = None,
        until: Annotated[str | None, QueryParameter(
            name="to", format="date-time",
            description="moments before this time (RFC 3339 with an offset; default: now); at "
                        "most 90 days after `from`")] = None,
    ) -> PeriodUplift:
        """The global control group (the policy's `global_holdout_percent`: devices that never
        get a push) against everyone else: every campaign's treated moments of the period
        against the moments when a device of the group would have had a push."""
        start, end = _period(since, until, now)
        counted = _counted_since(goal, now, state.settings.retention_days)
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            treated, control = await uplift.global_counts(conn, goal, window_hours, start, end,
                                                          now, counted)
        result = uplift.compare(goal, window_hours, treated, control, uplift.NO_GLOBAL_CONTROL)
        return PeriodUplift(**{f: getattr(result, f) for f in Uplift.__struct_fields__},
                            from_=start, to=end)
