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
from tests.e2e.conftest import World

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
