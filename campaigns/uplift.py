"""Uplift: did the offer change what people did? Treated and control moments, their conversions
counted in SQL at query time, and the difference of the two rates with its interval and test.

One rule: both groups are counted by the same definitions, so that nothing but the offer tells
them apart —

- **moments**: the rows of `assignments` (campaigns/assignments.py). A `treated` moment counts
  once its delivery was `sent` (FCM accepted it: an offer that never reached FCM treated
  nobody); a `control` moment counts as recorded. Per campaign, the control group is the
  campaign's own holdout (devices in the global control group are left out of both groups: they
  can never be treated); in the global report it is the global control group, against every
  campaign's treated moments.
- **one window per moment**: a moment counts only when it comes more than `window_hours` after
  the device's previous moment of the same campaign (of any campaign in the global report), so
  windows of one device never overlap and one visit never converts two moments. The held-out
  moments pace a device exactly as pushes do (`PastPush.held_out`), so this drops alike in both.
- **conversions**: within `window_hours` after the moment (the moment itself excluded), by the
  customer on any of their devices — `visit`: an enter at a fence of one of the campaign's stores
  (any store for a campaign that names none); `purchase`: a `purchase` signal, at one of those
  stores when the signal names a store.
- **open windows**: a moment whose window has not closed yet counts with its conversions so far
  (the answer's `note` says how many); it is as likely in either group, so the difference is
  diluted, not biased. Purchases are purged with signals after `RETENTION_DAYS`, so for `purchase`
  only moments since then are counted.

The interval is Newcombe's hybrid score interval for a difference of two independent proportions
and the p-value the two-sided score test (Miettinen–Nurminen), both from statsmodels. With no
moment in one group there is nothing to compare: `uplift`, `ci95`, `p_value` and
`incremental_conversions` are null and `note` says why.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

import asyncpg
import msgspec
import numpy as np
from msgspec import Meta

from geo.store import Connection

Goal = Literal["visit", "purchase"]
GOALS: tuple[Goal, ...] = ("visit", "purchase")
WindowHours = Annotated[int, Meta(ge=1, le=720)]
DEFAULT_WINDOW_HOURS = 24
# The global report reads every campaign's moments of the period: it is bounded.
MAX_PERIOD = timedelta(days=90)

# The customer's devices: the moment's own, and every device giving the same customer_id.
_DEVICES = "(a.device_id || ARRAY(SELECT v.id FROM devices v WHERE v.customer_id = a.customer_key))"
_CONVERTED: dict[Goal, str] = {
    "visit": f"""EXISTS (
        SELECT 1 FROM geo_events e
        WHERE e.device_id = any{_DEVICES} AND e.kind = 'entered'
          AND e.at > a.moment_at AND e.at <= a.moment_at + $2::interval
          AND (a.store_ids IS NULL OR e.store_id = any(a.store_ids)))""",
    "purchase": f"""EXISTS (
        SELECT 1 FROM signals s
        WHERE s.device_id = any{_DEVICES} AND s.kind = 'purchase'
          AND s.ts > a.moment_at AND s.ts <= a.moment_at + $2::interval
          AND (a.store_ids IS NULL OR s.attributes ->> 'store_id' IS NULL
               OR s.attributes ->> 'store_id' = any(a.store_ids::text[])))""",
}
_SENT = """EXISTS (
    SELECT 1 FROM deliveries d
    WHERE d.campaign_id = m.campaign_id AND d.device_id = m.device_id
      AND d.moment_key = m.moment_key AND d.status = 'sent')"""
# $1 the campaign, $2 the window, $3 now, $4 the earliest moment counted.
_CAMPAIGN = """
WITH moments AS (
    SELECT a.*, lag(a.moment_at) OVER (PARTITION BY a.device_id
                                       ORDER BY a.moment_at, a.moment_key) AS previous
    FROM assignments a
    WHERE a.campaign_id = $1 AND a.arm IN ('treated', 'control') AND NOT a.global_holdout
      AND a.moment_at <= $3
), counted AS (
    SELECT m.* FROM moments m
    WHERE (m.previous IS NULL OR m.moment_at - m.previous > $2::interval) AND m.moment_at >= $4
      AND (m.arm = 'control' OR {sent})
)
SELECT a.arm, count(*) AS n, count(*) FILTER (WHERE {converted}) AS conversions,
       count(*) FILTER (WHERE a.moment_at + $2::interval > $3) AS open
FROM counted a GROUP BY a.arm
"""
# $1 from, $2 the window, $3 now, $4 the earliest moment counted, $5 to.
_GLOBAL = """
WITH moments AS (
    SELECT a.*, lag(a.moment_at) OVER (PARTITION BY a.device_id
                                       ORDER BY a.moment_at, a.campaign_id, a.moment_key)
               AS previous
    FROM assignments a
    WHERE a.arm IN ('treated', 'global_control')
      AND a.moment_at >= $1::timestamptz - $2::interval AND a.moment_at < $5
      AND a.moment_at <= $3
), counted AS (
    SELECT m.* FROM moments m
    WHERE (m.previous IS NULL OR m.moment_at - m.previous > $2::interval)
      AND m.moment_at >= greatest($1, $4) AND (m.arm = 'global_control' OR {sent})
)
SELECT CASE a.arm WHEN 'treated' THEN 'treated' ELSE 'control' END AS arm, count(*) AS n,
       count(*) FILTER (WHERE {converted}) AS conversions,
       count(*) FILTER (WHERE a.moment_at + $2::interval > $3) AS open
FROM counted a GROUP BY 1
"""
CAMPAIGN_COUNTS = {g: _CAMPAIGN.format(sent=_SENT, converted=_CONVERTED[g]) for g in GOALS}
GLOBAL_COUNTS = {g: _GLOBAL.format(sent=_SENT, converted=_CONVERTED[g]) for g in GOALS}


class Group(msgspec.Struct, frozen=True):
    n: int  # moments
    conversions: int
    rate: float | None  # null without moments


class Uplift(msgspec.Struct, kw_only=True, frozen=True):
    goal: Goal
    window_hours: int
    treated: Group
    control: Group
    uplift: float | None  # treated rate − control rate
    ci95: Annotated[list[float], Meta(min_length=2, max_length=2)] | None
    p_value: float | None
    incremental_conversions: float | None  # uplift × treated n
    method: str
    # Why a figure is null, or how many moments are still within their window.
    note: str | None = None


class PeriodUplift(Uplift, kw_only=True, frozen=True):
    """The global control group against everyone else's treated moments, over a period."""

    from_: datetime = msgspec.field(name="from")
    to: datetime


class Counts(msgspec.Struct, frozen=True):
    n: int = 0
    conversions: int = 0
    open: int = 0  # moments whose window has not closed yet


def method_name() -> str:
    import statsmodels

    return ("Newcombe hybrid score interval (95 %) and two-sided Miettinen-Nurminen score test "
            f"for a difference of two proportions (statsmodels {statsmodels.__version__})")


NO_HOLDOUT = "the campaign's holdout_percent is 0, or no held-out device had a moment yet"
NO_GLOBAL_CONTROL = ("the policy's global_holdout_percent is 0, or no device of the global "
                     "control group would have had a push in the period")


def compare(goal: Goal, window_hours: int, treated: Counts, control: Counts,
            no_control: str = NO_HOLDOUT) -> Uplift:
    """The two groups' rates, their difference, its 95 % interval and p-value; `no_control`
    says why a control group may be empty."""
    groups = [Group(c.n, c.conversions, c.conversions / c.n if c.n else None)
              for c in (treated, control)]
    notes = []
    if not treated.n:
        notes.append("no treated moment: no delivery was sent yet, so there is nothing to "
                     "compare")
    if not control.n:
        notes.append(f"no control moment ({no_control}), so there is nothing to compare")
    opened = treated.open + control.open
    if opened:
        notes.append(f"{opened} of the {treated.n + control.n} moments are less than "
                     f"{window_hours} h old: their conversions so far are counted")
    note = "; ".join(notes) or None
    if not (treated.n and control.n):
        return Uplift(goal=goal, window_hours=window_hours, treated=groups[0], control=groups[1],
                      uplift=None, ci95=None, p_value=None, incremental_conversions=None,
                      method=method_name(), note=note)
    # Imported here: statsmodels takes a second to import, and only this answer needs it.
    from statsmodels.stats.proportion import (
        confint_proportions_2indep,
        test_proportions_2indep,
    )

    counts = (treated.conversions, treated.n, control.conversions, control.n)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Degenerate groups (all or none converted) make statsmodels warn about its ratios.
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = confint_proportions_2indep(*counts, method="newcomb", compare="diff")
        test = test_proportions_2indep(*counts, method="score", compare="diff")
    difference = treated.conversions / treated.n - control.conversions / control.n
    p_value = float(test.pvalue)
    if math.isnan(p_value):
        # Both groups converted all or none: the score test's variance is 0 and the observed
        # difference is exactly 0, which is as far from "no effect" as nothing: p = 1.
        p_value = 1.0
    return Uplift(goal=goal, window_hours=window_hours, treated=groups[0], control=groups[1],
                  uplift=difference, ci95=[float(low), float(high)], p_value=p_value,
                  incremental_conversions=difference * treated.n, method=method_name(),
                  note=note)


async def campaign_counts(conn: Connection, campaign_id: UUID, goal: Goal, window_hours: int,
                          now: datetime, since: datetime) -> tuple[Counts, Counts]:
    """(treated, control) of a campaign; moments before `since` are not counted."""
    rows = await conn.fetch(CAMPAIGN_COUNTS[goal], campaign_id, timedelta(hours=window_hours),
                            now, since)
    return _arms(rows)


async def global_counts(conn: Connection, goal: Goal, window_hours: int, start: datetime,
                        end: datetime, now: datetime,
                        since: datetime) -> tuple[Counts, Counts]:
    """(everyone else's treated moments, the global control group's) in [start, end)."""
    rows = await conn.fetch(GLOBAL_COUNTS[goal], start, timedelta(hours=window_hours), now,
                            since, end)
    return _arms(rows)


def _arms(rows: list[asyncpg.Record]) -> tuple[Counts, Counts]:
    arms = {r["arm"]: Counts(r["n"], r["conversions"], r["open"]) for r in rows}
    return arms.get("treated", Counts()), arms.get("control", Counts())
