"""The predicted-next trigger: a customer with a routine A → B leaves A and gets B's offer."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from tests.clock import CLOCK
from tests.e2e.conftest import SHOP_LAT, SHOP_LNG, World, offset


async def _routine(world: World, customer: str) -> tuple[str, str, dict[str, Any]]:
    """Store B 1 km east of the shop (store A); a month of A → B visits for `customer` and for
    a crowd; the model refitted on them."""
    lat, lng = offset(SHOP_LAT, SHOP_LNG, 0, 1000)
    store_b = await world.api.ok("POST", "/v1/stores", json={
        "name": "Bakery B", "timezone": "Europe/Paris", "external_id": "bakery-b"})
    await world.api.ok("POST", f"/v1/stores/{store_b['id']}/geofences", json={
        "name": "b", "geometry": {"type": "Point", "coordinates": [lng, lat]}, "radius_m": 40})
    rows = ["user_id,place_id,ts"]
    start = CLOCK() - timedelta(days=30)
    for user in [customer, *(f"crowd-{i}" for i in range(20))]:
        for day in range(30):
            at = start + timedelta(days=day, hours=8)
            rows.append(f"{user},{world.store_id},{at.isoformat()}")
            rows.append(f"{user},bakery-b,{(at + timedelta(minutes=20)).isoformat()}")
    predictor = world.api.client.app.state.predictor
    before = predictor.fitted_at
    imported = await world.api.ok("POST", "/v1/visits/import", content="\n".join(rows),
                                  headers={"Content-Type": "text/csv"})
    assert imported["imported"] == len(rows) - 1
    assert imported["mapped_to_stores"] == (len(rows) - 1) // 2
    for _ in range(200):
        if predictor.fitted_at != before:
            break
        await asyncio.sleep(0.05)
    assert predictor.fitted_at != before
    return store_b["id"], customer, imported


async def _device_of(world: World, customer: str) -> str:
    body = {"platform": "ios", "fid": f"fid-{customer}", "customer_id": customer,
            "consent": {"location": True, "marketing_push": True}}
    registered = await world.api.ok("POST", "/v1/devices", world.app_token, json=body)
    token: str = registered["device_token"]
    return token


def _campaign_for(store_b: str, min_probability: float) -> dict[str, Any]:
    return {"name": "croissant before you get there",
            "trigger": {"kind": "predicted_next", "store_ids": [store_b],
                        "min_probability": min_probability},
            "offer": {"title": "Warm croissants at Bakery B", "body": "Two for one, next 15 min"},
            "offer_ttl_seconds": 900}


async def test_leaving_a_reaches_the_customer_with_bs_offer_before_they_enter_b(
        world: World) -> None:
    store_b, customer, _ = await _routine(world, "cust-routine")
    campaign = await world.campaign(**_campaign_for(store_b, 0.2))
    token = await _device_of(world, customer)
    now = CLOCK()
    await world.walk_in(token, start=now - timedelta(minutes=4))
    await world.walk_out(token, start=now - timedelta(minutes=2))
    messages = await world.wait_for(lambda m: len(m) >= 1)
    assert [m["message"]["notification"]["title"] for m in messages] == [
        "Warm croissants at Bakery B"]
    assert messages[0]["message"]["fid"] == f"fid-{customer}"
    (delivery,) = await world.delivery_rows(campaign["id"])
    assert delivery["predicted_store_id"] == store_b
    assert 0.2 <= delivery["probability"] <= 1.0
    assert delivery["arrived_at"] is None

    lat, lng = offset(SHOP_LAT, SHOP_LNG, 0, 1000)
    arrive = [{"lat": lat, "lng": lng, "accuracy_m": 5,
               "ts": (CLOCK() - timedelta(seconds=s)).isoformat()} for s in (20, 10)]
    await world.api.ok("POST", "/v1/pings", token, expect=202, json={"pings": arrive})
    stats = await world.stats(campaign["id"])
    assert (stats["predicted"], stats["predicted_arrived"]) == (1, 1)


async def test_with_min_probability_above_the_models_nothing_is_sent(world: World) -> None:
    store_b, customer, _ = await _routine(world, "cust-unsure")
    campaign = await world.campaign(**_campaign_for(store_b, 0.999))
    token = await _device_of(world, customer)
    now = CLOCK()
    await world.walk_in(token, start=now - timedelta(minutes=4))
    await world.walk_out(token, start=now - timedelta(minutes=2))
    assert await world.settle() == []
    stats = await world.stats(campaign["id"])
    assert (stats["triggered"], stats["suppressed"]["probability"]) == (1, 1)


async def test_moving_away_after_leaving_a_triggers_once_when_the_campaign_starts_later(
        world: World) -> None:
    store_b, customer, _ = await _routine(world, "cust-moving")
    token = await _device_of(world, customer)
    now = CLOCK()
    await world.walk_in(token, start=now - timedelta(minutes=6))
    await world.walk_out(token, start=now - timedelta(minutes=4))
    campaign = await world.campaign(**_campaign_for(store_b, 0.2))

    async def move(start: datetime) -> None:
        pings = []
        for i, east in enumerate((100, 200, 300, 400)):
            lat, lng = offset(SHOP_LAT, SHOP_LNG, 600, east)
            pings.append({"lat": lat, "lng": lng, "accuracy_m": 8,
                          "ts": (start + timedelta(seconds=20 * i)).isoformat()})
        await world.api.ok("POST", "/v1/pings", token, expect=202, json={"pings": pings})

    await move(CLOCK() - timedelta(seconds=150))
    await world.wait_for(lambda m: len(m) >= 1)
    await move(CLOCK() - timedelta(seconds=70))
    assert [m["message"]["notification"]["title"] for m in await world.settle()] == [
        "Warm croissants at Bakery B"]
    (delivery,) = await world.delivery_rows(campaign["id"])
    assert (delivery["trigger_kind"], delivery["predicted_store_id"]) == (
        "predicted_next", store_b)
