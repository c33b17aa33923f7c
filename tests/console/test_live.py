"""The map screen's live feed and a fence's activity chart, in the browser: a manager at the
door with a test phone sees the enter arrive, and a fence with events gets its daily chart."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.clock import now
from tests.console.conftest import Service, _off_thread, screenshot, sign_in
from tests.e2e.conftest import SHOP_LAT, SHOP_LNG, offset


@pytest.fixture
def door(service: Service) -> dict[str, Any]:
    """A store with its door fence, its manager's key and a test phone."""
    store = service.ok("POST", "/v1/stores", json={"name": "Rue Cler", "timezone": "Europe/Paris"})
    fence = service.ok("POST", f"/v1/stores/{store['id']}/geofences", json={
        "name": "door", "geometry": {"type": "Point", "coordinates": [SHOP_LNG, SHOP_LAT]},
        "radius_m": 60})
    app = service.key("app")
    phone = service.ok("POST", "/v1/devices", app, json={
        "platform": "android", "fcm_token": "tok-test-phone",
        "consent": {"location": True, "marketing_push": True}})
    return {"store": store, "fence": fence, "phone": phone,
            "manager": service.key("store_manager", [store["id"]], name="Rue Cler manager")}


def walk_in(service: Service, device_token: str) -> list[datetime]:
    """Approach the door from 300 m north and stand inside; the fixes' instants."""
    t0 = now() - timedelta(minutes=2)
    pings = [{"lat": lat, "lng": lng, "accuracy_m": 8,
              "ts": (t0 + timedelta(seconds=10 * i)).isoformat()}
             for i, (lat, lng) in enumerate(offset(SHOP_LAT, SHOP_LNG, n, 0)
                                            for n in [300, 200, 120, 60, 10, 0, -5, 0])]
    service.ok("POST", "/v1/pings", device_token, expect=202, json={"pings": pings})
    return [datetime.fromisoformat(p["ts"]) for p in pings]


def open_feed(page: Any, service: Service, token: str) -> None:
    sign_in(page, service, token)
    page.locator("#fence-list button").first.wait_for()
    page.locator("#live-status").get_by_text("Live: moments and pushes at your stores").wait_for()


def test_the_live_feed_shows_an_enter_within_2_seconds_of_the_ping_batch(
    page: Any, service: Service, door: dict[str, Any],
) -> None:
    open_feed(page, service, door["manager"])
    fixes = walk_in(service, door["phone"]["device_token"])
    answered = time.monotonic()
    entry = page.locator("#live-feed li.live-enter").first
    entry.wait_for(timeout=2000)
    assert time.monotonic() - answered < 2.0
    # the instant of a fix, on the store's wall clock (Paris, summer time: UTC+2)
    shown, zone, *rest = entry.inner_text().split(" ")
    paris = {(f + timedelta(hours=2)).strftime("%H:%M:%S") for f in fixes}
    assert (shown in paris, zone) == (True, "CEST")
    assert " ".join(rest) == f"enter door · Rue Cler · device {door['phone']['device_id'][:8]}"


def test_a_fence_with_events_shows_its_enters_dwells_and_exits_per_day(
    page: Any, service: Service, door: dict[str, Any], console_database_url: str,
) -> None:
    """Two weeks of events at the door (days in Paris), then a walk in while the page is open:
    the chart counts it (the screenshot is docs/console-live.png)."""
    store, fence, device = door["store"]["id"], door["fence"]["id"], door["phone"]["device_id"]
    rows = []
    for day in range(1, 14):
        for n, kind in [(3 + (day * 7) % 9, "entered"), (1 + day % 4, "dwelled"),
                        (2 + (day * 5) % 7, "exited")]:
            at = now() - timedelta(days=day)
            rows += [f"('{device}', '{fence}', '{store}', '{kind}', "
                     f"'{(at + timedelta(minutes=i)).isoformat()}')" for i in range(n)]
    _off_thread("INSERT INTO geo_events (device_id, fence_id, store_id, kind, at) VALUES "
                + ", ".join(rows), dsn=console_database_url)
    service.ok("POST", "/v1/campaigns", json={
        "name": "Coffee at the door", "trigger": {"kind": "enter", "store_ids": [store]},
        "schedule": {"starts_at": (now() - timedelta(days=1)).isoformat(),
                     "ends_at": (now() + timedelta(days=1)).isoformat()},
        "offer": {"title": "Coffee", "body": "-20 % at the counter"},
        "offer_ttl_seconds": 900, "status": "active"})
    open_feed(page, service, door["manager"])
    page.locator("#fence-list button").first.click()
    chart = page.locator("#fence-chart canvas")
    chart.wait_for()
    status = page.locator("#fence-activity-status")
    expected = service.ok("GET", f"/v1/reports/fences?store_id={store}&geofence_id={fence}")
    totals = expected["fences"][0]
    assert f"{totals['enters']} enters, {totals['dwells']} dwells, {totals['exits']} exits" in \
        status.inner_text()
    walk_in(service, door["phone"]["device_token"])
    page.locator("#live-feed li.live-queued").wait_for()
    status.get_by_text(f"{totals['enters'] + 1} enters").wait_for()
    labels = page.locator("#fence-chart .u-legend .u-label").all_inner_texts()
    assert [label.strip() for label in labels] == ["day", "enters", "dwells", "exits"]
    screenshot(page, "live")
