"""The context engine through the HTTP API on the real database: signals move the customer's
p_buy, intent by category and micromoment; `go` and `buy` moments fire the campaigns restricted
to them while the same fence without such signals is suppressed as `audience`; a spike appears
with a burst and decays.

The clock is pinned (tests/clock.py): every signal and ping is relative to it.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from tests.clock import CLOCK, ago
from tests.e2e.conftest import ADMIN_TOKEN, World


async def customer_device(world: World, customer_id: str | None = None) -> str:
    body: dict[str, Any] = {"platform": "android", "fcm_token": f"tok-{secrets.token_hex(6)}",
                            "timezone": "UTC",
                            "consent": {"location": True, "marketing_push": True}}
    if customer_id is not None:
        body["customer_id"] = customer_id
    device = await world.api.ok("POST", "/v1/devices", world.app_token, json=body)
    token: str = device["device_token"]
    return token


async def signals(world: World, token: str, *items: tuple[str, float, dict[str, str]]) -> None:
    """Send (kind, minutes ago, attributes) signals."""
    body = {"signals": [{"kind": kind, "ts": ago(minutes=minutes).isoformat(),
                         "attributes": attributes} for kind, minutes, attributes in items]}
    answer = await world.api.ok("POST", "/v1/signals", token, expect=202, json=body)
    assert answer["rejected"] == [], answer


async def context(world: World, token: str) -> dict[str, Any]:
    result: dict[str, Any] = await world.api.ok("GET", "/v1/devices/me/context", token)
    return result


SMARTPHONE = {"category": "electronics.smartphone", "product_id": "p-42"}


async def test_a_new_customer_has_the_prior_s_low_p_buy_and_no_micromoment(
        quiet_world: World) -> None:
    token = await customer_device(quiet_world, "C-new")

    ctx = await context(quiet_world, token)

    assert (ctx["customer_id"], ctx["intent"]["model"], ctx["intent"]["by_category"],
            ctx["intent"]["spike"]["active"], ctx["micromoment"]["kind"]) == (
        "C-new", "prior", [], False, None)
    assert 0.0 <= ctx["intent"]["p_buy"] < 0.2


async def test_views_then_a_cart_add_raise_p_buy_and_make_it_a_buy_micromoment(
        quiet_world: World) -> None:
    token = await customer_device(quiet_world, "C-cart")
    before = await context(quiet_world, token)

    await signals(quiet_world, token, ("product_view", 30, SMARTPHONE),
                  ("product_view", 20, SMARTPHONE))
    viewed = await context(quiet_world, token)
    await signals(quiet_world, token, ("cart_add", 10, SMARTPHONE))
    carted = await context(quiet_world, token)

    assert before["intent"]["p_buy"] < viewed["intent"]["p_buy"] < carted["intent"]["p_buy"]
    assert carted["intent"]["by_category"][0]["category"].startswith("electronics")
    assert (viewed["micromoment"]["kind"], carted["micromoment"]["kind"]) == ("know", "buy")
    assert any("cart_add" in line for line in carted["micromoment"]["evidence"])


async def test_staff_read_one_customer_across_all_their_devices(quiet_world: World) -> None:
    phone = await customer_device(quiet_world, "C-two-devices")
    tablet = await customer_device(quiet_world, "C-two-devices")
    await signals(quiet_world, phone, ("search", 5, {"query": "tv", "category": "electronics.tv"}))
    await signals(quiet_world, tablet, ("cart_add", 3, {"category": "home.sofa"}))

    ctx = await quiet_world.api.ok("GET", "/v1/customers/C-two-devices/context")

    assert {c["category"] for c in ctx["intent"]["by_category"]} >= {"electronics.tv",
                                                                      "home.sofa"}
    assert ctx == await context(quiet_world, tablet) | {"as_of": ctx["as_of"]}


async def test_an_unknown_customer_is_404_and_a_device_reads_only_its_own(
        quiet_world: World) -> None:
    token = await customer_device(quiet_world)

    unknown = await quiet_world.api.call("GET", "/v1/customers/nobody/context", ADMIN_TOKEN)
    as_device = await quiet_world.api.call("GET", "/v1/customers/C-cart/context", token)

    assert (unknown.status_code, as_device.status_code) == (404, 403)


async def test_a_go_moment_fires_the_go_campaign_and_the_same_fence_without_signals_is_audience(
        quiet_world: World) -> None:
    campaign = await quiet_world.campaign(audience={"micromoments": ["go"]})
    heading_there = await customer_device(quiet_world, "C-go")
    await signals(quiet_world, heading_there,
                  ("directions", 4, {"store_id": quiet_world.store_id}))
    strolling = await customer_device(quiet_world, "C-stroll")

    await quiet_world.walk_in(heading_there)
    await quiet_world.walk_in(strolling)

    rows = await quiet_world.delivery_rows(campaign["id"])
    stats = await quiet_world.stats(campaign["id"])
    assert (len(rows), stats["suppressed"]["audience"]) == (1, 1)
    assert rows[0]["context"]["micromoment"] == "go"
    assert any("directions" in line for line in rows[0]["context"]["evidence"])


async def test_a_buy_moment_in_the_campaign_s_category_fires_it_and_others_are_audience(
        quiet_world: World) -> None:
    campaign = await quiet_world.campaign(
        audience={"micromoments": ["buy"], "categories": ["electronics"]})
    ready = await customer_device(quiet_world, "C-ready")
    await signals(quiet_world, ready, ("cart_add", 15, SMARTPHONE))
    other_aisle = await customer_device(quiet_world, "C-sofa")
    await signals(quiet_world, other_aisle, ("cart_add", 15, {"category": "home.sofa"}))
    nothing = await customer_device(quiet_world, "C-nothing")

    for token in (ready, other_aisle, nothing):
        await quiet_world.walk_in(token)

    rows = await quiet_world.delivery_rows(campaign["id"])
    stats = await quiet_world.stats(campaign["id"])
    assert (len(rows), rows[0]["context"]["micromoment"], stats["suppressed"]["audience"]) == (
        1, "buy", 2)


async def test_a_burst_of_signals_is_a_spike_that_decays_away(quiet_world: World) -> None:
    token = await customer_device(quiet_world, "C-burst")
    start = CLOCK()
    await signals(quiet_world, token, *[("product_view", 20 - i, SMARTPHONE) for i in range(12)],
                  ("cart_add", 2, SMARTPHONE))

    during = await context(quiet_world, token)
    CLOCK.set(start + timedelta(days=4))
    after = await context(quiet_world, token)

    assert during["intent"]["spike"]["active"] is True
    since = datetime.fromisoformat(during["intent"]["spike"]["since"])
    assert start - timedelta(minutes=21) <= since <= start
    assert after["intent"]["spike"]["active"] is False
    assert after["intent"]["p_buy"] < during["intent"]["p_buy"]
