"""POST /v1/campaigns/backtest against what the live pipeline really did: a day is recorded by
sending pings through the API with the campaign active (the clock pinned to each visit), then
the same campaign body is backtested over that day with nothing else competing.

The day's visits are chosen so that every rule has its say: quiet hours, a push, the minimum
gap of the policy, the cooldown, the cap, a moment older than the offer's TTL, a device without
marketing consent, and a visit outside the campaign's daypart.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.clock import CLOCK
from tests.e2e.conftest import SHOP_LAT, SHOP_LNG, World

DAY = datetime(2026, 6, 17, tzinfo=UTC)  # the pinned Wednesday
PARIS = ZoneInfo("Europe/Paris")


def at(hh_mm: str) -> datetime:
    hours, minutes = hh_mm.split(":")
    return DAY + timedelta(hours=int(hours), minutes=int(minutes))


def campaign_body(world: World, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "coffee at the door",
        "trigger": {"kind": "enter", "store_ids": [world.store_id]},
        "schedule": {"starts_at": (DAY - timedelta(days=1)).isoformat(),
                     "ends_at": (DAY + timedelta(days=2)).isoformat(),
                     # 08:00–18:00 in Paris (the store's zone): 06:00–16:00 UTC in June
                     "dayparts": [{"days": [3], "from": "08:00", "to": "18:00"}]},
        "offer": {"title": "Coffee -20 %", "body": "Today only, at the counter"},
        "offer_ttl_seconds": 900,
        "caps": {"per_device": {"count": 2, "period_seconds": 86_400},
                 "cooldown_seconds": 3600},
    }
    body.update(overrides)
    return body


async def visit(world: World, token: str, when: str, *, late_minutes: int = 0) -> None:
    """Walk in at `when` (its fixes `late_minutes` old when they arrive), out 5 minutes later."""
    CLOCK.set(at(when))
    await world.walk_in(token, start=at(when) - timedelta(minutes=late_minutes, seconds=120))
    CLOCK.set(at(when) + timedelta(minutes=5))
    await world.walk_out(token)


async def record_day(world: World) -> dict[str, Any]:
    """The campaign live for a day of visits; returns it (paused again at the end)."""
    await world.api.ok("PUT", "/v1/policy", expect=200, json={
        "max_per_device_per_day": 10, "min_seconds_between_pushes": 1800,
        "quiet_hours": {"from": "21:00", "to": "09:00"}})
    CLOCK.set(at("06:30"))
    campaign = await world.api.ok("POST", "/v1/campaigns",
                                  json=campaign_body(world, status="active"))
    _, alice = await world.device()
    _, bob = await world.device(marketing=False)
    _, dora = await world.device()
    for when in ("07:00", "10:00", "10:20", "10:45", "12:00", "14:00", "17:00"):
        # quiet hours, queued, policy gap, cooldown, queued, cap, outside the daypart
        await visit(world, alice, when)
    await visit(world, bob, "10:10")  # no marketing consent
    await visit(world, dora, "11:00", late_minutes=20)  # the moment is older than the TTL
    await visit(world, dora, "11:30")  # queued
    CLOCK.set(at("18:00"))
    await world.api.ok("POST", f"/v1/campaigns/{campaign['id']}/pause", expect=200)
    return campaign


async def backtest(world: World, body: dict[str, Any], start: datetime,
                   end: datetime) -> dict[str, Any]:
    result: dict[str, Any] = await world.api.ok(
        "POST", "/v1/campaigns/backtest", expect=200,
        json={"campaign": body, "from": start.isoformat(), "to": end.isoformat()})
    return result


async def snapshot(database_url: str) -> dict[str, tuple[int, str | None]]:
    """Every table of the schema: its row count and a digest of its rows."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        out = {}
        for table in tables:
            row = await conn.fetchrow(
                f'SELECT count(*) AS n, md5(string_agg(t::text, \'|\' ORDER BY t::text)) AS d '
                f'FROM "{table}" t')
            assert row is not None
            out[table] = (row["n"], row["d"])
        return out
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_a_backtest_of_a_recorded_day_matches_what_the_live_pipeline_did(
        quiet_world: World) -> None:
    world = quiet_world
    campaign = await record_day(world)
    stats = await world.stats(campaign["id"])
    deliveries = await world.delivery_rows(campaign["id"])
    # The day exercised every rule it was built for.
    assert {k: v for k, v in stats["suppressed"].items() if v} == {
        "quiet_hours": 1, "policy": 1, "cooldown": 1, "cap": 1, "schedule": 1, "consent": 1,
        "moment_expired": 1}
    assert len(deliveries) == 3

    result = await backtest(world, campaign_body(world), DAY, DAY + timedelta(days=1))

    assert result["moments"] == stats["triggered"] == 10
    assert result["would_send"] == len(deliveries)
    assert result["suppressed"] == stats["suppressed"]
    assert result["devices"] == 3
    assert result["devices_reached"] == 2
    sent_hours = Counter((d.isoweekday(), d.hour) for d in (
        datetime.fromisoformat(x["moment_at"]).astimezone(PARIS) for x in deliveries))
    assert {(h["day"], h["hour"]): h["would_send"] for h in result["by_hour"]
            if h["would_send"]} == dict(sent_hours)
    assert sum(h["moments"] for h in result["by_hour"]) == result["moments"]
    (fence,) = result["by_geofence"]
    assert (fence["geofence_id"], fence["store_id"]) == (world.fence_id, world.store_id)
    assert fence["moments"] == result["moments"]
    assert fence["would_send"] == result["would_send"]
    assert fence["suppressed"] == {k: v for k, v in stats["suppressed"].items() if v}


@pytest.mark.asyncio
async def test_a_backtest_changes_nothing_in_the_database(quiet_world: World) -> None:
    world = quiet_world
    await record_day(world)
    before = await snapshot(world.database_url)
    result = await backtest(world, campaign_body(world), DAY, DAY + timedelta(days=1))
    assert result["would_send"] == 3
    assert await snapshot(world.database_url) == before


def plain(world: World, **overrides: Any) -> dict[str, Any]:
    """An enter offer at the shop with nothing to hold it back but what the test adds."""
    body = campaign_body(world, caps={"per_device": {"count": 10, "period_seconds": 86_400}})
    body["schedule"].pop("dayparts")
    body.update(overrides)
    return body


@pytest.mark.asyncio
async def test_an_active_campaign_of_higher_priority_outranks_the_proposal(
        quiet_world: World) -> None:
    world = quiet_world
    CLOCK.set(at("09:00"))
    await world.api.ok("POST", "/v1/campaigns",
                       json=plain(world, name="rival", priority=5, status="active"))
    _, token = await world.device()
    for when in ("10:00", "12:00"):
        await visit(world, token, when)

    behind = await backtest(world, plain(world), at("09:00"), at("13:00"))
    ahead = await backtest(world, plain(world, priority=9), at("09:00"), at("13:00"))

    assert (behind["moments"], behind["would_send"], behind["suppressed"]["outranked"]) == \
        (2, 0, 2)
    assert (ahead["moments"], ahead["would_send"], ahead["suppressed"]["outranked"]) == (2, 2, 0)


@pytest.mark.asyncio
async def test_the_caps_start_from_the_pushes_before_the_period_and_count_the_replayed_ones(
        quiet_world: World) -> None:
    world = quiet_world
    await world.api.ok("PUT", "/v1/policy", expect=200, json={
        "max_per_device_per_day": 1, "min_seconds_between_pushes": 0, "quiet_hours": None})
    CLOCK.set(at("09:00"))
    rival = await world.api.ok("POST", "/v1/campaigns",
                               json=plain(world, name="rival", status="active"))
    _, token = await world.device()
    await visit(world, token, "10:00")  # the rival's push: the day's one
    await world.api.ok("POST", f"/v1/campaigns/{rival['id']}/pause", expect=200)
    await visit(world, token, "12:00")  # nothing live any more
    assert len(await world.delivery_rows(rival["id"])) == 1

    # From 11:00, the day's push is already spent (the rival's, before the period).
    later = await backtest(world, plain(world), at("11:00"), at("13:00"))
    # From 09:00, the proposal takes the 10:00 visit (the rival is paused now), and that
    # replayed push is the day's one at 12:00.
    whole = await backtest(world, plain(world), at("09:00"), at("13:00"))

    assert (later["moments"], later["would_send"], later["suppressed"]["policy"]) == (1, 0, 1)
    assert (whole["moments"], whole["would_send"], whole["suppressed"]["policy"]) == (2, 1, 1)


@pytest.mark.asyncio
async def test_a_device_already_inside_at_the_start_does_not_enter_then(
        quiet_world: World) -> None:
    world = quiet_world
    _, token = await world.device()
    CLOCK.set(at("10:30"))
    await world.walk_in(token)  # inside from about 10:28:40
    CLOCK.set(at("11:20"))
    await world.api.ok("POST", "/v1/pings", token, expect=202, json={"pings": [
        {"lat": SHOP_LAT, "lng": SHOP_LNG, "accuracy_m": 8,
         "ts": (at("11:19") + timedelta(seconds=10 * i)).isoformat()} for i in range(6)]})
    CLOCK.set(at("11:40"))
    await world.walk_out(token)

    from_before = await backtest(world, plain(world), at("10:00"), at("12:00"))
    from_inside = await backtest(world, plain(world), at("11:00"), at("12:00"))
    exits = await backtest(world, plain(world, trigger={"kind": "exit",
                                                        "store_ids": [world.store_id]}),
                           at("11:00"), at("12:00"))

    assert from_before["moments"] == 1
    assert from_inside["moments"] == 0  # the warm-up before 11:00 saw it enter
    assert exits["moments"] == 1


@pytest.mark.asyncio
async def test_a_signal_that_arrived_after_the_moment_does_not_count_for_it(
        quiet_world: World) -> None:
    """Ann's cart was in before she walked in; Ben's cart add reached the service only after his
    visit, so the live pipeline did not know it then, and neither may the replay."""
    world = quiet_world
    CLOCK.set(at("09:00"))
    audience = {"micromoments": ["buy"]}
    campaign = await world.api.ok("POST", "/v1/campaigns",
                                  json=plain(world, audience=audience, status="active"))
    _, ann = await world.device()
    _, ben = await world.device()
    cart = {"signals": [{"kind": "cart_add", "ts": at("09:50").isoformat(),
                         "attributes": {"category": "coffee"}}]}
    CLOCK.set(at("09:51"))
    await world.api.ok("POST", "/v1/signals", ann, expect=202, json=cart)
    await visit(world, ann, "10:00")
    await visit(world, ben, "10:00")
    CLOCK.set(at("10:20"))
    await world.api.ok("POST", "/v1/signals", ben, expect=202, json=cart)
    await world.api.ok("POST", f"/v1/campaigns/{campaign['id']}/pause", expect=200)
    stats = await world.stats(campaign["id"])
    assert (stats["triggered"], stats["suppressed"]["audience"]) == (2, 1)

    result = await backtest(world, plain(world, audience=audience), at("09:00"), at("11:00"))

    assert (result["moments"], result["would_send"], result["suppressed"]["audience"]) == \
        (2, 1, 1)
