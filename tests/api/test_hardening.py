"""Bad input, named: every malformed, invalid, oversized, misspelt or out-of-scope request gets its
documented 4xx as problem+json naming the field and the reason, shows nothing of the service's
insides, and changes nothing in the database. Device bodies with fields from a newer app are
accepted (the contract: staff bodies refuse unknown fields, device bodies ignore them).

Scope refusals are only sampled here for what the role matrix (test_roles.py) does not check:
the body of the refusal. The app runs on a pinned clock; ping times are relative to it.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from app.clock import PinnedClock
from app.main import create_app
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for
from tests.api.test_roles import database_rows

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = datetime(2026, 11, 18, 10, 30, tzinfo=UTC)
TS = (NOW - timedelta(seconds=30)).isoformat()
Json = dict[str, Any]
# What no error body may show: stack traces, source paths, SQL, library internals.
INTERNALS = re.compile(r"Traceback|File \"|\.py\b|/work/|/home/|site-packages|\bSELECT\b|"
                       r"\bINSERT\b|\bUPDATE\b|\bFROM\b|asyncpg|msgspec|litestar", re.IGNORECASE)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str) -> AsyncIterator[Api]:
    app = create_app(settings_for(module_database_url), clock=PinnedClock(NOW))
    async with AsyncTestClient(app=app) as client:
        yield Api(client)


@dataclass(frozen=True)
class World:
    ids: dict[str, str]  # store_a, store_b, fence_b, campaign
    tokens: dict[str, str]  # admin, store_manager (of A), device, revoked, campaign_manager


def square(lng: float = 2.35, lat: float = 48.85, size: float = 0.001) -> Json:
    return {"type": "Polygon", "coordinates": [[[lng, lat], [lng + size, lat],
                                                [lng + size, lat + size], [lng, lat + size],
                                                [lng, lat]]]}


def bowtie() -> Json:
    return {"type": "Polygon", "coordinates": [[[2.35, 48.85], [2.351, 48.851], [2.351, 48.85],
                                                [2.35, 48.851], [2.35, 48.85]]]}


def ring_of(n: int) -> Json:
    ring = [[2.35 + 0.004 * math.cos(2 * math.pi * k / (n - 1)),
             48.85 + 0.004 * math.sin(2 * math.pi * k / (n - 1))] for k in range(n - 1)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def campaign_body(**changes: Any) -> Json:
    body: Json = {
        "name": "coats", "trigger": {"kind": "enter", "tags": ["hardening"]},
        "schedule": {"starts_at": (NOW - timedelta(days=1)).isoformat(),
                     "ends_at": (NOW + timedelta(days=30)).isoformat()},
        "offer": {"title": "Coats", "body": "20% off"}, "offer_ttl_seconds": 900,
    }
    body.update(changes)
    return body


def feature(name: str, geometry: Json, **properties: Any) -> Json:
    return {"type": "Feature", "geometry": geometry, "properties": {"name": name, **properties}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(api: Api) -> World:
    a = await api.ok("POST", "/v1/stores", json={"name": "A", "timezone": "Europe/Paris"})
    b = await api.ok("POST", "/v1/stores", json={"name": "B", "timezone": "Europe/Paris"})
    fence_b = await api.ok("POST", f"/v1/stores/{b['id']}/geofences",
                           json={"name": "B door", "geometry": square()})
    campaign = await api.ok("POST", "/v1/campaigns", json=campaign_body())
    manager = await api.ok("POST", "/v1/api-keys", json={"name": "A manager",
                                                        "role": "store_manager",
                                                        "store_ids": [a["id"]]})
    app = await api.ok("POST", "/v1/api-keys", json={"name": "app", "role": "app"})
    revoked = await api.ok("POST", "/v1/api-keys", json={"name": "gone", "role": "admin"})
    await api.ok("DELETE", f"/v1/api-keys/{revoked['id']}")
    device = await api.ok("POST", "/v1/devices", app["token"], json={
        "platform": "ios", "fid": f"fid-{secrets.token_hex(6)}",
        "consent": {"location": True, "marketing_push": True}})
    return World(
        ids={"store_a": a["id"], "store_b": b["id"], "fence_b": fence_b["id"],
             "campaign": campaign["id"]},
        tokens={"admin": ADMIN_TOKEN, "store_manager": manager["token"],
                "device": device["device_token"], "revoked": revoked["token"],
                "app": app["token"]},
    )


def text(value: Any) -> bytes:
    return json.dumps(value).encode()


def pings_text(*pings: str) -> bytes:
    """A batch whose pings are given as JSON text, so they may hold what JSON cannot."""
    return b'{"pings": [' + ", ".join(pings).encode() + b"]}"


def ping(**fields: str) -> str:
    values = {"lat": "48.85", "lng": "2.35", "ts": json.dumps(TS), **fields}
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"


# caller, method, path (with {store_a}, {store_b}, {fence_b}, {campaign}), body bytes,
# status, field named (None: no field errors expected), a word of the reason.

REFUSED = [
    pytest.param("admin", "POST", "/v1/stores", lambda: b'{name: "Rivoli"}', 400, "body",
                 "not valid JSON", id="a store body that is not JSON is refused naming the body"),
    pytest.param("device", "POST", "/v1/pings", lambda: text([{"lat": 48.85, "lng": 2.35}]),
                 400, "body", "Expected `object`, got `array`",
                 id="a ping batch sent as a list, not an object, is refused naming the body"),
    pytest.param("admin", "POST", "/v1/stores/{store_a}/geofences",
                 lambda: text({"name": "door", "geometry": "POLYGON((2 48, 3 48, 2 49, 2 48))"}),
                 400, "geometry", "got `str`",
                 id="a geometry given as WKT text is refused naming geometry"),
    pytest.param("device", "POST", "/v1/pings",
                 lambda: pings_text(*[ping(accuracy_m=json.dumps("x" * 100))] * 8_000), 413,
                 None, "larger than the limit", id="a body over 1 MiB is refused with 413"),
    pytest.param("device", "POST", "/v1/pings", lambda: pings_text(*[ping()] * 10_000), 400,
                 "pings", "length <= 500", id="10,000 pings in one batch are refused naming pings"),
    pytest.param("device", "POST", "/v1/pings", lambda: pings_text(ping(), ping(lat="NaN")), 400,
                 "pings[1].lat", "NaN is not a JSON number",
                 id="NaN as a latitude is refused whole naming pings[1].lat"),
    pytest.param("device", "POST", "/v1/pings", lambda: pings_text(ping(lng="Infinity")), 400,
                 "pings[0].lng", "Infinity is not a JSON number",
                 id="Infinity as a longitude is refused whole naming pings[0].lng"),
    pytest.param("device", "POST", "/v1/pings",
                 lambda: pings_text(ping(accuracy_m="-Infinity")), 400, "pings[0].accuracy_m",
                 "Infinity is not a JSON number",
                 id="-Infinity as an accuracy is refused whole naming pings[0].accuracy_m"),
    pytest.param("device", "POST", "/v1/pings", lambda: pings_text(ping(lng="-1e999")), 400,
                 "pings[0].lng", "out of range",
                 id="-1e999, beyond any double, as a longitude is refused naming pings[0].lng"),
    pytest.param("admin", "POST", "/v1/stores/{store_a}/geofences",
                 lambda: json.dumps({"name": "door", "geometry": square()}).replace(
                     "48.851", "NaN", 1).encode(), 400, "geometry.coordinates[0][2][1]",
                 "NaN is not a JSON number", id="NaN in a fence is refused naming its position"),
    pytest.param("admin", "POST", "/v1/stores/{store_a}/geofences",
                 lambda: text({"name": "lace", "geometry": ring_of(2_001)}), 400,
                 "geometry.coordinates", "over the limit of 2,000",
                 id="a polygon of 2,001 positions is refused with the limit"),
    pytest.param("admin", "POST", "/v1/stores/{store_a}/geofences",
                 lambda: text({"name": "bowtie", "geometry": bowtie()}), 400,
                 "geometry.coordinates", "Self-intersection",
                 id="a self-intersecting polygon is refused with the reason"),
    pytest.param("admin", "POST", "/v1/stores/{store_a}/geofences",
                 lambda: text({"name": "door", "geometry": square(), "dwel_seconds": 60}), 400,
                 "dwel_seconds", "unknown field",
                 id="a geofence with a misspelt dwel_seconds is refused naming it"),
    pytest.param("admin", "POST", "/v1/campaigns",
                 lambda: text({**campaign_body(), "offer_tll_seconds": 600}), 400,
                 "offer_tll_seconds", "unknown field",
                 id="a campaign with a misspelt offer_tll_seconds is refused naming it"),
    pytest.param("admin", "PUT", "/v1/policy",
                 lambda: text({"max_per_device_per_dya": 2}), 400, "max_per_device_per_dya",
                 "unknown field", id="a policy with a misspelt max_per_device_per_dya is refused"),
    pytest.param("admin", "PATCH", "/v1/stores/{store_a}", lambda: text({"adress": "1 rue"}),
                 400, "adress", "unknown field",
                 id="a store change with a misspelt adress is refused naming it"),
    pytest.param("admin", "POST", "/v1/stores/{store_a}/geofences/import",
                 lambda: text({"type": "FeatureCollection", "features": [
                     feature("hall", square()), feature("door", square(), dwel_seconds=60)]}),
                 400, "features[1].properties.dwel_seconds", "unknown field",
                 id="an imported feature with a misspelt dwel_seconds is refused naming it"),
    pytest.param("admin", "POST", "/v1/stores/{store_a}/geofences/import",
                 lambda: text({"type": "FeatureCollection", "features": [
                     feature("hall", square()), feature("a", square(2.36)),
                     feature("b", square(2.37)), feature("bowtie", bowtie()),
                     feature("c", square(2.38))]}),
                 400, "features[3].geometry.coordinates", "Self-intersection",
                 id="an import whose fourth feature self-intersects stores none of the five"),
    pytest.param("admin", "POST", "/v1/stores/{store_a}/geofences/import",
                 lambda: text({"type": "FeatureCollection", "features": [
                     feature("hall", square()), feature("lace", ring_of(2_001))]}),
                 400, "features[1].geometry.coordinates", "over the limit of 2,000",
                 id="an import whose second feature has 2,001 positions stores neither"),
    pytest.param("store_manager", "PUT", "/v1/geofences/{fence_b}",
                 lambda: text({"name": "mine now", "geometry": square()}), 404, None,
                 "does not exist",
                 id="a store manager replacing another store's fence is told it does not exist"),
    pytest.param("store_manager", "PATCH", "/v1/campaigns/{campaign}",
                 lambda: text({"priority": 9}), 403, None, "",
                 id="a store manager changing a campaign is forbidden"),
    pytest.param("revoked", "POST", "/v1/stores", lambda: text({"name": "C", "timezone": "UTC"}),
                 401, None, "", id="a revoked key is refused as unknown"),
    pytest.param("device", "POST", "/v1/stores/{store_a}/geofences",
                 lambda: text({"name": "door", "geometry": square()}), 403, None, "",
                 id="a device token drawing a fence is forbidden"),
]


@pytest.mark.parametrize(("caller", "method", "path", "body", "status", "field", "word"),
                         REFUSED)
async def test_a_refused_request_names_the_field_shows_no_internals_and_changes_nothing(
    api: Api, module_db: asyncpg.Connection, world: World, caller: str, method: str, path: str,
    body: Callable[[], bytes], status: int, field: str | None, word: str,
) -> None:
    before = await database_rows(module_db)

    response = await api.call(method, path.format(**world.ids), world.tokens[caller],
                              content=body(), headers={"Content-Type": "application/json"})

    problem = response.json()
    named = [(e["field"], word in e["message"]) for e in problem.get("errors", [])]
    assert (response.status_code, problem["status"], response.headers["content-type"]) == (
        status, status, "application/problem+json"), response.text
    assert named == ([(field, True)] if field else []), problem
    assert word in problem["detail"], problem
    assert INTERNALS.search(response.text) is None, response.text
    assert await database_rows(module_db) == before, "a refused request changed data"


# ------------------------------------------------ device bodies: fields of a newer app ignored

def _newer_registration(world: World) -> Json:
    return {"platform": "android", "fcm_token": f"fcm-{secrets.token_hex(6)}",
            "nickname": "Bob", "consent": {"location": True, "marketing_push": False,
                                           "ads_tracking": True}}


ACCEPTED = [
    pytest.param("app", "POST /v1/devices", _newer_registration, 201,
                 "SELECT count(*) FROM devices", 1,
                 id="a registration with fields of a newer app registers the device"),
    pytest.param("device", "POST /v1/pings", lambda w: {
        "batch_id": "b-1", "pings": [{"lat": 48.85, "lng": 2.35, "ts": TS, "altitude": 35,
                                      "floor": {"level": 2}}]}, 202,
                 "SELECT count(*) FROM pings", 1,
                 id="a ping batch with unknown fields on it and on its ping stores the ping"),
    pytest.param("device", "POST /v1/signals", lambda w: {
        "signals": [{"kind": "search", "ts": TS, "session": "s-9",
                     "attributes": {"query": "coats"}}]}, 202,
                 "SELECT count(*) FROM signals", 1,
                 id="a signal with an unknown field is stored"),
    pytest.param("device", "PATCH /v1/devices/me", lambda w: {"locale": "fr-FR",
                                                              "theme": "dark"}, 200,
                 "SELECT count(*) FROM devices WHERE locale = 'fr-FR'", 1,
                 id="a device change with an unknown field is applied"),
    pytest.param("device", f"POST /v1/deliveries/{uuid.UUID(int=7)}/events", lambda w: {
        "kind": "opened", "ts": TS, "source": "notification_tray"}, 404,
                 "SELECT count(*) FROM deliveries", 0,
                 id="a delivery event with an unknown field is decoded (its unknown id is 404)"),
]


@pytest.mark.parametrize(("caller", "route", "body", "status", "count", "stored"), ACCEPTED)
async def test_a_device_body_with_unknown_fields_is_accepted(
    api: Api, module_db: asyncpg.Connection, world: World, caller: str, route: str,
    body: Callable[[World], Json], status: int, count: str, stored: int,
) -> None:
    method, path = route.split(" ", 1)
    if caller == "device":  # a fresh device of its own, so that counts are this case's alone
        fresh = await api.ok("POST", "/v1/devices", world.tokens["app"],
                             json=_newer_registration(world))
        token = fresh["device_token"]
    else:
        token = world.tokens[caller]
    before = await module_db.fetchval(count)

    response = await api.call(method, path, token, json=body(world))

    scoped = await module_db.fetchval(count) - before
    assert (response.status_code, scoped) == (status, stored), response.text
