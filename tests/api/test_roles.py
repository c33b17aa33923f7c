"""The role matrix: every route of the API × every kind of caller → the status it gets.

`build_world` makes a small world through the API (stores A and B, a fence in each, a campaign,
a key of each role, a device) in the one database the module shares. Tests that change data build
their own; the matrix's read-only and refused cells share one while it is untouched.
The store manager's key covers store A only: "in scope" targets A's objects, "out of scope" B's,
which must answer 404 exactly like unknown ids and change nothing.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.clock import CLOCK

pytestmark = pytest.mark.asyncio(loop_scope="module")

CALLERS = ("no_token", "bad_token", "admin", "campaign_manager", "store_manager_in_scope",
           "store_manager_out_of_scope", "app", "device")


def store_body(name: str) -> dict[str, Any]:
    return {"name": name, "timezone": "Europe/Paris"}


def fence_body(name: str, radius_m: float = 80.0) -> dict[str, Any]:
    return {"name": name, "geometry": {"type": "Point", "coordinates": [2.3522, 48.8566]},
            "radius_m": radius_m, "tags": ["matrix"]}


def device_body() -> dict[str, Any]:
    return {"platform": "android", "fcm_token": f"fcm-{secrets.token_hex(8)}",
            "consent": {"location": True, "marketing_push": True}}


def campaign_body() -> dict[str, Any]:
    now = CLOCK()
    return {
        "name": "Coats at dusk",
        "trigger": {"kind": "enter", "tags": ["matrix"]},
        "schedule": {"starts_at": (now - timedelta(days=1)).isoformat(),
                     "ends_at": (now + timedelta(days=30)).isoformat()},
        "offer": {"title": "Welcome back", "body": "20% off coats, today only"},
        "offer_ttl_seconds": 900,
    }


def import_body() -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [2.35, 48.85]},
        "properties": {"name": "Imported entrance", "radius_m": 50},
    }]}


def now_iso() -> str:
    return CLOCK().isoformat()


@dataclass(frozen=True)
class World:
    """What one test built: A is in the store manager's scope, B is not."""

    store: dict[str, str]        # "A"/"B" → store id
    fence: dict[str, str]        # "A"/"B" → geofence id in that store
    campaign_id: str
    spare_key_id: str            # a key nobody uses, for the revocation route
    device_id: str
    webhook_id: str
    tokens: dict[str, str | None]


WEBHOOK_BODY = {"url": "http://127.0.0.1:9/hooks", "events": ["moment"]}


async def build_world(api: Api) -> World:
    store = {s: (await api.ok("POST", "/v1/stores", json=store_body(f"Store {s}")))["id"]
             for s in ("A", "B")}
    fence = {s: (await api.ok("POST", f"/v1/stores/{store[s]}/geofences",
                              json=fence_body(f"Entrance {s}")))["id"]
             for s in ("A", "B")}
    campaign = await api.ok("POST", "/v1/campaigns", json=campaign_body())

    async def key(role: str, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = await api.ok("POST", "/v1/api-keys",
                                            json={"name": f"{role} key", "role": role, **extra})
        return body

    manager = await key("store_manager", store_ids=[store["A"]])
    app = await key("app")
    staff = await key("campaign_manager")
    spare = await key("app")
    device = await api.ok("POST", "/v1/devices", app["token"], json=device_body())
    webhook = await api.ok("POST", "/v1/webhooks", json=WEBHOOK_BODY)
    return World(
        store=store, fence=fence, campaign_id=campaign["id"], spare_key_id=spare["id"],
        device_id=device["device_id"], webhook_id=webhook["id"],
        tokens={
            "no_token": None,
            "bad_token": "ctxk_" + secrets.token_urlsafe(32),
            "admin": ADMIN_TOKEN,
            "campaign_manager": staff["token"],
            "store_manager_in_scope": manager["token"],
            "store_manager_out_of_scope": manager["token"],
            "app": app["token"],
            "device": device["device_token"],
        },
    )


# Each route: its label, how to call it on a world's store ("A" or "B"), and the expected status
# for each caller of CALLERS (None: the route names no store, so "out of scope" does not apply).
Request = tuple[str, dict[str, Any] | str | None]  # path, JSON body (or CSV text)


def _route(label: str) -> Any:
    def call(world: World, s: str) -> Request:
        store, fence = world.store[s], world.fence[s]
        campaign = f"/v1/campaigns/{world.campaign_id}"
        return {
            "POST /v1/api-keys": ("/v1/api-keys", {"name": "new key", "role": "app"}),
            "GET /v1/api-keys": ("/v1/api-keys", None),
            "DELETE /v1/api-keys/{id}": (f"/v1/api-keys/{world.spare_key_id}", None),
            "POST /v1/stores": ("/v1/stores", store_body("Store C")),
            "GET /v1/stores": ("/v1/stores", None),
            "GET /v1/stores/{id}": (f"/v1/stores/{store}", None),
            "PATCH /v1/stores/{id}": (f"/v1/stores/{store}", {"name": "Renamed"}),
            "DELETE /v1/stores/{id}": (f"/v1/stores/{store}", None),
            "POST /v1/stores/{id}/geofences": (f"/v1/stores/{store}/geofences",
                                               fence_body("Side door")),
            "POST /v1/stores/{id}/geofences/import": (f"/v1/stores/{store}/geofences/import",
                                                      import_body()),
            "GET /v1/stores/{id}/geofences/export": (f"/v1/stores/{store}/geofences/export",
                                                     None),
            "GET /v1/geofences": ("/v1/geofences", None),
            "GET /v1/geofences?store_id={id}": (f"/v1/geofences?store_id={store}", None),
            "GET /v1/geofences/{id}": (f"/v1/geofences/{fence}", None),
            "PUT /v1/geofences/{id}": (f"/v1/geofences/{fence}", fence_body("Moved", 120.0)),
            "DELETE /v1/geofences/{id}": (f"/v1/geofences/{fence}", None),
            "POST /v1/devices": ("/v1/devices", device_body()),
            "PATCH /v1/devices/me": ("/v1/devices/me", {"locale": "fr-FR"}),
            "GET /v1/devices/me/export": ("/v1/devices/me/export", None),
            "DELETE /v1/devices/me": ("/v1/devices/me", None),
            "POST /v1/pings": ("/v1/pings", {"pings": [{"lat": 48.8566, "lng": 2.3522,
                                                        "ts": now_iso()}]}),
            "POST /v1/signals": ("/v1/signals", {"signals": [{"kind": "search",
                                                              "ts": now_iso()}]}),
            "POST /v1/campaigns": ("/v1/campaigns", campaign_body()),
            "POST /v1/campaigns/backtest": ("/v1/campaigns/backtest", {
                "campaign": campaign_body(), "to": now_iso(),
                "from": (CLOCK() - timedelta(days=1)).isoformat()}),
            "GET /v1/campaigns": ("/v1/campaigns", None),
            "GET /v1/campaigns/{id}": (campaign, None),
            "PATCH /v1/campaigns/{id}": (campaign, {"priority": 5}),
            "DELETE /v1/campaigns/{id}": (campaign, None),
            "POST /v1/campaigns/{id}/activate": (f"{campaign}/activate", None),
            "POST /v1/campaigns/{id}/pause": (f"{campaign}/pause", None),
            "GET /v1/campaigns/{id}/deliveries": (f"{campaign}/deliveries", None),
            "GET /v1/campaigns/{id}/stats": (f"{campaign}/stats", None),
            "GET /v1/campaigns/{id}/uplift": (f"{campaign}/uplift?goal=purchase", None),
            "GET /v1/reports/uplift": ("/v1/reports/uplift?window_hours=48", None),
            "POST /v1/deliveries/{id}/events": (
                f"/v1/deliveries/{world.campaign_id}/events",
                {"kind": "opened", "ts": now_iso()}),
            "GET /v1/deliveries/{id}/why": (f"/v1/deliveries/{world.campaign_id}/why", None),
            "POST /v1/visits/import": ("/v1/visits/import",
                                       f"user_id,place_id,ts\nc1,{store},{now_iso()}\n"),
            "GET /v1/visits/model": ("/v1/visits/model", None),
            "POST /v1/transactions/import": ("/v1/transactions/import",
                                             f"customer_id,ts,amount\nc1,{now_iso()},9.5\n"),
            "GET /v1/policy": ("/v1/policy", None),
            "PUT /v1/policy": ("/v1/policy", {"max_per_device_per_day": 4,
                                              "min_seconds_between_pushes": 1800,
                                              "quiet_hours": {"from": "22:00", "to": "08:00"}}),
            "GET /v1/audit": ("/v1/audit", None),
            "POST /v1/webhooks": ("/v1/webhooks", WEBHOOK_BODY),
            "GET /v1/webhooks": ("/v1/webhooks", None),
            "DELETE /v1/webhooks/{id}": (f"/v1/webhooks/{world.webhook_id}", None),
            "GET /v1/webhooks/{id}/deliveries": (f"/v1/webhooks/{world.webhook_id}/deliveries",
                                                 None),
            "POST /v1/webhooks/{id}/replay": (f"/v1/webhooks/{world.webhook_id}/replay", {
                "from": (CLOCK() - timedelta(days=1)).isoformat(), "to": now_iso()}),
            "GET /healthz": ("/healthz", None),
            "GET /readyz": ("/readyz", None),
            "GET /metrics": ("/metrics", None),
            "GET /schema/openapi.json": ("/schema/openapi.json", None),
        }[label]
    return call


_ = None
MATRIX: list[tuple[str, tuple[int | None, ...]]] = [
    # route                                   none bad admin  cm  sm_in sm_out app device
    ("POST /v1/api-keys",                      (401, 401, 201, 403, 403, _, 403, 403)),
    ("GET /v1/api-keys",                       (401, 401, 200, 403, 403, _, 403, 403)),
    ("DELETE /v1/api-keys/{id}",               (401, 401, 204, 403, 403, _, 403, 403)),
    ("POST /v1/stores",                        (401, 401, 201, 403, 403, _, 403, 403)),
    ("GET /v1/stores",                         (401, 401, 200, 200, 200, _, 403, 403)),
    ("GET /v1/stores/{id}",                    (401, 401, 200, 200, 200, 404, 403, 403)),
    ("PATCH /v1/stores/{id}",                  (401, 401, 200, 403, 200, 404, 403, 403)),
    ("DELETE /v1/stores/{id}",                 (401, 401, 204, 403, 403, 403, 403, 403)),
    ("POST /v1/stores/{id}/geofences",         (401, 401, 201, 403, 201, 404, 403, 403)),
    ("POST /v1/stores/{id}/geofences/import",  (401, 401, 201, 403, 201, 404, 403, 403)),
    ("GET /v1/stores/{id}/geofences/export",   (401, 401, 200, 200, 200, 404, 403, 403)),
    ("GET /v1/geofences",                      (401, 401, 200, 200, 200, _, 403, 403)),
    ("GET /v1/geofences?store_id={id}",        (401, 401, 200, 200, 200, 404, 403, 403)),
    ("GET /v1/geofences/{id}",                 (401, 401, 200, 200, 200, 404, 403, 403)),
    ("PUT /v1/geofences/{id}",                 (401, 401, 200, 403, 200, 404, 403, 403)),
    ("DELETE /v1/geofences/{id}",              (401, 401, 204, 403, 204, 404, 403, 403)),
    ("POST /v1/devices",                       (401, 401, 201, 403, 403, _, 201, 403)),
    ("PATCH /v1/devices/me",                   (401, 401, 403, 403, 403, _, 403, 200)),
    ("GET /v1/devices/me/export",              (401, 401, 403, 403, 403, _, 403, 200)),
    ("DELETE /v1/devices/me",                  (401, 401, 403, 403, 403, _, 403, 204)),
    ("POST /v1/pings",                         (401, 401, 403, 403, 403, _, 403, 202)),
    ("POST /v1/signals",                       (401, 401, 403, 403, 403, _, 403, 202)),
    ("POST /v1/campaigns",                     (401, 401, 201, 201, 403, _, 403, 403)),
    ("POST /v1/campaigns/backtest",            (401, 401, 200, 200, 403, _, 403, 403)),
    ("GET /v1/campaigns",                      (401, 401, 200, 200, 403, _, 403, 403)),
    ("GET /v1/campaigns/{id}",                 (401, 401, 200, 200, 403, _, 403, 403)),
    ("PATCH /v1/campaigns/{id}",               (401, 401, 200, 200, 403, _, 403, 403)),
    ("DELETE /v1/campaigns/{id}",              (401, 401, 204, 204, 403, _, 403, 403)),
    ("POST /v1/campaigns/{id}/activate",       (401, 401, 200, 200, 403, _, 403, 403)),
    ("POST /v1/campaigns/{id}/pause",          (401, 401, 200, 200, 403, _, 403, 403)),
    ("GET /v1/campaigns/{id}/deliveries",      (401, 401, 200, 200, 403, _, 403, 403)),
    ("GET /v1/campaigns/{id}/stats",           (401, 401, 200, 200, 403, _, 403, 403)),
    ("GET /v1/campaigns/{id}/uplift",          (401, 401, 200, 200, 403, _, 403, 403)),
    ("GET /v1/reports/uplift",                 (401, 401, 200, 200, 403, _, 403, 403)),
    # a device reporting on a delivery that is not its own: 404, like an unknown one
    ("POST /v1/deliveries/{id}/events",        (401, 401, 403, 403, 403, _, 403, 404)),
    # staff may read any delivery's why, a device only its own (here: none exists, so 404)
    ("GET /v1/deliveries/{id}/why",            (401, 401, 404, 404, 403, _, 403, 404)),
    ("POST /v1/visits/import",                 (401, 401, 201, 403, 403, _, 403, 403)),
    ("GET /v1/visits/model",                   (401, 401, 200, 403, 403, _, 403, 403)),
    ("POST /v1/transactions/import",           (401, 401, 201, 403, 403, _, 403, 403)),
    ("GET /v1/policy",                         (401, 401, 200, 200, 403, _, 403, 403)),
    ("PUT /v1/policy",                         (401, 401, 200, 403, 403, _, 403, 403)),
    ("GET /v1/audit",                          (401, 401, 200, 403, 403, _, 403, 403)),
    ("POST /v1/webhooks",                      (401, 401, 201, 403, 403, _, 403, 403)),
    ("GET /v1/webhooks",                       (401, 401, 200, 403, 403, _, 403, 403)),
    ("DELETE /v1/webhooks/{id}",               (401, 401, 204, 403, 403, _, 403, 403)),
    ("GET /v1/webhooks/{id}/deliveries",       (401, 401, 200, 403, 403, _, 403, 403)),
    ("POST /v1/webhooks/{id}/replay",          (401, 401, 202, 403, 403, _, 403, 403)),
    ("GET /healthz",                           (200, 200, 200, 200, 200, _, 200, 200)),
    ("GET /readyz",                            (200, 200, 200, 200, 200, _, 200, 200)),
    ("GET /metrics",                           (200, 200, 200, 200, 200, _, 200, 200)),
    ("GET /schema/openapi.json",               (200, 200, 200, 200, 200, _, 200, 200)),
]


def _cells() -> list[Any]:
    cells = []
    for label, statuses in MATRIX:
        assert len(statuses) == len(CALLERS), label
        scoped = statuses[CALLERS.index("store_manager_out_of_scope")] is not None
        for caller, status in zip(CALLERS, statuses, strict=True):
            if status is None:
                continue
            name = caller if scoped or not caller.startswith("store_manager") else "store_manager"
            cells.append(pytest.param(caller, label, status, id=f"{name}-{label}-{status}"))
    return cells


async def database_rows(db: asyncpg.Connection) -> dict[str, list[str]]:
    """Every row of every table, as text: what a refused request must leave as it was."""
    tables = [r["table_name"] for r in await db.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name")]
    return {t: sorted(r["row"] for r in await db.fetch(f'SELECT t::text AS row FROM "{t}" t'))
            for t in tables}


# The world that read-only and refused cells share, kept only while it is known untouched: a cell
# takes it out and puts it back after passing (a refused request must change nothing, which the
# cell asserts). Cells whose request succeeds in changing something build their own world.
_untouched: dict[int, World] = {}
# Posts that only read (a backtest replays the past and changes nothing): checked like refusals.
READ_ONLY_POSTS = frozenset({"POST /v1/campaigns/backtest"})


@pytest.mark.parametrize(("caller", "route", "status"), _cells())
async def test_the_caller_gets_the_status_of_its_role(
        module_api: Api, module_db: asyncpg.Connection, caller: str, route: str,
        status: int) -> None:
    method = route.split(" ", 1)[0]
    writes = method != "GET" and route not in READ_ONLY_POSTS
    changes = writes and status < 400
    shared = None if changes else _untouched.pop(id(module_api), None)
    world = shared or await build_world(module_api)
    store = "B" if caller == "store_manager_out_of_scope" else "A"
    path, body = _route(route)(world, store)
    before = await database_rows(module_db) if method != "GET" and not changes else None

    if isinstance(body, str):
        response = await module_api.call(method, path, world.tokens[caller], content=body,
                                         headers={"Content-Type": "text/csv"})
    else:
        response = await module_api.call(method, path, world.tokens[caller], json=body)

    assert response.status_code == status, response.text
    if before is not None:
        assert await database_rows(module_db) == before, "a refused or read-only request " \
            "changed data"
    if not changes:
        _untouched[id(module_api)] = world


KEY_USES = [
    # role of the key, a request it may make
    ("campaign_manager", "GET", "/v1/campaigns"),
    ("store_manager", "GET", "/v1/stores"),
    ("app", "POST", "/v1/devices"),
    ("admin", "GET", "/v1/api-keys"),
]


@pytest.mark.parametrize(("role", "method", "path"), KEY_USES,
                         ids=[f"a revoked {r} key is refused on {m} {p}" for r, m, p in KEY_USES])
async def test_a_revoked_key_is_refused_on_its_very_next_request(
        module_api: Api, role: str, method: str, path: str) -> None:
    world = await build_world(module_api)
    extra = {"store_ids": [world.store["A"]]} if role == "store_manager" else {}
    key = await module_api.ok("POST", "/v1/api-keys",
                              json={"name": "short-lived", "role": role, **extra})
    body = device_body() if path == "/v1/devices" else None
    assert (await module_api.call(method, path, key["token"], json=body)).status_code < 400
    await module_api.ok("DELETE", f"/v1/api-keys/{key['id']}")

    response = await module_api.call(method, path, key["token"], json=body)

    assert response.status_code == 401, response.text


async def register(api: Api, world: World) -> dict[str, Any]:
    device: dict[str, Any] = await api.ok("POST", "/v1/devices", world.tokens["app"],
                                          json=device_body())
    return device


async def test_a_device_token_exports_only_its_own_device(module_api: Api) -> None:
    world = await build_world(module_api)
    first, second = await register(module_api, world), await register(module_api, world)

    exports = [await module_api.ok("GET", "/v1/devices/me/export", d["device_token"])
               for d in (first, second)]

    assert [e["device"]["id"] for e in exports] == [first["device_id"], second["device_id"]]


async def test_a_device_token_changes_only_its_own_device(
        module_api: Api, module_db: asyncpg.Connection) -> None:
    world = await build_world(module_api)
    first, second = await register(module_api, world), await register(module_api, world)

    await module_api.ok("PATCH", "/v1/devices/me", first["device_token"],
                        json={"locale": "de-DE"})

    rows = await module_db.fetch(
        "SELECT id::text, locale FROM devices WHERE id = any($1::uuid[])",
        [first["device_id"], second["device_id"]])
    assert {r["id"]: r["locale"] for r in rows} == {first["device_id"]: "de-DE",
                                                    second["device_id"]: None}


async def test_a_device_token_stores_pings_only_for_its_own_device(
        module_api: Api, module_db: asyncpg.Connection) -> None:
    world = await build_world(module_api)
    first, second = await register(module_api, world), await register(module_api, world)

    await module_api.ok("POST", "/v1/pings", first["device_token"], expect=202,
                        json={"pings": [{"lat": 48.85, "lng": 2.35, "ts": now_iso()}]})

    rows = await module_db.fetch(
        "SELECT device_id::text AS id, count(*) AS n FROM pings "
        "WHERE device_id = any($1::uuid[]) GROUP BY device_id",
        [first["device_id"], second["device_id"]])
    assert {r["id"]: r["n"] for r in rows} == {first["device_id"]: 1}


ERASED_USES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/devices/me/export", lambda: None),
    ("PATCH", "/v1/devices/me", lambda: {"locale": "it-IT"}),
    ("POST", "/v1/pings", lambda: {"pings": [{"lat": 48.85, "lng": 2.35, "ts": now_iso()}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ERASED_USES,
                         ids=[f"an erased device's token is refused on {m} {p}"
                              for m, p, _ in ERASED_USES])
async def test_an_erased_device_token_is_refused(module_api: Api, method: str, path: str,
                                                 body: Any) -> None:
    world = await build_world(module_api)
    token = world.tokens["device"]
    await module_api.ok("DELETE", "/v1/devices/me", token)

    response = await module_api.call(method, path, token, json=body())

    assert response.status_code == 401, response.text


TOKEN_KINDS = ["api key", "device token"]


async def issue(api: Api, world: World, kind: str) -> tuple[str, str, str]:
    """A new token of this kind: (token, table holding it, id of its row)."""
    if kind == "api key":
        key = await api.ok("POST", "/v1/api-keys", json={"name": "fresh", "role": "app"})
        return key["token"], "api_keys", key["id"]
    device = await register(api, world)
    return device["device_token"], "devices", device["device_id"]


def random_part(token: str) -> bytes:
    secret = token.split("_", 1)[1]
    return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))


@pytest.mark.parametrize("kind", TOKEN_KINDS,
                         ids=[f"every new {k} holds at least 32 random bytes" for k in TOKEN_KINDS])
async def test_a_token_holds_at_least_32_random_bytes(module_api: Api, kind: str) -> None:
    world = await build_world(module_api)
    tokens = [(await issue(module_api, world, kind))[0] for _ in range(3)]

    secrets_ = [random_part(t) for t in tokens]

    assert all(len(s) >= 32 for s in secrets_) and len(set(secrets_)) == len(secrets_), tokens


@pytest.mark.parametrize("kind", TOKEN_KINDS,
                         ids=[f"the database holds only the hash of a new {k}"
                              for k in TOKEN_KINDS])
async def test_the_database_holds_only_the_token_hash(
        module_api: Api, module_db: asyncpg.Connection, kind: str) -> None:
    world = await build_world(module_api)
    token, table, ident = await issue(module_api, world, kind)

    row = await module_db.fetchrow(f"SELECT * FROM {table} WHERE id = $1::uuid", ident)

    assert row is not None
    secret = token.split("_", 1)[1]
    leaks = [name for name, value in row.items()
             if isinstance(value, str | bytes)
             and (secret in (value.decode("latin-1") if isinstance(value, bytes) else value))]
    assert leaks == [] and row["token_hash"] == hashlib.sha256(token.encode()).digest()


LISTS = [("GET /v1/stores", "/v1/stores", "store"), ("GET /v1/geofences", "/v1/geofences", "fence")]


@pytest.mark.parametrize(("route", "path", "what"), LISTS,
                         ids=[f"{r} shows a store manager only its stores' items"
                              for r, _, _ in LISTS])
async def test_a_store_manager_lists_only_its_own_stores(module_api: Api, route: str, path: str,
                                                         what: str) -> None:
    world = await build_world(module_api)

    page = await module_api.ok("GET", path, world.tokens["store_manager_in_scope"])

    ids = {item["id"] for item in page["items"]}
    mine = world.store if what == "store" else world.fence
    assert (mine["A"] in ids, mine["B"] in ids) == (True, False)
