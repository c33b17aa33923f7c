"""Stores and geofences over HTTP: CRUD, pagination, geometry validation, import and export, and
the catalogue version that every fence change bumps.

Roles are covered in test_roles.py; every call here is the admin's. The module shares one
database: each case makes its own stores (unique names, tags and external ids), and reads of the
whole catalogue look only at what the case made.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.unit.test_fences import INVALID, LAT0, LNG0, bowtie, point, ring, square

Json = dict[str, Any]

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def api(module_api: Api) -> Api:
    return module_api


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


GEOFENCE_FIELDS = {"id", "store_id", "name", "geometry", "radius_m", "dwell_seconds", "enabled",
                   "tags", "version", "updated_at"}


async def new_store(api: Api, name: str = "Rivoli", **fields: Any) -> Json:
    body: Json = {"name": name, "timezone": "Europe/Paris", **fields}
    store: Json = await api.ok("POST", "/v1/stores", json=body)
    return store


async def new_fence(api: Api, store_id: str, name: str = "entrance", **fields: Any) -> Json:
    body: Json = {"name": name, "geometry": square(), **fields}
    fence: Json = await api.ok("POST", f"/v1/stores/{store_id}/geofences", json=body)
    return fence


async def fence_names(api: Api, query: str) -> set[str]:
    page = await api.ok("GET", f"/v1/geofences?limit=1000&{query}")
    return {f["name"] for f in page["items"]}


async def catalog_version(db: asyncpg.Connection) -> int:
    version: int = await db.fetchval("SELECT version FROM catalog_version")
    return version


async def walk(api: Api, path: str, limit: int) -> tuple[list[str], int]:
    """Every id of a list, page by page: the ids in order and the number of pages."""
    seen: list[str] = []
    pages = 0
    cursor = ""
    while True:
        page = await api.ok("GET", f"{path}{'&' if '?' in path else '?'}limit={limit}{cursor}")
        pages += 1
        seen.extend(item["id"] for item in page["items"])
        if page["next_cursor"] is None:
            return seen, pages
        cursor = f"&cursor={page['next_cursor']}"


def campaign_naming(store_ids: list[str], fence_ids: list[str]) -> Json:
    return {
        "name": "lunch", "offer_ttl_seconds": 600,
        "trigger": {"kind": "enter", "store_ids": store_ids, "geofence_ids": fence_ids},
        "schedule": {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"},
        "offer": {"title": "Lunch", "body": "10% off"},
    }


# ---------------------------------------------------------------------------------- stores


@pytest.mark.parametrize("body", [
    pytest.param({"name": "Rivoli", "timezone": "Europe/Paris"},
                 id="a store with only a name and a time zone is created"),
    pytest.param({"name": "Shibuya", "timezone": "Asia/Tokyo", "address": "1-1 Jinnan",
                  "external_id": "JP-shibuya"},
                 id="a store with an address and an external id is created with them"),
])
async def test_a_created_store_reads_back_as_created(api: Api, body: Json) -> None:
    created = await api.ok("POST", "/v1/stores", json=body)
    read = await api.ok("GET", f"/v1/stores/{created['id']}")
    expected = {"address": None, "external_id": None, **body}
    assert {k: read[k] for k in expected} == expected


@pytest.mark.parametrize("limit", [
    pytest.param(1, id="stores one per page are walked without skip or repeat"),
    pytest.param(3, id="stores three per page are walked without skip or repeat"),
    pytest.param(1000, id="stores in one large page end with no cursor"),
])
async def test_the_store_list_walked_by_cursor_yields_every_store_once_in_order(
    api: Api, limit: int,
) -> None:
    created = [(await new_store(api, f"store {i}"))["id"] for i in range(7)]
    everything = (await api.ok("GET", "/v1/stores?limit=1000"))["items"]
    seen, pages = await walk(api, "/v1/stores", limit)
    mine = [i for i in seen if i in created]
    assert (seen, mine, pages) == ([s["id"] for s in everything], created,
                                   -(-len(everything) // limit))


@pytest.mark.parametrize(("count", "limit", "pages"), [
    pytest.param(7, 2, 4, id="seven geofences two per page take four pages"),
    pytest.param(6, 3, 2, id="six geofences three per page end with no cursor after two pages"),
    pytest.param(7, 7, 1, id="seven geofences in pages of seven take one page"),
])
async def test_the_geofence_list_walked_by_cursor_yields_every_fence_once_in_order(
    api: Api, count: int, limit: int, pages: int,
) -> None:
    store = await new_store(api)
    created = [(await new_fence(api, store["id"], f"fence {i}"))["id"] for i in range(count)]
    assert await walk(api, f"/v1/geofences?store_id={store['id']}", limit) == (created, pages)


@pytest.mark.parametrize(("query", "field"), [
    pytest.param("limit=0", "limit", id="a limit of 0 is refused"),
    pytest.param("limit=1001", "limit", id="a limit of 1001 is refused"),
    pytest.param("cursor=not-a-cursor", "cursor",
                 id="a cursor the service did not issue is refused"),
    pytest.param("cursor=WyJ4IiwieSJd", "cursor",
                 id="a well-encoded cursor holding no time and id is refused"),
])
@pytest.mark.parametrize("resource", ["stores", "geofences"])
async def test_a_bad_list_query_is_refused_naming_the_parameter(
    api: Api, resource: str, query: str, field: str,
) -> None:
    response = await api.call("GET", f"/v1/{resource}?{query}", ADMIN_TOKEN)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, field)


@pytest.mark.parametrize("patch", [
    pytest.param({"name": "Rivoli North"}, id="renaming a store keeps its other fields"),
    pytest.param({"timezone": "America/New_York"}, id="moving a store's time zone keeps the rest"),
    pytest.param({"address": None}, id="clearing the address keeps the rest"),
    pytest.param({"external_id": "FR-new", "address": "2 rue de Rivoli"},
                 id="changing two fields keeps the others"),
])
async def test_a_patch_changes_only_the_fields_it_names(api: Api, patch: Json) -> None:
    if "external_id" in patch:
        patch = {**patch, "external_id": unique("FR")}
    store = await new_store(api, address="1 rue de Rivoli", external_id=unique("FR"))
    await api.ok("PATCH", f"/v1/stores/{store['id']}", json=patch)
    read = await api.ok("GET", f"/v1/stores/{store['id']}")
    fields = ("name", "timezone", "address", "external_id")
    assert {f: read[f] for f in fields} == {**{f: store[f] for f in fields}, **patch}


@pytest.mark.parametrize("method", [
    pytest.param("POST", id="creating a store with a taken external id is a conflict"),
    pytest.param("PATCH", id="patching a store to a taken external id is a conflict"),
])
async def test_a_taken_external_id_is_a_conflict_and_changes_nothing(
    api: Api, method: str,
) -> None:
    taken, own = unique("FR"), unique("FR")
    await new_store(api, "first", external_id=taken)
    other = await new_store(api, "second", external_id=own)
    if method == "POST":
        response = await api.call("POST", "/v1/stores", ADMIN_TOKEN,
                                  json={"name": "third", "timezone": "UTC", "external_id": taken})
    else:
        response = await api.call("PATCH", f"/v1/stores/{other['id']}", ADMIN_TOKEN,
                                  json={"external_id": taken})
    stores = (await api.ok("GET", "/v1/stores?limit=1000"))["items"]
    holders = {s["external_id"]: s["name"] for s in stores if s["external_id"] in (taken, own)}
    assert (response.status_code, holders) == (409, {taken: "first", own: "second"})


@pytest.mark.parametrize("timezone", [
    pytest.param("Mars/Olympus_Mons", id="an unknown zone name"),
    pytest.param("+02:00", id="an offset instead of a zone name"),
    pytest.param("", id="an empty zone name"),
])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_bad_timezone_is_refused_naming_timezone(
    api: Api, method: str, timezone: str,
) -> None:
    store = await new_store(api)
    if method == "POST":
        response = await api.call("POST", "/v1/stores", ADMIN_TOKEN,
                                  json={"name": "x", "timezone": timezone})
    else:
        response = await api.call("PATCH", f"/v1/stores/{store['id']}", ADMIN_TOKEN,
                                  json={"timezone": timezone})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "timezone")


async def test_a_deleted_store_is_gone_with_its_geofences(api: Api) -> None:
    store = await new_store(api)
    fence = await new_fence(api, store["id"])
    await api.ok("DELETE", f"/v1/stores/{store['id']}")
    statuses = [(await api.call("GET", path, ADMIN_TOKEN)).status_code
                for path in (f"/v1/stores/{store['id']}", f"/v1/geofences/{fence['id']}")]
    again = await api.call("DELETE", f"/v1/stores/{store['id']}", ADMIN_TOKEN)
    assert (statuses, again.status_code) == ([404, 404], 404)


@pytest.mark.parametrize("names", [
    pytest.param("store", id="a store a campaign names cannot be deleted"),
    pytest.param("fence", id="a store whose geofence a campaign names cannot be deleted"),
])
async def test_deleting_a_store_a_campaign_references_is_a_conflict(
    api: Api, names: str,
) -> None:
    store = await new_store(api)
    fence = await new_fence(api, store["id"])
    body = campaign_naming([store["id"]] if names == "store" else [],
                           [fence["id"]] if names == "fence" else [])
    await api.ok("POST", "/v1/campaigns", json=body)
    response = await api.call("DELETE", f"/v1/stores/{store['id']}", ADMIN_TOKEN)
    still = [(await api.call("GET", path, ADMIN_TOKEN)).status_code
             for path in (f"/v1/stores/{store['id']}", f"/v1/geofences/{fence['id']}")]
    assert (response.status_code, still) == (409, [200, 200])


# ------------------------------------------------------------------------------- geofences

MULTI = {"type": "MultiPolygon",
         "coordinates": [[ring(LNG0, LAT0, 0.001)], [ring(LNG0 + 0.01, LAT0, 0.001)]]}


@pytest.mark.parametrize("body", [
    pytest.param({"name": "hall", "geometry": square()},
                 id="a Polygon fence is created with the defaults"),
    pytest.param({"name": "two doors", "geometry": MULTI, "dwell_seconds": 300,
                  "tags": ["mall", "food"]},
                 id="a MultiPolygon fence is created with its dwell and tags"),
    pytest.param({"name": "kiosk", "geometry": point(), "radius_m": 75.0, "enabled": False},
                 id="a Point fence is created as a circle with its radius"),
])
async def test_a_created_geofence_has_the_contract_fields_and_version_1(
    api: Api, body: Json,
) -> None:
    store = await new_store(api)
    fence = await api.ok("POST", f"/v1/stores/{store['id']}/geofences", json=body)
    expected = {"store_id": store["id"], "radius_m": None, "dwell_seconds": 120,
                "enabled": True, "tags": [], "version": 1, **body}
    assert (fence.keys() >= GEOFENCE_FIELDS, {k: fence[k] for k in expected}) == (True, expected)


@pytest.mark.parametrize("replacement", [
    pytest.param({"name": "hall v2", "geometry": square(0.002), "tags": ["new"]},
                 id="replacing a fence's square with a larger one makes version 2"),
    pytest.param({"name": "now a circle", "geometry": point(), "radius_m": 30.0},
                 id="replacing a polygon with a circle makes version 2"),
])
async def test_a_replaced_geofence_reads_back_replaced_at_version_2(
    api: Api, replacement: Json,
) -> None:
    store = await new_store(api)
    fence = await new_fence(api, store["id"], dwell_seconds=600, tags=["old"])
    await api.ok("PUT", f"/v1/geofences/{fence['id']}", json=replacement)
    read = await api.ok("GET", f"/v1/geofences/{fence['id']}")
    expected = {"radius_m": None, "dwell_seconds": 120, "enabled": True, "tags": [],
                **replacement, "version": 2}
    assert {k: read[k] for k in expected} == expected


@pytest.mark.parametrize(("raw", "radius_m", "field", "reason"), INVALID)
async def test_an_invalid_geometry_is_refused_over_http_and_nothing_is_stored(
    api: Api, raw: Json, radius_m: float | None, field: str, reason: str,
) -> None:
    store = await new_store(api)
    body: Json = {"name": "bad", "geometry": raw}
    if radius_m is not None:
        body["radius_m"] = radius_m
    response = await api.call("POST", f"/v1/stores/{store['id']}/geofences", ADMIN_TOKEN,
                              json=body)
    error = response.json()["errors"][0]
    stored = await fence_names(api, f"store_id={store['id']}")
    assert (response.status_code, error["field"], reason in error["message"], stored) == (
        400, field, True, set())


@pytest.mark.parametrize(("raw", "radius_m", "field", "reason"), INVALID[:3])
async def test_an_invalid_replacement_is_refused_and_the_fence_is_unchanged(
    api: Api, raw: Json, radius_m: float | None, field: str, reason: str,
) -> None:
    store = await new_store(api)
    fence = await new_fence(api, store["id"])
    response = await api.call("PUT", f"/v1/geofences/{fence['id']}", ADMIN_TOKEN,
                              json={"name": "bad", "geometry": raw})
    read = await api.ok("GET", f"/v1/geofences/{fence['id']}")
    assert (response.status_code, response.json()["errors"][0]["field"], read) == (
        400, field, fence)


@pytest.mark.parametrize(("query", "expected"), [
    pytest.param("", {"a-mall-food", "a-food", "b-mall"}, id="no filter lists every fence"),
    pytest.param("store_id={A}", {"a-mall-food", "a-food"}, id="store A's fences are its two"),
    pytest.param("store_id={B}", {"b-mall"}, id="store B's fences are its one"),
    pytest.param("tag=mall{T}", {"a-mall-food", "b-mall"}, id="the mall tag spans both stores"),
    pytest.param("tag=food{T}&store_id={A}", {"a-mall-food", "a-food"},
                 id="a tag and a store combine"),
    pytest.param("tag=mall{T}&store_id={B}", {"b-mall"}, id="the mall tag within store B"),
    pytest.param("tag=food{T}&store_id={B}", set(), id="a tag store B does not use lists nothing"),
    pytest.param("tag=none{T}", set(), id="an unused tag lists nothing"),
])
async def test_the_geofence_list_filters_by_store_and_tag(
    api: Api, query: str, expected: set[str],
) -> None:
    t = unique("")
    a, b = await new_store(api, "A"), await new_store(api, "B")
    await new_fence(api, a["id"], f"a-mall-food{t}", tags=[f"mall{t}", f"food{t}"])
    await new_fence(api, a["id"], f"a-food{t}", tags=[f"food{t}"])
    await new_fence(api, b["id"], f"b-mall{t}", tags=[f"mall{t}"])
    listed = await fence_names(api, query.format(A=a["id"], B=b["id"], T=t))
    assert {n.removesuffix(t) for n in listed if n.endswith(t)} == expected


async def test_a_deleted_geofence_is_gone(api: Api) -> None:
    store = await new_store(api)
    fence = await new_fence(api, store["id"])
    await api.ok("DELETE", f"/v1/geofences/{fence['id']}")
    statuses = [(await api.call(method, f"/v1/geofences/{fence['id']}", ADMIN_TOKEN)).status_code
                for method in ("GET", "DELETE")]
    assert statuses == [404, 404]


async def test_deleting_a_geofence_a_campaign_names_is_a_conflict(api: Api) -> None:
    store = await new_store(api)
    fence = await new_fence(api, store["id"])
    await api.ok("POST", "/v1/campaigns", json=campaign_naming([], [fence["id"]]))
    response = await api.call("DELETE", f"/v1/geofences/{fence['id']}", ADMIN_TOKEN)
    still = await api.call("GET", f"/v1/geofences/{fence['id']}", ADMIN_TOKEN)
    assert (response.status_code, still.status_code) == (409, 200)


# ---------------------------------------------------------------------- import and export


def feature(name: str, geometry: Json, **properties: Any) -> Json:
    return {"type": "Feature", "geometry": geometry, "properties": {"name": name, **properties}}


GOOD_FEATURES = [
    feature("hall", square(), tags=["mall"]),
    feature("doors", MULTI, dwell_seconds=30),
    feature("kiosk", point(), radius_m=40.0, enabled=False),
]


async def test_importing_three_valid_features_creates_three_fences(api: Api) -> None:
    store = await new_store(api)
    response = await api.ok("POST", f"/v1/stores/{store['id']}/geofences/import",
                            json={"type": "FeatureCollection", "features": GOOD_FEATURES})
    created = {f["name"] for f in response["created"]}
    stored = await fence_names(api, f"store_id={store['id']}")
    assert (created, stored) == ({"hall", "doors", "kiosk"}, {"hall", "doors", "kiosk"})


@pytest.mark.parametrize(("bad", "field"), [
    pytest.param(feature("bowtie", bowtie()), "features[1].geometry.coordinates",
                 id="a self-intersecting feature refuses the whole import"),
    pytest.param(feature("pole", point(LNG0, 95.0), radius_m=50.0),
                 "features[1].geometry.coordinates",
                 id="a feature at latitude 95 refuses the whole import"),
    pytest.param(feature("dot", point()), "features[1].properties.radius_m",
                 id="a Point feature without radius refuses the whole import"),
    pytest.param(feature("square", square(), radius_m=50.0), "features[1].properties.radius_m",
                 id="a Polygon feature with a radius refuses the whole import"),
    pytest.param(feature("slow", square(), dwell_seconds=-1),
                 "features[1].properties.dwell_seconds",
                 id="a negative dwell refuses the whole import"),
    pytest.param(feature("   ", square()), "features[1].properties.name",
                 id="a blank name refuses the whole import"),
])
async def test_an_import_with_one_bad_feature_stores_none(
    api: Api, bad: Json, field: str,
) -> None:
    store = await new_store(api)
    features = [GOOD_FEATURES[0], bad, GOOD_FEATURES[2]]
    response = await api.call("POST", f"/v1/stores/{store['id']}/geofences/import", ADMIN_TOKEN,
                              json={"type": "FeatureCollection", "features": features})
    stored = await fence_names(api, f"store_id={store['id']}")
    assert (response.status_code, response.json()["errors"][0]["field"], stored) == (
        400, field, set())


def portable(collection: Json) -> list[Json]:
    """What must survive an export and re-import: everything but ids and versions."""
    kept = ("name", "radius_m", "dwell_seconds", "enabled", "tags")
    return sorted(({"geometry": f["geometry"], **{k: f["properties"][k] for k in kept}}
                   for f in collection["features"]), key=lambda f: f["name"])


@pytest.mark.parametrize("features", [
    pytest.param(GOOD_FEATURES[:1], id="an exported Polygon re-imports identically"),
    pytest.param(GOOD_FEATURES[1:2], id="an exported MultiPolygon re-imports identically"),
    pytest.param(GOOD_FEATURES[2:], id="an exported disabled circle re-imports identically"),
    pytest.param(GOOD_FEATURES, id="an exported mix of fences re-imports identically"),
])
async def test_an_export_re_imports_into_another_store_identically(
    api: Api, features: list[Json],
) -> None:
    source, target = await new_store(api, "source"), await new_store(api, "target")
    await api.ok("POST", f"/v1/stores/{source['id']}/geofences/import",
                 json={"type": "FeatureCollection", "features": features})
    exported = await api.ok("GET", f"/v1/stores/{source['id']}/geofences/export")
    await api.ok("POST", f"/v1/stores/{target['id']}/geofences/import", json=exported)
    copied = await api.ok("GET", f"/v1/stores/{target['id']}/geofences/export")
    assert (exported["type"], portable(copied)) == ("FeatureCollection", portable(exported))


# ------------------------------------------------------------------------ catalogue version

Change = Callable[[Api, str, str], Awaitable[Any]]


async def _create(api: Api, store_id: str, fence_id: str) -> Any:
    return await api.call("POST", f"/v1/stores/{store_id}/geofences", ADMIN_TOKEN,
                          json={"name": "more", "geometry": point(), "radius_m": 20.0})


async def _replace(api: Api, store_id: str, fence_id: str) -> Any:
    return await api.call("PUT", f"/v1/geofences/{fence_id}", ADMIN_TOKEN,
                          json={"name": "moved", "geometry": square(0.002)})


async def _delete(api: Api, store_id: str, fence_id: str) -> Any:
    return await api.call("DELETE", f"/v1/geofences/{fence_id}", ADMIN_TOKEN)


async def _import(api: Api, store_id: str, fence_id: str) -> Any:
    return await api.call("POST", f"/v1/stores/{store_id}/geofences/import", ADMIN_TOKEN,
                          json={"type": "FeatureCollection", "features": GOOD_FEATURES})


async def _refused_create(api: Api, store_id: str, fence_id: str) -> Any:
    return await api.call("POST", f"/v1/stores/{store_id}/geofences", ADMIN_TOKEN,
                          json={"name": "bowtie", "geometry": bowtie()})


async def _refused_import(api: Api, store_id: str, fence_id: str) -> Any:
    return await api.call("POST", f"/v1/stores/{store_id}/geofences/import", ADMIN_TOKEN,
                          json={"type": "FeatureCollection",
                                "features": [GOOD_FEATURES[0], feature("bowtie", bowtie())]})


async def _read(api: Api, store_id: str, fence_id: str) -> Any:
    return await api.call("GET", f"/v1/geofences/{fence_id}", ADMIN_TOKEN)


@pytest.mark.parametrize(("change", "bumped"), [
    pytest.param(_create, True, id="creating a fence bumps the catalogue version"),
    pytest.param(_replace, True, id="replacing a fence bumps the catalogue version"),
    pytest.param(_delete, True, id="deleting a fence bumps the catalogue version"),
    pytest.param(_import, True, id="importing fences bumps the catalogue version"),
    pytest.param(_refused_create, False,
                 id="a refused fence leaves the catalogue version alone"),
    pytest.param(_refused_import, False,
                 id="a refused import leaves the catalogue version alone"),
    pytest.param(_read, False, id="reading a fence leaves the catalogue version alone"),
])
async def test_each_fence_change_bumps_the_catalogue_version(
    api: Api, module_db: asyncpg.Connection, change: Change, bumped: bool,
) -> None:
    store = await new_store(api)
    fence = await new_fence(api, store["id"])
    before = await catalog_version(module_db)
    await change(api, store["id"], fence["id"])
    after = await catalog_version(module_db)
    assert after > before if bumped else after == before
