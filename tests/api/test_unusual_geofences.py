"""Unusual but valid fences over HTTP: holes, 50 parts, the antimeridian (both ways of writing
it), near the poles, and the largest allowed area. Each is stored as given, exported and
re-imported identically, and matched by the pipeline: a ping sent through `POST /v1/pings` inside
it makes an `entered` geo event, a ping outside makes none.

The app runs on a pinned clock; every ping is 10 s before it. Each ping comes from its own
device, so every case starts outside.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import h3
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from app.clock import PinnedClock
from app.main import create_app
from tests.api.conftest import Api, settings_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = datetime(2026, 11, 18, 10, 30, tzinfo=UTC)
Json = dict[str, Any]
Ping = tuple[float, float]  # lat, lng


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str) -> AsyncIterator[Api]:
    app = create_app(settings_for(module_database_url), clock=PinnedClock(NOW))
    async with AsyncTestClient(app=app) as client:
        yield Api(client)


def box(west: float, south: float, east: float, north: float) -> list[list[float]]:
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def around(lat0: float, lng0: float, radius_m: float, n: int) -> list[list[float]]:
    """A closed ring of n positions (n - 1 distinct) on a circle, longitudes within ±180."""
    ring = []
    for k in range(n - 1):
        a = 2 * math.pi * k / (n - 1)
        lat = lat0 + math.degrees(radius_m * math.sin(a) / 6_371_008.8)
        lng = lng0 + math.degrees(radius_m * math.cos(a)
                                  / (6_371_008.8 * math.cos(math.radians(lat0))))
        ring.append([lng - 360.0 * round(lng / 360.0), lat])
    return [*ring, ring[0]]


TAVEUNI_S, TAVEUNI_N = -16.82, -16.78
# A regular 1,999-gon of 24.9 km² (just under the limit) with 2,000 positions, the most allowed.
LARGEST_R = math.sqrt(2 * 24.9e6 / (1999 * math.sin(2 * math.pi / 1999)))

CASES = [
    pytest.param({"type": "Polygon", "coordinates": [box(2.34, 48.85, 2.36, 48.86),
                                                     box(2.345, 48.853, 2.355, 48.857)]}, None,
                 [(48.8515, 2.342)], [(48.855, 2.35)],
                 id="a ping in a polygon's ring enters it, a ping in its hole does not"),
    pytest.param({"type": "MultiPolygon",
                  "coordinates": [[box(2.3 + 0.005 * k, 48.85, 2.303 + 0.005 * k, 48.852)]
                                  for k in range(50)]}, None,
                 [(48.851, 2.3015 + 0.005 * 36)], [(48.851, 2.304 + 0.005 * 36)],
                 id="a ping in part 37 of a 50-part MultiPolygon enters it"),
    pytest.param({"type": "MultiPolygon",
                  "coordinates": [[box(179.98, TAVEUNI_S, 180.0, TAVEUNI_N)],
                                  [box(-180.0, TAVEUNI_S, -179.98, TAVEUNI_N)]]}, None,
                 [(-16.80, 179.99), (-16.80, -179.99)], [(-16.80, 179.97), (-16.80, -179.97)],
                 id="a fence on Taveuni cut at the antimeridian is entered from both sides"),
    pytest.param({"type": "Polygon",
                  "coordinates": [[[179.98, TAVEUNI_S], [-179.98, TAVEUNI_S],
                                   [-179.98, TAVEUNI_N], [179.98, TAVEUNI_N],
                                   [179.98, TAVEUNI_S]]]}, None,
                 [(-16.80, 179.99), (-16.80, -179.99)], [(-16.80, 0.0)],
                 id="a ring on Taveuni jumping the antimeridian is entered from both sides"),
    pytest.param({"type": "Point", "coordinates": [179.999, -16.8]}, 300.0,
                 [(-16.8, -179.9995)], [(-16.8, -179.99)],
                 id="a circle on the antimeridian is entered from its far side"),
    pytest.param({"type": "Polygon", "coordinates": [around(78.2232, 15.6267, 800.0, 24)]},
                 None, [(78.2232, 15.6267)], [(78.2232, 15.70)],
                 id="a fence in Longyearbyen, Svalbard, is entered at its centre"),
    pytest.param({"type": "Polygon", "coordinates": [around(-89.9, 30.0, 1_500.0, 40)]},
                 None, [(-89.9, 30.0)], [(-89.9, -150.0), (-89.92, 30.0)],
                 id="a fence around a station at 89.9 S is entered, not across the pole"),
    pytest.param({"type": "Point", "coordinates": [30.0, -89.9]}, 500.0,
                 [(-89.9, 31.0)], [(-89.9, 35.0)],
                 id="a circle around a station at 89.9 S is entered 190 m from its centre"),
    pytest.param({"type": "Polygon", "coordinates": [around(48.85, 2.35, LARGEST_R, 2_000)]},
                 None, [(48.85, 2.35)], [(48.85, 2.35 + 0.05)],
                 id="the largest fence, 24.9 km² of 2,000 positions, is entered in its middle"),
]


async def new_store(api: Api) -> str:
    body = {"name": f"store {secrets.token_hex(4)}", "timezone": "UTC"}
    store: Json = await api.ok("POST", "/v1/stores", json=body)
    return str(store["id"])


async def entered_by(api: Api, db: asyncpg.Connection, fence_id: str, ping: Ping) -> bool:
    """Whether one ping from a new device enters the fence (an `entered` geo event)."""
    app = await api.ok("POST", "/v1/api-keys", json={"name": "app", "role": "app"})
    device = await api.ok("POST", "/v1/devices", app["token"], json={
        "platform": "android", "fcm_token": f"fcm-{secrets.token_hex(6)}",
        "consent": {"location": True, "marketing_push": True}})
    lat, lng = ping
    ts = (NOW - timedelta(seconds=10)).isoformat()
    sent = await api.ok("POST", "/v1/pings", device["device_token"], expect=202, json={
        "pings": [{"lat": lat, "lng": lng, "ts": ts, "accuracy_m": 5.0}]})
    assert sent == {"accepted": 1, "rejected": []}, sent
    cell = await db.fetchval("SELECT cell FROM pings WHERE device_id = $1::uuid",
                             device["device_id"])
    assert cell == h3.str_to_int(h3.latlng_to_cell(lat, lng, 11)), (cell, ping)
    return bool(await db.fetchval(
        "SELECT count(*) FROM geo_events WHERE device_id = $1::uuid AND fence_id = $2::uuid "
        "AND kind = 'entered'", device["device_id"], fence_id))


@pytest.mark.parametrize(("geometry", "radius_m", "inside", "outside"), CASES)
async def test_an_unusual_fence_is_stored_and_entered_exactly_from_inside(
    api: Api, module_db: asyncpg.Connection, geometry: Json, radius_m: float | None,
    inside: list[Ping], outside: list[Ping],
) -> None:
    store = await new_store(api)
    body: Json = {"name": "unusual", "geometry": geometry, "dwell_seconds": 600}
    if radius_m is not None:
        body["radius_m"] = radius_m
    fence = await api.ok("POST", f"/v1/stores/{store}/geofences", json=body)

    read = await api.ok("GET", f"/v1/geofences/{fence['id']}")
    entered = [await entered_by(api, module_db, fence["id"], p) for p in [*inside, *outside]]

    assert (read["geometry"], entered) == (geometry, [True] * len(inside) + [False] * len(outside))


@pytest.mark.parametrize(("geometry", "radius_m", "inside", "outside"), CASES)
async def test_an_unusual_fence_exports_and_re_imports_identically(
    api: Api, geometry: Json, radius_m: float | None, inside: list[Ping],
    outside: list[Ping],
) -> None:
    source, target = await new_store(api), await new_store(api)
    body: Json = {"name": "unusual", "geometry": geometry}
    if radius_m is not None:
        body["radius_m"] = radius_m
    await api.ok("POST", f"/v1/stores/{source}/geofences", json=body)

    exported = await api.ok("GET", f"/v1/stores/{source}/geofences/export")
    await api.ok("POST", f"/v1/stores/{target}/geofences/import", json=exported)
    copied = await api.ok("GET", f"/v1/stores/{target}/geofences/export")

    assert [(f["geometry"], f["properties"]["radius_m"]) for f in copied["features"]] == [
        (geometry, radius_m)]
