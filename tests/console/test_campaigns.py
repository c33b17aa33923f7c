"""Campaign staff: create a campaign through the form (the API's errors shown at their fields),
activate it, read its dashboard (the API's funnel, uplift, deliveries and why each went out) and
backtest it."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest

from tests.clock import now
from tests.console.conftest import Service, screenshot, sign_in
from tests.e2e.conftest import SHOP_LAT, SHOP_LNG, offset


@pytest.fixture
def world(service: Service) -> dict[str, Any]:
    name = f"Rue Cler {secrets.token_hex(3)}"  # the module's tests share one database
    store = service.ok("POST", "/v1/stores", json={"name": name, "timezone": "Europe/Paris"})
    fence = service.ok("POST", f"/v1/stores/{store['id']}/geofences", json={
        "name": "shop", "geometry": {"type": "Point", "coordinates": [SHOP_LNG, SHOP_LAT]},
        "radius_m": 60, "dwell_seconds": 30})
    return {"store": store, "fence": fence, "token": service.key("campaign_manager")}


def local(delta: timedelta) -> str:
    return (now() + delta).strftime("%Y-%m-%dT%H:%M")


def fill_campaign(page: Any, store: str, name: str, starts: str, ends: str,
                  ttl: str = "900") -> None:
    page.get_by_label("Campaign name").fill(name)
    page.get_by_label("Kind").select_option("enter")
    page.get_by_role("group", name="Stores (any fence of them)").get_by_label(store).check()
    page.get_by_label("Starts (UTC)").fill(starts)
    page.get_by_label("Ends (UTC)").fill(ends)
    page.get_by_role("button", name="Add a daypart").click()
    page.get_by_label("Title").fill("Coffee -20 %")
    page.get_by_label("Body").fill("Today only, at the counter")
    page.get_by_label("Deep link").fill("shop://offers/coffee")
    page.get_by_label("Data (one key=value a line)").fill("sku=coffee-1")
    page.get_by_label("Offer lifetime (seconds)").fill(ttl)
    page.get_by_label("At most (pushes per device)").fill("1")
    page.get_by_label("… per period (seconds)").fill("86400")
    page.get_by_label("Holdout (%)").fill("10")
    page.get_by_role("group", name="Micromoments").get_by_label("go").check()


def test_a_campaign_is_created_through_the_form_and_activated(
    page: Any, service: Service, world: dict[str, Any],
) -> None:
    sign_in(page, service, world["token"])
    page.get_by_role("link", name="New campaign").click()
    fill_campaign(page, world["store"]["name"], "coffee at the door",
                  local(timedelta(days=-1)), local(timedelta(days=1)))
    preview = page.get_by_role("group", name="How the notification looks")
    assert preview.locator(".phone").all_inner_texts()[0].splitlines()[1:3] == [
        "Coffee -20 %", "Today only, at the counter"]
    assert preview.locator('[data-platform="ios"]').get_by_text("Coffee -20 %").is_visible()
    screenshot(page, "campaign-form", full_page=True)
    page.get_by_role("button", name="Create campaign").click()
    page.get_by_role("button", name="Activate coffee at the door").click()
    page.get_by_role("button", name="Pause coffee at the door").wait_for()
    (campaign,) = [c for c in service.ok("GET", "/v1/campaigns")["items"]
                   if c["name"] == "coffee at the door"]
    assert (campaign["status"], campaign["trigger"]["kind"], campaign["trigger"]["store_ids"],
            campaign["schedule"]["dayparts"], campaign["offer"]["data"],
            campaign["offer"]["deep_link"], campaign["offer_ttl_seconds"], campaign["caps"],
            campaign["holdout_percent"], campaign["audience"]["micromoments"]) == (
        "active", "enter", [world["store"]["id"]],
        [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "18:00"}], {"sku": "coffee-1"},
        "shop://offers/coffee", 900,
        {"per_device": {"count": 1, "period_seconds": 86400}, "cooldown_seconds": None}, 10.0,
        ["go"])
    page.get_by_role("link", name="← All campaigns").click()
    row = page.locator("#campaign-table tbody tr").filter(has_text="coffee at the door")
    assert row.locator(".badge").text_content() == "active"


def test_the_apis_errors_are_shown_at_their_fields(
    page: Any, service: Service, world: dict[str, Any],
) -> None:
    sign_in(page, service, world["token"])
    page.get_by_role("link", name="New campaign").click()
    fill_campaign(page, world["store"]["name"], "backwards",
                  local(timedelta(days=1)), local(timedelta(days=-1)), "5")
    page.get_by_role("button", name="Create campaign").click()
    ends_error = page.locator("#cf-schedule-ends-at-error")
    ends_error.get_by_text("must be after starts_at").wait_for()
    assert page.get_by_label("Ends (UTC)").get_attribute("aria-invalid") == "true"
    page.get_by_label("Ends (UTC)").fill(local(timedelta(days=2)))
    # Backtesting the proposal: the API names the field under `campaign.`, shown at the field.
    page.get_by_role("button", name="Run the backtest").click()
    ttl_error = page.locator("#cf-offer-ttl-seconds-error")
    ttl_error.get_by_text("60").wait_for()
    assert page.locator("#backtest-error").inner_text() == (
        "The campaign has errors: see its fields.")
    page.get_by_role("button", name="Create campaign").click()
    ttl_error.get_by_text("60").wait_for()
    # The browser logs each refused request (400); nothing else may be logged.
    page.watch.errors[:] = [e for e in page.watch.errors if "400 (Bad Request)" not in e]
    screenshot(page, "campaign-form-errors")
    assert (page.get_by_label("Offer lifetime (seconds)").get_attribute("aria-invalid"),
            page.get_by_label("Ends (UTC)").get_attribute("aria-invalid"),
            [c for c in service.ok("GET", "/v1/campaigns")["items"] if c["name"] == "backwards"]
            ) == ("true", None, [])


def live_campaign(service: Service, store: dict[str, Any], name: str, devices: int,
                  status: str = "active", north_m: float = 0) -> dict[str, Any]:
    """A campaign on `store`, whose fence is `north_m` north of the shop, and `devices` devices
    that walked into it (the first without consent to marketing pushes)."""
    campaign: dict[str, Any] = service.ok("POST", "/v1/campaigns", json={
        "name": name, "trigger": {"kind": "enter", "store_ids": [store["id"]]},
        "schedule": {"starts_at": (now() - timedelta(days=1)).isoformat(),
                     "ends_at": (now() + timedelta(days=1)).isoformat()},
        "offer": {"title": "Croissant 1 €", "body": "Until noon"}, "offer_ttl_seconds": 900,
        "status": status})
    app = service.key("app")
    t0 = now() - timedelta(seconds=120)
    pings = [{"lat": lat, "lng": lng, "accuracy_m": 8,
              "ts": (t0 + timedelta(seconds=10 * i)).isoformat()}
             for i, (lat, lng) in enumerate(offset(SHOP_LAT, SHOP_LNG, north_m + north, 0)
                                            for north in [300, 200, 120, 60, 10, 0, -5, 0])]
    for i in range(devices):
        device = service.ok("POST", "/v1/devices", token=app, json={
            "platform": "android", "fcm_token": f"tok-console-{i}", "timezone": "Europe/Paris",
            "consent": {"location": True, "marketing_push": i > 0}})
        service.ok("POST", "/v1/pings", token=device["device_token"], expect=202,
                   json={"pings": pings})
    return campaign


def rate(r: float | None) -> str:
    """A rate as the page writes it (uplift.js)."""
    return "–" if r is None else f"{100 * r:.1f} %"


def test_the_dashboard_shows_the_apis_funnel_uplift_and_why_a_delivery_went_out(
    page: Any, service: Service, world: dict[str, Any],
) -> None:
    campaign = live_campaign(service, world["store"], "croissant hour", devices=3)
    stats = service.ok("GET", f"/v1/campaigns/{campaign['id']}/stats")
    uplift = service.ok("GET", f"/v1/campaigns/{campaign['id']}/uplift")
    assert (stats["triggered"], stats["suppressed"]["consent"]) == (3, 1)
    sign_in(page, service, world["token"])
    page.get_by_role("link", name="croissant hour").click()
    page.locator("#uplift-groups").wait_for()
    page.locator("#funnel-chart canvas").wait_for()
    funnel = [row.split("\t")[:2] for row in page.locator("#funnel tbody tr").all_inner_texts()]
    groups = [row.split("\t") for row in page.locator("#uplift-groups tbody tr").all_inner_texts()]
    suppressed = [row.split("\t")[:2] for row in
                  page.locator("#suppressions tbody tr").all_inner_texts()]
    assert (funnel, suppressed, groups) == (
        [[label, str(stats[key])] for key, label in [
            ("triggered", "Triggered"), ("sent", "Sent"), ("opened", "Opened"),
            ("redeemed", "Redeemed"), ("conversions", "Converted")]],
        [["consent", "1"]],
        [[name, str(g["n"]), str(g["conversions"]), rate(g["rate"])]
         for name, g in [("Treated (sent)", uplift["treated"]),
                         ("Control (holdout)", uplift["control"])]])
    # No push went out here (no FCM in these tests): no interval, said in words.
    assert (uplift["ci95"], page.locator("#uplift-verdict").inner_text()) == (
        None, "Not enough data for an uplift and its 95 % interval yet.")
    assert page.locator("#latency tbody").inner_text().split() == ["–"] * 3
    page.get_by_role("button", name="Why this delivery").first.click()
    page.locator("#why").get_by_text("Chosen: this campaign (croissant hour)").wait_for()
    screenshot(page, "campaign-dashboard", full_page=True)
    rows = page.locator("#deliveries tbody tr:not(.why-row)").all_inner_texts()
    assert (len(rows), world["store"]["name"] in rows[0], "enter" in rows[0]) == (
        2, True, True), rows


def test_the_backtest_button_shows_the_apis_would_send(
    page: Any, service: Service, world: dict[str, Any],
) -> None:
    # A store of its own, 5 km from the others, and a paused campaign: what the backtest finds
    # is this campaign's alone.
    north_m = 5000
    store = service.ok("POST", "/v1/stores",
                       json={"name": "Batignolles", "timezone": "Europe/Paris"})
    lat, lng = offset(SHOP_LAT, SHOP_LNG, north_m, 0)
    service.ok("POST", f"/v1/stores/{store['id']}/geofences", json={
        "name": "door", "geometry": {"type": "Point", "coordinates": [lng, lat]},
        "radius_m": 60, "dwell_seconds": 30})
    campaign = live_campaign(service, store, "coffee replay", devices=2, status="paused",
                             north_m=north_m)
    period = {"from": (now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:00Z"),
              "to": (now() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:00Z")}
    spec = {k: campaign[k] for k in ("name", "trigger", "schedule", "offer", "offer_ttl_seconds",
                                      "priority", "caps", "holdout_percent", "audience", "value")}
    expected = service.ok("POST", "/v1/campaigns/backtest", expect=200,
                          json={"campaign": spec, **period})
    assert (expected["moments"], expected["would_send"], expected["suppressed"]["consent"]) == (
        2, 1, 1)
    sign_in(page, service, world["token"])
    page.get_by_role("link", name="coffee replay").click()
    page.get_by_label("From (UTC)").fill(period["from"][:16])
    page.get_by_label("to (UTC)").fill(period["to"][:16])
    page.get_by_role("button", name="Run the backtest").click()
    page.locator("#backtest-hours canvas").wait_for()
    figures = page.locator("#backtest-figures").inner_text().splitlines()
    fences = page.locator("#backtest-fences tbody tr").all_inner_texts()
    screenshot(page, "campaign-backtest", full_page=True)
    assert (figures[figures.index("Would send") + 1], figures[figures.index("Moments") + 1],
            len(fences)) == (str(expected["would_send"]), str(expected["moments"]),
                             len(expected["by_geofence"]))
    # A period the API refuses: its reason in words, nothing shown as a result.
    page.get_by_label("From (UTC)").fill((now() - timedelta(days=9)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Run the backtest").click()
    page.locator("#backtest-error").get_by_text("at most 7 days").wait_for()
    page.watch.errors[:] = [e for e in page.watch.errors if "400 (Bad Request)" not in e]
    assert page.locator("#backtest-result").inner_text() == ""


def test_campaign_staff_read_the_map_but_may_not_draw(
    page: Any, service: Service, world: dict[str, Any],
) -> None:
    sign_in(page, service, world["token"])
    page.get_by_role("link", name="Stores & fences").click()
    page.locator("#fence-list button").first.wait_for()
    assert (page.locator(".leaflet-pm-toolbar").count(), page.get_by_label("Name", exact=True)
            .is_visible()) == (0, False)
