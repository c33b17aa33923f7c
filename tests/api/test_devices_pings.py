"""Devices as the mobile app sees them (registration, settings, export, erasure) and what they
send (pings, signals): what is accepted, what is refused with which reason, and what is stored.

Every test registers its own devices in the one database the module shares.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone
from typing import Any

import asyncpg
import h3
import pytest
from litestar.testing import AsyncTestClient

from app.main import create_app
from tests.api.conftest import Api, settings_for
from tests.clock import CLOCK, at_local

pytestmark = pytest.mark.asyncio(loop_scope="module")

H3_RESOLUTION = 11  # the service's default, which the `api` settings keep
CONSENTED = {"location": True, "marketing_push": True}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


async def app_token(api: Api) -> str:
    key = await api.ok("POST", "/v1/api-keys", json={"name": "mobile app", "role": "app"})
    token: str = key["token"]
    return token


async def register(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"platform": "android", "fcm_token": unique("fcm"), "consent": CONSENTED, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    device: dict[str, Any] = await api.ok("POST", "/v1/devices", await app_token(api), json=body)
    return device


async def device_row(db: asyncpg.Connection, device_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM devices WHERE id = $1::uuid", device_id)
    assert row is not None, f"device {device_id} is not stored"
    return dict(row)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def ago(**delta: float) -> str:
    return iso(CLOCK() - timedelta(**delta))


# --- registration -------------------------------------------------------------------------------

GOOD_REGISTRATIONS = [
    pytest.param({"platform": "android", "fcm_token": "fcm-abc"},
                 {"platform": "android", "fcm_token": "fcm-abc", "fid": None},
                 id="an android install registers with its FCM registration token"),
    pytest.param({"platform": "ios", "fcm_token": None, "fid": "fid-xyz"},
                 {"platform": "ios", "fcm_token": None, "fid": "fid-xyz"},
                 id="an iOS install registers with its Firebase installation id"),
    pytest.param({"platform": "web", "customer_id": "C-1001", "locale": "fr-FR",
                  "timezone": "Europe/Paris", "app_version": "5.2.0",
                  "consent": {"location": False, "marketing_push": True}},
                 {"platform": "web", "customer_id": "C-1001", "locale": "fr-FR",
                  "timezone": "Europe/Paris", "app_version": "5.2.0",
                  "consent_location": False, "consent_marketing": True},
                 id="a web install registers with every optional field stored as given"),
]


@pytest.mark.parametrize(("fields", "stored"), GOOD_REGISTRATIONS)
async def test_a_device_registers(module_api: Api, module_db: asyncpg.Connection,
                                  fields: dict[str, Any], stored: dict[str, Any]) -> None:
    device = await register(module_api, **fields)

    row = await device_row(module_db, device["device_id"])
    assert {k: row[k] for k in stored} == stored


async def test_a_registration_returns_a_device_token(module_api: Api) -> None:
    device = await register(module_api)

    assert device["device_token"].startswith("ctxd_"), device


BAD_REGISTRATIONS = [
    pytest.param({"fcm_token": None}, "fcm_token",
                 id="a registration without a push address is refused naming fcm_token"),
    pytest.param({"fid": "fid-too"}, "fcm_token",
                 id="a registration with both fcm_token and fid is refused naming fcm_token"),
    pytest.param({"platform": "symbian"}, "platform",
                 id="an unknown platform is refused naming platform"),
    pytest.param({"timezone": "Mars/Olympus_Mons"}, "timezone",
                 id="a time zone that is not IANA is refused naming timezone"),
    pytest.param({"consent": None}, "consent",
                 id="a registration without consent is refused naming consent"),
    pytest.param({"consent": {"location": True}}, "consent.marketing_push",
                 id="a consent without marketing_push is refused naming consent.marketing_push"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_REGISTRATIONS)
async def test_a_bad_registration_is_refused_naming_the_field(
        module_api: Api, module_db: asyncpg.Connection, fields: dict[str, Any],
        field: str) -> None:
    token = await app_token(module_api)
    body = {"platform": "android", "fcm_token": unique("fcm"), "consent": CONSENTED, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    count = "SELECT count(*) FROM devices"
    before = await module_db.fetchval(count)

    response = await module_api.call("POST", "/v1/devices", token, json=body)

    named = [e["field"] for e in response.json().get("errors", [])]
    stored = await module_db.fetchval(count) - before
    assert (response.status_code, named, stored) == (400, [field], 0), response.text


# --- PATCH /v1/devices/me -----------------------------------------------------------------------

GOOD_PATCHES = [
    pytest.param({"fcm_token": None, "fid": "fid-old"}, {"fcm_token": "fcm-new"},
                 {"fcm_token": "fcm-new", "fid": None},
                 id="a new fcm_token replaces the fid"),
    pytest.param({"fcm_token": "fcm-old"}, {"fid": "fid-new"},
                 {"fcm_token": None, "fid": "fid-new"},
                 id="a new fid replaces the fcm_token"),
    pytest.param({}, {"consent": {"location": False}},
                 {"consent_location": False, "consent_marketing": True},
                 id="withdrawing location consent keeps marketing consent"),
    pytest.param({"timezone": "Europe/Paris", "locale": "fr-FR"},
                 {"timezone": "America/New_York", "locale": None},
                 {"timezone": "America/New_York", "locale": None},
                 id="a new time zone is stored and a null locale clears it"),
]


@pytest.mark.parametrize(("registered", "patch", "stored"), GOOD_PATCHES)
async def test_a_device_changes_its_settings(module_api: Api, module_db: asyncpg.Connection,
                                             registered: dict[str, Any], patch: dict[str, Any],
                                             stored: dict[str, Any]) -> None:
    device = await register(module_api, **registered)

    await module_api.ok("PATCH", "/v1/devices/me", device["device_token"], json=patch)

    row = await device_row(module_db, device["device_id"])
    assert {k: row[k] for k in stored} == stored


async def test_a_consent_change_moves_consent_updated_at(
        module_api: Api, module_db: asyncpg.Connection) -> None:
    device = await register(module_api)
    before = (await device_row(module_db, device["device_id"]))["consent_updated_at"]

    await module_api.ok("PATCH", "/v1/devices/me", device["device_token"],
                        json={"consent": {"marketing_push": False}})

    assert (await device_row(module_db, device["device_id"]))["consent_updated_at"] > before


BAD_PATCHES = [
    pytest.param({"timezone": "Nowhere/Special"}, "timezone",
                 id="a time zone that is not IANA is refused and changes nothing"),
    pytest.param({"fcm_token": "fcm-2", "fid": "fid-2", "locale": "de-DE"}, "fcm_token",
                 id="two push addresses at once are refused and change nothing"),
    pytest.param({"consent": {"location": "yes"}, "locale": "de-DE"}, "consent.location",
                 id="a consent that is not a boolean is refused and changes nothing"),
    pytest.param({"platform": "ios"}, "platform",
                 id="the platform cannot be changed"),
]


@pytest.mark.parametrize(("patch", "field"), BAD_PATCHES)
async def test_a_bad_settings_change_is_refused_and_changes_nothing(
        module_api: Api, module_db: asyncpg.Connection, patch: dict[str, Any],
        field: str) -> None:
    device = await register(module_api, timezone="Europe/Paris", locale="fr-FR")
    before = await device_row(module_db, device["device_id"])

    response = await module_api.call("PATCH", "/v1/devices/me", device["device_token"],
                                     json=patch)

    named = [e["field"] for e in response.json().get("errors", [])]
    unchanged = await device_row(module_db, device["device_id"]) == before
    assert (response.status_code, named, unchanged) == (400, [field], True), response.text


# --- export and erasure -------------------------------------------------------------------------

async def send_pings(api: Api, token: str, pings: list[dict[str, Any]]) -> Any:
    return await api.ok("POST", "/v1/pings", token, expect=202, json={"pings": pings})


async def send_signals(api: Api, token: str, signals: list[dict[str, Any]]) -> Any:
    return await api.ok("POST", "/v1/signals", token, expect=202, json={"signals": signals})


async def test_the_export_holds_the_device_its_pings_and_its_signals(module_api: Api) -> None:
    device = await register(module_api, customer_id="C-77")
    token = device["device_token"]
    await send_pings(module_api, token, [{"lat": 48.85, "lng": 2.35, "ts": ago(minutes=2)},
                                         {"lat": 48.86, "lng": 2.36, "ts": ago(minutes=1)}])
    await send_signals(module_api, token, [{"kind": "search", "ts": ago(minutes=1),
                                            "attributes": {"query": "coats"}}])

    export = await module_api.ok("GET", "/v1/devices/me/export", token)

    assert (
        (export["device"]["id"], export["device"]["customer_id"]),
        [(p["lat"], p["lng"]) for p in export["pings"]],
        [(s["kind"], s["attributes"]) for s in export["signals"]],
    ) == (
        (device["device_id"], "C-77"),
        [(48.85, 2.35), (48.86, 2.36)],
        [("search", {"query": "coats"})],
    )


async def busy_device(api: Api) -> dict[str, Any]:
    """A device that left as many traces as the service keeps: pings inside a store's fence
    (presence, geo events) while an `enter` campaign for that store is live, and signals.

    The device lives in Kiritimati (UTC+14) and the clock is pinned to noon there, outside the
    default quiet hours, so its enter queues a delivery whatever the hour the suite runs at."""
    CLOCK.set(at_local("Pacific/Kiritimati", time(12, 0)))
    store = await api.ok("POST", "/v1/stores", json={"name": "Busy store",
                                                     "timezone": "Europe/Paris"})
    await api.ok("POST", f"/v1/stores/{store['id']}/geofences", json={
        "name": "Door", "geometry": {"type": "Point", "coordinates": [2.3522, 48.8566]},
        "radius_m": 100, "dwell_seconds": 0})
    now = CLOCK()
    await api.ok("POST", "/v1/campaigns", json={
        "name": "Welcome", "status": "active",
        "trigger": {"kind": "enter", "store_ids": [store["id"]]},
        "schedule": {"starts_at": iso(now - timedelta(days=1)),
                     "ends_at": iso(now + timedelta(days=1))},
        "offer": {"title": "Hello", "body": "10% off today"}, "offer_ttl_seconds": 3600})
    device = await register(api, customer_id=unique("customer"),
                            timezone="Pacific/Kiritimati")
    token = device["device_token"]
    await send_pings(api, token, [
        {"lat": 48.8400, "lng": 2.3000, "ts": ago(minutes=3), "accuracy_m": 10},
        {"lat": 48.8566, "lng": 2.3522, "ts": ago(minutes=2), "accuracy_m": 10},
        {"lat": 48.8566, "lng": 2.3522, "ts": ago(minutes=1), "accuracy_m": 10},
    ])
    await send_signals(api, token, [{"kind": "store_locator", "ts": ago(minutes=1)}])
    return device


UUID_COLUMNS = """
SELECT c.table_name, c.column_name, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t USING (table_schema, table_name)
WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
  AND (c.data_type = 'uuid' OR (c.data_type = 'ARRAY' AND c.udt_name = '_uuid'))
ORDER BY 1, 2
"""


async def tables_referring_to(db: asyncpg.Connection, device_id: str) -> set[str]:
    """Every `table.column` (uuid or uuid[], in any table of the schema) holding the id."""
    found = set()
    for table, column, kind in await db.fetch(UUID_COLUMNS):
        test = f'"{column}" = $1::uuid' if kind == "uuid" else f'$1::uuid = any("{column}")'
        if await db.fetchval(f'SELECT exists(SELECT 1 FROM "{table}" WHERE {test})', device_id):
            found.add(f"{table}.{column}")
    return found


async def test_before_erasure_a_device_at_noon_in_kiritimati_is_found_where_it_left_traces(
        module_api: Api, module_db: asyncpg.Connection) -> None:
    device = await busy_device(module_api)

    found = await tables_referring_to(module_db, device["device_id"])

    assert {"devices.id", "pings.device_id", "signals.device_id", "presence.device_id",
            "geo_events.device_id", "deliveries.device_id"} <= found, found


async def test_erasure_leaves_no_row_referring_to_the_device(
        module_api: Api, module_db: asyncpg.Connection) -> None:
    device = await busy_device(module_api)

    await module_api.ok("DELETE", "/v1/devices/me", device["device_token"])

    assert await tables_referring_to(module_db, device["device_id"]) == set()


async def test_erasure_leaves_no_row_holding_the_customer_id(
        module_api: Api, module_db: asyncpg.Connection) -> None:
    device = await busy_device(module_api)
    customer = (await device_row(module_db, device["device_id"]))["customer_id"]

    await module_api.ok("DELETE", "/v1/devices/me", device["device_token"])

    tables = [r["table_name"] for r in await module_db.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    holding = [t for t in tables if await module_db.fetchval(
        f'SELECT exists(SELECT 1 FROM "{t}" x WHERE strpos(x::text, $1) > 0)', customer)]
    assert holding == []


# --- pings --------------------------------------------------------------------------------------

GOOD = {"lat": 48.8566, "lng": 2.3522, "accuracy_m": 12.0, "speed_mps": 1.4, "heading_deg": 90.0}

# Each case: the JSON text of one bad ping (built when the test runs, as times are relative to
# now), and a word its reason must contain. JSON has no NaN literal; a number too large for a
# double (1e999) cannot be represented at all and makes the body malformed (see MALFORMED).
BAD_PINGS: list[Any] = [
    pytest.param(lambda: {**GOOD, "lat": 95, "ts": ago(minutes=1)}, "lat",
                 id="a latitude of 95 is rejected alone"),
    pytest.param(lambda: {**GOOD, "lng": -181, "ts": ago(minutes=1)}, "lng",
                 id="a longitude of -181 is rejected alone"),
    pytest.param(lambda: {**GOOD, "ts": iso(CLOCK() + timedelta(minutes=10))},
                 "future", id="a ping 10 minutes ahead is rejected alone"),
    pytest.param(lambda: {**GOOD, "ts": ago(hours=25)}, "24 hours",
                 id="a ping 25 hours old is rejected alone"),
    pytest.param(lambda: {**GOOD, "ts": CLOCK().replace(tzinfo=None).isoformat()},
                 "offset", id="a ping time without a UTC offset is rejected alone"),
    pytest.param(lambda: {**GOOD, "accuracy_m": -1, "ts": ago(minutes=1)}, "accuracy_m",
                 id="an accuracy of -1 m is rejected alone"),
    pytest.param(lambda: {**GOOD, "accuracy_m": 6000, "ts": ago(minutes=1)}, "accuracy_m",
                 id="an accuracy of 6000 m is rejected alone"),
    pytest.param(lambda: {**GOOD, "speed_mps": -0.5, "ts": ago(minutes=1)}, "speed_mps",
                 id="a negative speed is rejected alone"),
    pytest.param(lambda: {**GOOD, "heading_deg": 400, "ts": ago(minutes=1)}, "heading_deg",
                 id="a heading of 400 degrees is rejected alone"),
]


def batch_text(pings: list[dict[str, Any]]) -> str:
    """The body as JSON text, with "HUGE" written as the number 1e999."""
    return json.dumps({"pings": pings}).replace('"HUGE"', "1e999")


async def stored_pings(db: asyncpg.Connection, device_id: str) -> list[tuple[float, float, int]]:
    rows = await db.fetch("SELECT lat, lng, cell FROM pings WHERE device_id = $1::uuid "
                          "ORDER BY ts", device_id)
    return [(r["lat"], r["lng"], r["cell"]) for r in rows]


def cell_of(lat: float, lng: float) -> int:
    return int(h3.str_to_int(h3.latlng_to_cell(lat, lng, H3_RESOLUTION)))


async def post_text(api: Api, path: str, token: str, text: str) -> Any:
    return await api.call("POST", path, token, content=text.encode(),
                          headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("bad", "word"), BAD_PINGS)
async def test_a_bad_ping_is_rejected_alone_with_its_reason(
        module_api: Api, module_db: asyncpg.Connection, bad: Callable[[], dict[str, Any]],
        word: str) -> None:
    device = await register(module_api)
    first = {"lat": 48.85, "lng": 2.35, "ts": ago(minutes=3)}
    last = {"lat": 48.86, "lng": 2.36, "ts": ago(minutes=2)}

    response = await post_text(module_api, "/v1/pings", device["device_token"],
                               batch_text([first, bad(), last]))

    assert response.status_code == 202, response.text
    body = response.json()
    assert (
        body["accepted"],
        [(r["index"], word in r["reason"]) for r in body["rejected"]],
        await stored_pings(module_db, device["device_id"]),
    ) == (
        2, [(1, True)],
        [(48.85, 2.35, cell_of(48.85, 2.35)), (48.86, 2.36, cell_of(48.86, 2.36))],
    ), body


EDGE_PINGS = [
    pytest.param({"lat": 90.0, "lng": 180.0}, id="the north pole on the antimeridian is good"),
    pytest.param({"lat": -90.0, "lng": -180.0}, id="the south pole at -180 is good"),
    pytest.param({"lat": 0.0, "lng": 0.0, "accuracy_m": 0, "speed_mps": 0, "heading_deg": 0},
                 id="zero accuracy, speed and heading are good"),
    pytest.param({"lat": 1.29, "lng": 103.85, "accuracy_m": 5000, "heading_deg": 360},
                 id="an accuracy of 5000 m and a heading of 360 are good"),
    pytest.param({"lat": 35.68, "lng": 139.69, "utc_offset_hours": 9},
                 id="a time with a +09:00 offset is good"),
]


@pytest.mark.parametrize("ping", EDGE_PINGS)
async def test_a_good_ping_is_stored_with_its_h3_cell(
        module_api: Api, module_db: asyncpg.Connection, ping: dict[str, Any]) -> None:
    device = await register(module_api)
    fields = {k: v for k, v in ping.items() if k != "utc_offset_hours"}
    offset = timezone(timedelta(hours=ping.get("utc_offset_hours", 0)))
    ts = (CLOCK() - timedelta(seconds=30)).astimezone(offset).isoformat()

    body = await send_pings(module_api, device["device_token"], [{**fields, "ts": ts}])

    assert (body, await stored_pings(module_db, device["device_id"])) == (
        {"accepted": 1, "rejected": []},
        [(fields["lat"], fields["lng"], cell_of(fields["lat"], fields["lng"]))],
    )


async def test_pings_sent_out_of_order_are_all_stored(
        module_api: Api, module_db: asyncpg.Connection) -> None:
    device = await register(module_api)
    pings = [{"lat": 48.0 + i / 100, "lng": 2.0, "ts": ago(minutes=60 - i)} for i in range(50)]

    await send_pings(module_api, device["device_token"], list(reversed(pings)))

    assert len(await stored_pings(module_db, device["device_id"])) == 50


def _many(n: int) -> str:
    return batch_text([{"lat": 1.0, "lng": 1.0, "ts": ago(minutes=1)}] * n)


MALFORMED = [
    pytest.param(lambda: batch_text([]), "pings", id="a batch of 0 pings is refused whole"),
    pytest.param(lambda: _many(501), "pings", id="a batch of 501 pings is refused whole"),
    pytest.param(lambda: "pings: lat=1", "body", id="a body that is not JSON is refused whole"),
    pytest.param(lambda: batch_text([{"lat": 1.0, "lng": 1.0, "ts": ago(minutes=1)},
                                     {"lat": "48.85", "lng": 2.35, "ts": ago(minutes=1)}]),
                 "pings[1].lat", id="a latitude given as a string is refused whole"),
    pytest.param(lambda: batch_text([{"lng": 1.0, "ts": ago(minutes=1)}]), "pings[0].lat",
                 id="a ping without a latitude is refused whole"),
    pytest.param(lambda: "{}", "pings", id="a body without pings is refused whole"),
    pytest.param(lambda: batch_text([{**GOOD, "lat": "HUGE", "ts": ago(minutes=1)}]),
                 "pings[0].lat",
                 id="a latitude of 1e999, beyond any double, makes the body malformed"),
]


@pytest.mark.parametrize(("text", "field"), MALFORMED)
async def test_a_malformed_ping_batch_is_refused_whole(
        module_api: Api, module_db: asyncpg.Connection, text: Callable[[], str],
        field: str) -> None:
    device = await register(module_api)

    response = await post_text(module_api, "/v1/pings", device["device_token"], text())

    named = [e["field"] for e in response.json().get("errors", [])]
    stored = await stored_pings(module_db, device["device_id"])
    assert (response.status_code, named, stored) == (400, [field], []), response.text


async def _registered_without_location(api: Api) -> dict[str, Any]:
    return await register(api, consent={"location": False, "marketing_push": True})


async def _withdrew_location(api: Api) -> dict[str, Any]:
    device = await register(api)
    await api.ok("PATCH", "/v1/devices/me", device["device_token"],
                 json={"consent": {"location": False}})
    return device


NO_CONSENT = [
    pytest.param(_registered_without_location,
                 id="a device registered without location consent may not send pings"),
    pytest.param(_withdrew_location,
                 id="a device that withdrew location consent may not send pings"),
]


@pytest.mark.parametrize("make_device", NO_CONSENT)
async def test_pings_without_location_consent_are_refused(
        module_api: Api, module_db: asyncpg.Connection, make_device: Any) -> None:
    device = await make_device(module_api)

    response = await module_api.call("POST", "/v1/pings", device["device_token"], json={
        "pings": [{"lat": 48.85, "lng": 2.35, "ts": ago(minutes=1)}]})

    stored = await stored_pings(module_db, device["device_id"])
    assert (response.status_code, stored) == (403, []), response.text


# --- signals ------------------------------------------------------------------------------------

KINDS = ["search", "product_view", "store_locator", "directions", "cart_add", "checkout",
         "purchase", "wishlist_add"]


async def stored_signals(db: asyncpg.Connection, device_id: str) -> list[tuple[str, Any]]:
    rows = await db.fetch("SELECT kind, attributes FROM signals WHERE device_id = $1::uuid "
                          "ORDER BY ts", device_id)
    return [(r["kind"], json.loads(r["attributes"]) if isinstance(r["attributes"], str)
             else r["attributes"]) for r in rows]


async def test_signals_of_every_kind_are_stored_with_their_attributes(
        module_api: Api, module_db: asyncpg.Connection) -> None:
    device = await register(module_api)
    signals = [{"kind": kind, "ts": ago(minutes=len(KINDS) - i),
                "attributes": {"sku": f"SKU-{i}", "query": "winter coat",
                               **({"amount": "89.90"} if kind == "purchase" else {})}}
               for i, kind in enumerate(KINDS)]
    signals.append({"kind": "search", "ts": ago(seconds=10)})

    body = await send_signals(module_api, device["device_token"], signals)

    assert (body, await stored_signals(module_db, device["device_id"])) == (
        {"accepted": len(signals), "rejected": []},
        [(s["kind"], s.get("attributes", {})) for s in signals],
    )


BAD_SIGNALS = [
    pytest.param(lambda: iso(CLOCK() + timedelta(minutes=10)), "future",
                 id="a signal 10 minutes ahead is rejected alone"),
    pytest.param(lambda: ago(hours=25), "24 hours", id="a signal 25 hours old is rejected alone"),
    pytest.param(lambda: CLOCK().replace(tzinfo=None).isoformat(), "offset",
                 id="a signal time without a UTC offset is rejected alone"),
]


@pytest.mark.parametrize(("ts", "word"), BAD_SIGNALS)
async def test_a_signal_with_a_bad_time_is_rejected_alone(
        module_api: Api, module_db: asyncpg.Connection, ts: Callable[[], str],
        word: str) -> None:
    device = await register(module_api)
    signals = [{"kind": "search", "ts": ago(minutes=2)}, {"kind": "cart_add", "ts": ts()},
               {"kind": "checkout", "ts": ago(minutes=1)}]

    body = await send_signals(module_api, device["device_token"], signals)

    assert (
        body["accepted"], [(r["index"], word in r["reason"]) for r in body["rejected"]],
        await stored_signals(module_db, device["device_id"]),
    ) == (2, [(1, True)], [("search", {}), ("checkout", {})]), body


BAD_ATTRIBUTES = [
    pytest.param("purchase", {"category": "shoes"}, "attributes.amount is required",
                 id="a purchase without an amount is rejected alone"),
    pytest.param("purchase", {"amount": "-3"}, "attributes.amount must be",
                 id="a negative amount is rejected alone"),
    pytest.param("purchase", {"amount": "12,50"}, "attributes.amount must be",
                 id="an amount with a decimal comma is rejected alone"),
    pytest.param("cart_add", {"amount": "1e3"}, "attributes.amount must be",
                 id="an amount in exponent notation is rejected alone"),
    pytest.param("purchase", {"amount": "NaN"}, "attributes.amount must be",
                 id="a NaN amount is rejected alone"),
    pytest.param("directions", {"store_id": "rue-cler"}, "attributes.store_id must be",
                 id="a store_id that is not a uuid is rejected alone"),
]


@pytest.mark.parametrize(("kind", "attributes", "reason"), BAD_ATTRIBUTES)
async def test_a_signal_with_a_malformed_known_attribute_is_rejected_alone(
        module_api: Api, module_db: asyncpg.Connection, kind: str, attributes: dict[str, str],
        reason: str) -> None:
    device = await register(module_api)
    signals = [{"kind": "search", "ts": ago(minutes=3), "attributes": {"category": "??"}},
               {"kind": kind, "ts": ago(minutes=2), "attributes": attributes},
               {"kind": "purchase", "ts": ago(minutes=1),
                "attributes": {"amount": "24.90", "store_id": str(uuid.uuid4())}}]

    body = await send_signals(module_api, device["device_token"], signals)

    assert (body["accepted"], [(r["index"], r["reason"].startswith(reason))
                               for r in body["rejected"]],
            [k for k, _ in await stored_signals(module_db, device["device_id"])]) == (
        2, [(1, True)], ["search", "purchase"]), body


MALFORMED_SIGNALS = [
    pytest.param({"signals": []}, "signals", id="a batch of 0 signals is refused whole"),
    pytest.param({"signals": [{"kind": "Add To Cart", "ts": "2026-01-01T00:00:00Z"}]},
                 "signals[0].kind", id="a kind that is not snake_case is refused whole"),
    pytest.param({"signals": [{"kind": "search", "ts": "2026-01-01T00:00:00Z",
                               "attributes": {"n": 3}}]},
                 "signals[0].attributes", id="an attribute that is not a string is refused"),
    pytest.param({"signals": [{"kind": "search", "ts": "2026-01-01T00:00:00Z",
                               "attributes": {"query": "coats\x00"}}]},
                 "signals[0].attributes.query", id="a NUL in an attribute is refused naming it"),
    pytest.param({"signals": [{"kind": "search", "ts": "2026-01-01T00:00:00Z",
                               "attributes": {"qu\x00ery": "coats"}}]},
                 "signals[0].attributes", id="a NUL in an attribute's name is refused"),
]


@pytest.mark.parametrize(("body", "field"), MALFORMED_SIGNALS)
async def test_a_malformed_signal_batch_is_refused_whole(
        module_api: Api, module_db: asyncpg.Connection, body: dict[str, Any],
        field: str) -> None:
    device = await register(module_api)

    response = await module_api.call("POST", "/v1/signals", device["device_token"], json=body)

    # msgspec names a value inside a mapping `attributes[...]`, without its key
    named = [e["field"].removesuffix("[...]") for e in response.json().get("errors", [])]
    stored = await stored_signals(module_db, device["device_id"])
    assert (response.status_code, named, stored) == (400, [field], []), response.text


async def test_a_device_over_its_budget_gets_429_with_retry_after_and_nothing_stored(
        database_url: str) -> None:
    app = create_app(settings_for(database_url, device_burst=2,
                                  device_batches_per_second=0.01), clock=CLOCK)
    async with AsyncTestClient(app=app) as client:
        api = Api(client)
        key = await api.ok("POST", "/v1/api-keys", json={"name": "app", "role": "app"})
        token = (await api.ok("POST", "/v1/devices", key["token"], json={
            "platform": "android", "fcm_token": "t-budget",
            "consent": {"location": True, "marketing_push": True}}))["device_token"]
        body = {"pings": [{**GOOD, "ts": ago(minutes=1)}]}
        statuses = [(await api.call("POST", "/v1/pings", token, json=body)) for _ in range(3)]
        conn = await asyncpg.connect(database_url)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM pings")
        finally:
            await conn.close()
    refused = statuses[2]
    assert ([r.status_code for r in statuses], refused.headers.get("retry-after"),
            refused.headers["content-type"].split(";")[0], stored) == (
        [202, 202, 429], "100", "application/problem+json", 2)
