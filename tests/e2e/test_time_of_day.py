"""The same visit, at pinned instants across a day and across DST changes, through the whole
ping pipeline (HTTP → presence → decisions → outbox): quiet hours in the device's zone, dayparts
in the store's zone, and the daily maximum counted from the device's local midnight.

Every case pins the clock (tests/clock.py) to the instants its name gives, so the outcome never
depends on when the suite runs. The changes used: Paris springs forward on Sunday 29 March 2026
(02:00 CET → 03:00 CEST, a 23-hour day); New York falls back on Sunday 1 November 2026
(02:00 EDT → 01:00 EST, a 25-hour day).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from tests.clock import CLOCK
from tests.e2e.conftest import World, build_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEFAULT_QUIET = {"from": "21:00", "to": "09:00"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def town(module_database_url: str) -> AsyncIterator[World]:
    """One shop (its time zone set per case) and no dispatcher: what a visit queues stays
    queued, and every suppression is counted with its reason."""
    async with build_world(module_database_url, run_dispatcher=False) as world:
        yield world


async def visits(world: World, *, instants: Sequence[datetime], device_zone: str | None,
                 store_zone: str = "Europe/Paris", quiet_hours: dict[str, str] | None = None,
                 max_per_day: int = 10, dayparts: list[dict[str, Any]] | None = None,
                 ) -> list[str]:
    """A new device visits the shop once at each instant (walking out in between); the outcome
    of each visit's enter: `queued` or the campaign's suppression reason."""
    await world.api.ok("PATCH", f"/v1/stores/{world.store_id}", expect=200,
                       json={"timezone": store_zone})
    await world.api.ok("PUT", "/v1/policy", expect=200, json={
        "max_per_device_per_day": max_per_day, "min_seconds_between_pushes": 0,
        "quiet_hours": quiet_hours})
    first = instants[0]
    CLOCK.set(first)
    schedule: dict[str, Any] = {"starts_at": (first - timedelta(days=3)).isoformat(),
                                "ends_at": (instants[-1] + timedelta(days=3)).isoformat()}
    if dayparts is not None:
        schedule["dayparts"] = dayparts
    campaign = await world.campaign(
        schedule=schedule, caps={"per_device": {"count": 10, "period_seconds": 86_400}})
    try:
        body: dict[str, Any] = {"platform": "android", "fcm_token": f"tok-{campaign['id']}",
                                "consent": {"location": True, "marketing_push": True}}
        if device_zone is not None:
            body["timezone"] = device_zone
        device = await world.api.ok("POST", "/v1/devices", world.app_token, json=body)
        token = device["device_token"]
        outcomes: list[str] = []
        for i, at in enumerate(instants):
            if i:
                CLOCK.set(instants[i - 1] + timedelta(minutes=5))
                await world.walk_out(token)
            CLOCK.set(at)
            before = await world.stats(campaign["id"])
            await world.walk_in(token)
            after = await world.stats(campaign["id"])
            outcomes.append(_outcome(before, after))
        return outcomes
    finally:
        await world.api.ok("DELETE", f"/v1/campaigns/{campaign['id']}")


def _outcome(before: dict[str, Any], after: dict[str, Any]) -> str:
    if after["queued"] == before["queued"] + 1:
        return "queued"
    grown = [r for r, n in after["suppressed"].items() if n > before["suppressed"].get(r, 0)]
    return grown[0] if len(grown) == 1 else f"unclear: {before} → {after}"


# --- quiet hours, in the device's own time zone ------------------------------------------------
QUIET_CASES = [
    # (device zone, instant UTC, outcome)
    pytest.param("Europe/Paris", "2026-06-16T22:30", "quiet_hours", id="paris 00:30 is quiet"),
    pytest.param("Europe/Paris", "2026-06-17T04:30", "quiet_hours", id="paris 06:30 is quiet"),
    pytest.param("Europe/Paris", "2026-06-17T06:59", "quiet_hours", id="paris 08:59 is quiet"),
    pytest.param("Europe/Paris", "2026-06-17T07:00", "queued",
                 id="paris 09:00 is the end of quiet hours, so it sends"),
    pytest.param("Europe/Paris", "2026-06-17T09:30", "queued", id="paris 11:30 sends"),
    pytest.param("Europe/Paris", "2026-06-17T16:30", "queued", id="paris 18:30 sends"),
    pytest.param("Europe/Paris", "2026-06-17T18:59", "queued", id="paris 20:59 sends"),
    pytest.param("Europe/Paris", "2026-06-17T19:00", "quiet_hours",
                 id="paris 21:00 starts quiet hours"),
    pytest.param("Europe/Paris", "2026-06-17T21:59", "quiet_hours", id="paris 23:59 is quiet"),
    pytest.param("Europe/Paris", "2026-03-28T07:30", "quiet_hours",
                 id="paris 07:30 utc the day before spring forward is 08:30 cet, quiet"),
    pytest.param("Europe/Paris", "2026-03-29T07:30", "queued",
                 id="paris 07:30 utc on the day of spring forward is 09:30 cest, sends"),
    pytest.param("Europe/Paris", "2026-03-28T19:30", "queued",
                 id="paris 19:30 utc before spring forward is 20:30 cet, sends"),
    pytest.param("Europe/Paris", "2026-03-29T19:30", "quiet_hours",
                 id="paris 19:30 utc after spring forward is 21:30 cest, quiet"),
    pytest.param("America/New_York", "2026-10-31T13:30", "queued",
                 id="new york 13:30 utc before fall back is 09:30 edt, sends"),
    pytest.param("America/New_York", "2026-11-01T13:30", "quiet_hours",
                 id="new york 13:30 utc after fall back is 08:30 est, quiet"),
    pytest.param("Pacific/Kiritimati", "2026-06-17T10:00", "quiet_hours",
                 id="kiritimati at midnight is quiet while paris has noon"),
    pytest.param("Pacific/Kiritimati", "2026-06-17T22:00", "queued",
                 id="kiritimati at noon sends while paris has midnight"),
    pytest.param(None, "2026-06-17T08:59", "quiet_hours",
                 id="a device without a zone is taken as utc, 08:59 quiet"),
    pytest.param(None, "2026-06-17T09:00", "queued",
                 id="a device without a zone is taken as utc, 09:00 sends"),
]


@pytest.mark.parametrize(("zone", "instant", "expected"), QUIET_CASES)
async def test_quiet_hours_follow_the_device_clock_at_pinned_instants(
        town: World, zone: str | None, instant: str, expected: str) -> None:
    outcome = await visits(town, instants=[utc(instant)], device_zone=zone,
                           quiet_hours=DEFAULT_QUIET)
    assert outcome == [expected]


# --- dayparts, in the store's time zone ---------------------------------------------------------
SUNDAY_10_TO_11 = [{"days": [7], "from": "10:00", "to": "11:00"}]
SATURDAY_NIGHT = [{"days": [6], "from": "22:00", "to": "02:00"}]
DAYPART_CASES = [
    # (store zone, device zone, dayparts, instant UTC, outcome)
    pytest.param("Europe/Paris", "Europe/Paris", SUNDAY_10_TO_11, "2026-03-22T09:30", "queued",
                 id="paris sunday 10:30 cet is inside sunday 10-11"),
    pytest.param("Europe/Paris", "Europe/Paris", SUNDAY_10_TO_11, "2026-03-22T08:30", "schedule",
                 id="paris sunday 09:30 cet is before sunday 10-11"),
    pytest.param("Europe/Paris", "Europe/Paris", SUNDAY_10_TO_11, "2026-03-29T08:30", "queued",
                 id="paris spring forward sunday 10:30 cest is inside, at 08:30 utc"),
    pytest.param("Europe/Paris", "Europe/Paris", SUNDAY_10_TO_11, "2026-03-29T09:30", "schedule",
                 id="paris spring forward sunday 11:30 cest is after, at 09:30 utc"),
    pytest.param("Europe/Paris", "Europe/Paris", SUNDAY_10_TO_11, "2026-03-30T08:30", "schedule",
                 id="paris monday 10:30 is not a sunday"),
    # a Tokyo device, whose morning it is then, so the store's night is not its quiet hours
    pytest.param("Europe/Paris", "Asia/Tokyo", SATURDAY_NIGHT, "2026-03-29T00:30", "queued",
                 id="paris 01:30 cet in the spring forward night is inside saturday 22-02"),
    pytest.param("Europe/Paris", "Asia/Tokyo", SATURDAY_NIGHT, "2026-03-29T01:30", "schedule",
                 id="paris 03:30 cest in the spring forward night is past saturday 22-02"),
    pytest.param("America/New_York", "America/New_York", SUNDAY_10_TO_11, "2026-10-25T14:30",
                 "queued", id="new york sunday 10:30 edt is inside sunday 10-11"),
    pytest.param("America/New_York", "America/New_York", SUNDAY_10_TO_11, "2026-11-01T14:30",
                 "schedule", id="new york fall back sunday 09:30 est is before, at 14:30 utc"),
    pytest.param("America/New_York", "America/New_York", SUNDAY_10_TO_11, "2026-11-01T15:30",
                 "queued", id="new york fall back sunday 10:30 est is inside, at 15:30 utc"),
    pytest.param("Europe/Paris", "Asia/Tokyo", SUNDAY_10_TO_11, "2026-03-29T08:30", "queued",
                 id="a tokyo device at a paris store sunday 10:30 cest, 17:30 in tokyo, sends"),
    pytest.param("Europe/Paris", "America/Los_Angeles", SUNDAY_10_TO_11, "2026-03-29T08:30",
                 "quiet_hours",
                 id="a los angeles device at a paris store in the daypart is at 01:30 pdt, quiet"),
]


@pytest.mark.parametrize(("store_zone", "device_zone", "dayparts", "instant", "expected"),
                         DAYPART_CASES)
async def test_dayparts_follow_the_store_clock_and_quiet_hours_the_device_clock(
        town: World, store_zone: str, device_zone: str, dayparts: list[dict[str, Any]],
        instant: str, expected: str) -> None:
    outcome = await visits(town, instants=[utc(instant)], device_zone=device_zone,
                           store_zone=store_zone, quiet_hours=DEFAULT_QUIET, dayparts=dayparts)
    assert outcome == [expected]


# --- the daily maximum, from the device's local midnight ----------------------------------------
DAILY_CASES = [
    # (device zone, first visit UTC, second visit UTC, outcomes)
    pytest.param("Europe/Paris", "2026-03-28T22:30", "2026-03-28T22:50", ["queued", "policy"],
                 id="paris 23:30 then 23:50 cet the same evening: the second is over the max"),
    pytest.param("Europe/Paris", "2026-03-28T22:30", "2026-03-28T23:10", ["queued", "queued"],
                 id="paris 23:30 then 00:10 cet: a new local day, both send"),
    pytest.param("Europe/Paris", "2026-03-28T23:30", "2026-03-29T21:50", ["queued", "policy"],
                 id="paris 00:30 cet then 23:50 cest on the 23-hour spring forward day: one day"),
    pytest.param("Europe/Paris", "2026-03-28T23:30", "2026-03-29T22:10", ["queued", "queued"],
                 id="paris 00:30 cet then 00:10 cest the next day: both send"),
    pytest.param("America/New_York", "2026-11-01T04:10", "2026-11-02T04:50", ["queued", "policy"],
                 id="new york 00:10 edt then 23:50 est on the 25-hour fall back day: one day"),
    pytest.param("America/New_York", "2026-11-01T04:10", "2026-11-02T05:10", ["queued", "queued"],
                 id="new york 00:10 edt then 00:10 est the next day: both send"),
]


@pytest.mark.parametrize(("zone", "first", "second", "expected"), DAILY_CASES)
async def test_the_daily_maximum_counts_from_the_device_local_midnight_across_dst(
        town: World, zone: str, first: str, second: str, expected: list[str]) -> None:
    outcome = await visits(town, instants=[utc(first), utc(second)], device_zone=zone,
                           max_per_day=1)
    assert outcome == expected
