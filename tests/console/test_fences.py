"""Store managers draw fences on the map: what they draw is what the API then returns (within a
metre), and a shape the API refuses shows the API's reason next to it."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.clock import now
from tests.console.conftest import Service, screenshot, sign_in

EARTH_M = 6_371_000.0  # Leaflet's L.CRS.Earth.R, which Leaflet measures circles with


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lng1), (lat2, lng2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2)
    return 2 * EARTH_M * math.asin(math.sqrt(h))


@pytest.fixture
def shop(service: Service) -> dict[str, Any]:
    """A store with one 60 m circle, which the map fits its view to."""
    store = service.ok("POST", "/v1/stores", json={"name": "Rue Cler", "timezone": "Europe/Paris"})
    service.ok("POST", f"/v1/stores/{store['id']}/geofences", json={
        "name": "door", "geometry": {"type": "Point", "coordinates": [2.3522, 48.8566]},
        "radius_m": 60})
    token = service.key("store_manager", [store["id"]])
    return {"store": store, "token": token}


class MapHand:
    """Points on the map by pixel, and where the map says they are (its pointer read-out)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        box = page.locator("#map").bounding_box()
        self.x0, self.y0 = box["x"], box["y"]

    def at(self, x: float, y: float) -> tuple[float, float]:
        self.page.mouse.move(self.x0 + x, self.y0 + y)
        lat, lng = self.page.locator("#pointer").text_content().split(", ")
        return float(lat), float(lng)

    def click(self, x: float, y: float) -> tuple[float, float]:
        where = self.at(x, y)
        self.page.mouse.click(self.x0 + x, self.y0 + y)
        return where

    def tool(self, title: str) -> None:
        self.page.locator(f'.button-container[title="{title}"] a').first.click()


def open_map(page: Any, service: Service, token: str) -> MapHand:
    sign_in(page, service, token)
    page.locator("#fence-list button").first.wait_for()
    return MapHand(page)


def saved(page: Any, name: str) -> None:
    page.locator("#map-status").get_by_text(f"Fence “{name}” saved.").wait_for()


def test_a_drawn_polygon_is_the_fence_the_api_returns(
    page: Any, service: Service, shop: dict[str, Any],
) -> None:
    hand = open_map(page, service, shop["token"])
    page.get_by_label("Name of the next fence drawn").fill("car park")
    hand.tool("Draw Polygons")
    corners = [hand.click(x, y) for x, y in [(120, 60), (300, 80), (280, 220), (110, 200)]]
    hand.click(120, 60)  # the first vertex again closes the ring
    saved(page, "car park")
    screenshot(page, "map")
    fences = service.ok("GET", f"/v1/geofences?store_id={shop['store']['id']}")["items"]
    (fence,) = [f for f in fences if f["name"] == "car park"]
    ring = fence["geometry"]["coordinates"][0]
    assert (fence["geometry"]["type"], len(ring), ring[0] == ring[-1]) == ("Polygon", 5, True)
    drawn = {tuple(c) for c in corners}
    got = [(lat, lng) for lng, lat in ring[:-1]]
    far = [max(min(metres(p, q) for q in drawn) for p in got),
           max(min(metres(p, q) for q in got) for p in drawn)]
    assert max(far) < 1.0, far


def test_a_drawn_circle_is_a_point_and_radius_within_a_metre(
    page: Any, service: Service, shop: dict[str, Any],
) -> None:
    hand = open_map(page, service, shop["token"])
    page.get_by_label("Name of the next fence drawn").fill("entrance")
    hand.tool("Draw Circle")
    centre = hand.click(380, 560)
    edge = hand.click(460, 560)
    saved(page, "entrance")
    fences = service.ok("GET", f"/v1/geofences?store_id={shop['store']['id']}")["items"]
    (fence,) = [f for f in fences if f["name"] == "entrance"]
    lng, lat = fence["geometry"]["coordinates"]
    assert (fence["geometry"]["type"], metres((lat, lng), centre) < 1.0,
            abs(fence["radius_m"] - metres(centre, edge)) < 1.0) == ("Point", True, True), (
        fence, centre, edge)


def test_a_self_intersecting_shape_shows_the_apis_reason_next_to_it(
    page: Any, service: Service, shop: dict[str, Any],
) -> None:
    hand = open_map(page, service, shop["token"])
    page.get_by_label("Name of the next fence drawn").fill("bow tie")
    hand.tool("Draw Polygons")
    for x, y in [(120, 300), (300, 420), (300, 300), (120, 420), (120, 300)]:
        hand.click(x, y)
    reason = page.locator(".leaflet-tooltip.shape-error")
    reason.wait_for()
    screenshot(page, "map-invalid-shape")
    text = reason.text_content()
    # The browser logs the refused request (400); nothing else may be logged.
    page.watch.errors[:] = [e for e in page.watch.errors if "400" not in e]
    fences = service.ok("GET", f"/v1/geofences?store_id={shop['store']['id']}")["items"]
    assert ("geometry" in text, "self-intersection" in text.lower(),
            page.locator("#map-error").text_content() == text,
            [f["name"] for f in fences]) == (True, True, True, ["door"])


def test_rename_dwell_tags_and_delete_go_through_the_api(
    page: Any, service: Service, shop: dict[str, Any],
) -> None:
    open_map(page, service, shop["token"])
    page.locator("#fence-list button").first.click()
    page.get_by_label("Name", exact=True).fill("front door")
    page.get_by_label("Dwell time (seconds)").fill("45")
    page.get_by_label("Tags (comma-separated)").fill("entrance, street")
    page.get_by_role("button", name="Save").click()
    page.locator("#map-status").get_by_text("Fence “front door” saved").wait_for()
    (fence,) = service.ok("GET", f"/v1/geofences?store_id={shop['store']['id']}")["items"]
    assert (fence["name"], fence["dwell_seconds"], fence["tags"], fence["version"]) == (
        "front door", 45, ["entrance", "street"], 2)
    page.get_by_label("Dwell time (seconds)").fill("-5")
    page.get_by_role("button", name="Save").click()
    page.locator("#map-error").get_by_text("dwell_seconds").wait_for()
    page.watch.errors[:] = [e for e in page.watch.errors if "400" not in e]
    assert page.get_by_label("Dwell time (seconds)").get_attribute("aria-invalid") == "true"
    page.get_by_role("button", name="Delete").click()
    page.locator("#map-status").get_by_text("deleted").wait_for()
    assert service.ok("GET", f"/v1/geofences?store_id={shop['store']['id']}")["items"] == []


def test_export_then_import_round_trips_the_fences(
    page: Any, service: Service, shop: dict[str, Any], tmp_path: Path,
) -> None:
    open_map(page, service, shop["token"])
    with page.expect_download() as download:
        page.get_by_role("button", name="Export this store's fences").click()
    exported = json.loads(Path(download.value.path()).read_text())
    for feature in exported["features"]:
        feature["properties"]["name"] = "copy of " + feature["properties"]["name"]
    path = tmp_path / "fences.geojson"
    path.write_text(json.dumps(exported))
    page.get_by_label("Import a GeoJSON FeatureCollection").set_input_files(str(path))
    page.locator("#map-status").get_by_text("Imported 1 fences").wait_for()
    fences = service.ok("GET", f"/v1/geofences?store_id={shop['store']['id']}")["items"]
    assert sorted((f["name"], f["radius_m"]) for f in fences) == [
        ("copy of door", 60), ("door", 60)]


def test_the_heat_layer_shows_cells_after_pings(
    page: Any, service: Service, shop: dict[str, Any],
) -> None:
    app = service.key("app")
    for i in range(5):
        device = service.ok("POST", "/v1/devices", token=app, json={
            "platform": "android", "fcm_token": f"tok-heat-{i}",
            "consent": {"location": True, "marketing_push": False}})
        ts = (now() - timedelta(minutes=10)).isoformat()
        service.ok("POST", "/v1/pings", token=device["device_token"], expect=202, json={
            "pings": [{"lat": 48.8566, "lng": 2.3522, "ts": ts, "accuracy_m": 5}]})
    open_map(page, service, shop["token"])
    page.get_by_label("Heat of pings").select_option("hour")
    page.locator("#heat-status").get_by_text("1 cell with pings in the last hour").wait_for()
    cells = page.locator("path.heat-cell")
    cells.first.hover()
    page.locator(".leaflet-tooltip").get_by_text("5 pings, 5 devices").wait_for()
    screenshot(page, "map-heat")
    assert cells.count() == 1
