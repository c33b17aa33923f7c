"""The shape of every error (RFC 9457 problem+json naming the field), and the operations routes:
liveness, readiness, Prometheus metrics, and the OpenAPI document against the contract.

Roles are covered in test_roles.py. The module shares one app and database; metrics are read as
differences around the requests a case makes.
"""

from __future__ import annotations

import gc
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.clock import CLOCK

Json = dict[str, Any]

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROBLEM = "application/problem+json"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
STORE = {"name": "Rivoli", "timezone": "Europe/Paris"}
STORED_ROWS = """
SELECT (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM stores)
     + (SELECT count(*) FROM visits)
"""


@pytest.fixture(scope="module")
def api(module_api: Api) -> Api:
    return module_api


# --------------------------------------------------------------------------------- errors


ERRORS: list[Any] = [
    pytest.param("GET", "/v1/nowhere", {}, 404, None, id="an unknown route is not found"),
    pytest.param("GET", "/v1/stores/not-a-uuid", {}, 404, None,
                 id="an id that is not a uuid is not found"),
    pytest.param("DELETE", "/v1/policy", {}, 405, None,
                 id="a method the route does not have is not allowed"),
    pytest.param("PUT", "/v1/stores", {"json": STORE}, 405, None,
                 id="putting the store collection is not allowed"),
    pytest.param("POST", "/v1/stores",
                 {"json": {**STORE, "address": "x" * (1 << 20)}}, 413, None,
                 id="a body over 1 MiB is too large"),
    pytest.param("POST", "/v1/stores",
                 {"content": b'{"name": "Rivoli", ', "headers": {"content-type":
                                                                "application/json"}},
                 400, "body", id="malformed JSON is refused as a whole body"),
    pytest.param("POST", "/v1/stores", {"json": [STORE]}, 400, "body",
                 id="a list where an object belongs is refused as a whole body"),
    pytest.param("POST", "/v1/stores", {"json": {**STORE, "colour": "red"}}, 400, "colour",
                 id="an unknown field is refused naming it"),
    pytest.param("POST", "/v1/stores", {"json": {"name": "Rivoli"}}, 400, "timezone",
                 id="a missing field is refused naming it"),
    pytest.param("POST", "/v1/stores", {"json": {**STORE, "name": 7}}, 400, "name",
                 id="a field of the wrong type is refused naming it"),
    pytest.param("GET", f"/v1/stores/{UNKNOWN}", {}, 404, None,
                 id="an unknown store is not found"),
    pytest.param("PATCH", f"/v1/stores/{UNKNOWN}", {"json": {"name": "x"}}, 404, None,
                 id="patching an unknown store is not found"),
    pytest.param("GET", f"/v1/geofences/{UNKNOWN}", {}, 404, None,
                 id="an unknown geofence is not found"),
    pytest.param("GET", f"/v1/stores/{UNKNOWN}/geofences/export", {}, 404, None,
                 id="exporting the fences of an unknown store is not found"),
    pytest.param("GET", f"/v1/campaigns/{UNKNOWN}", {}, 404, None,
                 id="an unknown campaign is not found"),
    pytest.param("POST", f"/v1/campaigns/{UNKNOWN}/activate", {}, 404, None,
                 id="activating an unknown campaign is not found"),
    pytest.param("DELETE", f"/v1/api-keys/{UNKNOWN}", {}, 404, None,
                 id="revoking an unknown key is not found"),
]


@pytest.mark.parametrize(("method", "path", "request_args", "status", "field"), ERRORS)
async def test_every_error_is_problem_json_with_its_status(
    api: Api, method: str, path: str, request_args: Json, status: int, field: str | None,
) -> None:
    response = await api.call(method, path, ADMIN_TOKEN, **request_args)
    body = response.json()
    shape = {k: type(body.get(k)).__name__ for k in ("type", "title", "status", "detail")}
    named = body["errors"][0]["field"] if field is not None else None
    assert (response.status_code, response.headers["content-type"], shape, body["status"],
            named) == (status, PROBLEM, {"type": "str", "title": "str", "status": "int",
                                         "detail": "str"}, status, field)


NUL_INPUTS: list[Any] = [
    pytest.param("POST", "/v1/api-keys", {"json": {"name": "k\x00", "role": "app"}}, "name",
                 id="a NUL in a key's name is refused naming it"),
    pytest.param("POST", "/v1/stores", {"json": {**STORE, "name": "Ri\x00voli"}}, "name",
                 id="a NUL in a store's name is refused naming it"),
    pytest.param("POST", "/v1/stores", {"json": {**STORE, "address": "\x00"}}, "address",
                 id="a NUL in an optional field is refused naming it"),
    pytest.param("POST", "/v1/stores",
                 {"content": b'{"name": "Ri\\u0000voli", "timezone": "UTC"}',
                  "headers": {"content-type": "text/plain"}}, "name",
                 id="a JSON body labelled text/plain is checked like any JSON body"),
    pytest.param("GET", "/v1/geofences?tag=%00", {}, "tag",
                 id="a NUL in a query parameter is refused naming it"),
    pytest.param("POST", "/v1/visits/import",
                 {"content": "user_id,place_id,ts\nu\x00,p,1\n",
                  "headers": {"content-type": "text/csv"}}, "body.line[2].user_id",
                 id="a NUL in a visit CSV cell is refused naming its line and column"),
]


@pytest.mark.parametrize(("method", "path", "request_args", "field"), NUL_INPUTS)
async def test_a_nul_is_refused_naming_its_field_and_nothing_is_stored(
    api: Api, module_db: asyncpg.Connection, method: str, path: str, request_args: Json,
    field: str,
) -> None:
    # PostgreSQL refuses NUL in text: before the edge refused it, each of these was a 500.
    before = await module_db.fetchval(STORED_ROWS)
    response = await api.call(method, path, ADMIN_TOKEN, **request_args)
    after = await module_db.fetchval(STORED_ROWS)
    assert (response.status_code, response.headers["content-type"],
            [e["field"] for e in response.json()["errors"]], after - before) == (
        400, PROBLEM, [field], 0)


async def test_a_missing_token_is_problem_json_with_a_bearer_challenge(api: Api) -> None:
    response = await api.call("GET", "/v1/stores")
    assert (response.status_code, response.headers["content-type"],
            response.headers["www-authenticate"], response.json()["status"]) == (
        401, PROBLEM, "Bearer", 401)


# ----------------------------------------------------------------------- health and ready


@pytest.mark.parametrize(("path", "status"), [
    pytest.param("/healthz", "ok", id="healthz answers without a token"),
    pytest.param("/readyz", "ready", id="readyz answers without a token once the index is loaded"),
])
async def test_the_probes_answer_200_without_auth(api: Api, path: str, status: str) -> None:
    response = await api.call("GET", path)
    assert (response.status_code, response.json()["status"]) == (200, status)


# -------------------------------------------------------------------------------- metrics


async def sample(api: Api, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when it is not exposed yet)."""
    response = await api.call("GET", "/metrics")
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_metrics_is_prometheus_text(api: Api) -> None:
    response = await api.call("GET", "/metrics")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert (response.status_code, response.headers["content-type"].split(";")[0],
            {"contexto_http_requests", "contexto_pings_accepted", "contexto_pings_rejected"}
            <= families) == (200, "text/plain", True)


async def test_a_started_service_keeps_what_it_holds_out_of_the_collectors_walks(
        api: Api) -> None:
    # app.collector.settled, the last of the lifespan's resources: the modules, catalog and
    # models alive once started are frozen while the service runs.
    response = await api.call("GET", "/healthz")
    assert (response.status_code, gc.get_freeze_count() > 100_000) == (200, True)


@pytest.mark.parametrize(("method", "path", "route", "status"), [
    pytest.param("GET", "/v1/stores", "/v1/stores", "200",
                 id="two store lists count twice under their route and 200"),
    pytest.param("GET", f"/v1/stores/{UNKNOWN}", "/v1/stores/{store_id}", "404",
                 id="two unknown stores count twice under the route template and 404"),
    pytest.param("GET", "/v1/campaigns?limit=0", "/v1/campaigns", "400",
                 id="two bad campaign lists count twice under their route and 400"),
    pytest.param("POST", f"/v1/campaigns/{UNKNOWN}/pause",
                 "/v1/campaigns/{campaign_id}/pause", "404",
                 id="two pauses of an unknown campaign count twice under the template and 404"),
    pytest.param("GET", "/v1/no-such-thing", "unmatched", "404",
                 id="two requests to an unknown path count twice as unmatched and 404"),
    pytest.param("PUT", "/healthz", "unmatched", "405",
                 id="two requests with a wrong method count twice as unmatched and 405"),
])
async def test_requests_are_counted_by_route_and_status(
    api: Api, method: str, path: str, route: str, status: str,
) -> None:
    labels = {"method": method, "route": route, "status": status}
    before = await sample(api, "contexto_http_requests_total", **labels)
    for _ in range(2):
        await api.call(method, path, ADMIN_TOKEN)
    assert await sample(api, "contexto_http_requests_total", **labels) == before + 2


async def device_token(api: Api) -> str:
    key = await api.ok("POST", "/v1/api-keys", json={"name": "app", "role": "app"})
    device = await api.ok("POST", "/v1/devices", token=key["token"], json={
        "platform": "android", "fcm_token": "fcm-ops-test",
        "consent": {"location": True, "marketing_push": True}})
    token: str = device["device_token"]
    return token


@pytest.mark.parametrize(("lats", "accepted", "rejected"), [
    pytest.param([48.85, 48.851, 48.852], 3, 0, id="three good pings count three accepted"),
    pytest.param([48.85, 95.0, 48.852], 2, 1, id="a ping at latitude 95 counts one rejected"),
    pytest.param([-91.0, 95.0], 0, 2, id="two bad pings count two rejected and none accepted"),
])
async def test_pings_are_counted_accepted_and_rejected(
    api: Api, lats: list[float], accepted: int, rejected: int,
) -> None:
    token = await device_token(api)
    before = (await sample(api, "contexto_pings_accepted_total"),
              await sample(api, "contexto_pings_rejected_total"))
    now = CLOCK().isoformat()
    await api.ok("POST", "/v1/pings", token=token, expect=202,
                 json={"pings": [{"lat": lat, "lng": 2.35, "ts": now} for lat in lats]})
    after = (await sample(api, "contexto_pings_accepted_total"),
             await sample(api, "contexto_pings_rejected_total"))
    assert (after[0] - before[0], after[1] - before[1]) == (accepted, rejected)


# -------------------------------------------------------------------------------- OpenAPI

CONTRACT_OPERATIONS = {
    ("post", "/v1/api-keys"), ("get", "/v1/api-keys"), ("delete", "/v1/api-keys/{key_id}"),
    ("post", "/v1/stores"), ("get", "/v1/stores"),
    ("get", "/v1/stores/{store_id}"), ("patch", "/v1/stores/{store_id}"),
    ("delete", "/v1/stores/{store_id}"),
    ("post", "/v1/stores/{store_id}/geofences"),
    ("post", "/v1/stores/{store_id}/geofences/import"),
    ("get", "/v1/stores/{store_id}/geofences/export"),
    ("get", "/v1/geofences"), ("get", "/v1/geofences/{fence_id}"),
    ("put", "/v1/geofences/{fence_id}"), ("delete", "/v1/geofences/{fence_id}"),
    ("post", "/v1/devices"), ("patch", "/v1/devices/me"), ("delete", "/v1/devices/me"),
    ("get", "/v1/devices/me/export"),
    ("post", "/v1/pings"), ("post", "/v1/signals"),
    ("post", "/v1/campaigns"), ("get", "/v1/campaigns"),
    ("get", "/v1/campaigns/{campaign_id}"), ("patch", "/v1/campaigns/{campaign_id}"),
    ("delete", "/v1/campaigns/{campaign_id}"),
    ("post", "/v1/campaigns/{campaign_id}/activate"),
    ("post", "/v1/campaigns/{campaign_id}/pause"),
    ("get", "/v1/campaigns/{campaign_id}/deliveries"),
    ("get", "/v1/campaigns/{campaign_id}/stats"),
    ("get", "/v1/policy"), ("put", "/v1/policy"),
    ("post", "/v1/deliveries/{delivery_id}/events"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


async def test_the_openapi_document_has_every_operation_of_the_contract(api: Api) -> None:
    response = await api.call("GET", "/schema/openapi.json")
    paths: dict[str, Json] = response.json()["paths"]
    served = {(method, path) for path, item in paths.items() for method in item
              if method in HTTP_METHODS}
    assert (response.status_code, sorted(CONTRACT_OPERATIONS - served)) == (200, [])


DOCUMENTED: list[Any] = [
    pytest.param("/v1/geofences", "get", ["200", "400", "401", "403", "404"],
                 id="a list filtered by an id documents 404 for an id out of scope"),
    pytest.param("/v1/stores", "post", ["201", "400", "401", "403", "409", "413"],
                 id="a write with a body documents 400 409 and 413 but no 404"),
    pytest.param("/v1/pings", "post",
                 ["202", "400", "401", "403", "404", "409", "413", "429"],
                 id="a device route with a budget documents 429"),
    pytest.param("/v1/devices/me/export", "get", ["200", "401", "403", "404"],
                 id="a device route without input documents no 400"),
    pytest.param("/v1/visits/import", "post", ["201", "400", "401", "403", "409", "413"],
                 id="a route that reads a CSV body documents 400 and 413"),
    pytest.param("/readyz", "get", ["200", "503"],
                 id="a public probe documents no auth errors, and readyz its 503"),
]


@pytest.mark.parametrize(("path", "method", "statuses"), DOCUMENTED)
async def test_each_operation_documents_the_problems_its_route_can_answer(
    api: Api, path: str, method: str, statuses: list[str],
) -> None:
    operation = (await api.call("GET", "/schema/openapi.json")).json()["paths"][path][method]
    problems = {status: list(response.get("content", {}))
                for status, response in operation["responses"].items() if status >= "400"}
    assert (sorted(operation["responses"]), problems) == (
        statuses, {s: [PROBLEM] for s in statuses if s >= "400"})


async def test_the_document_says_who_needs_a_token_and_what_comes_with_429_and_401(
    api: Api,
) -> None:
    paths = (await api.call("GET", "/schema/openapi.json")).json()["paths"]
    pings = paths["/v1/pings"]["post"]
    assert (paths["/healthz"]["get"]["security"], pings["security"],
            pings["responses"]["429"]["headers"]["Retry-After"]["required"],
            pings["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]) == (
        [], [{"bearer": []}], True, True)


async def test_a_body_that_refuses_unknown_fields_says_so_and_a_response_does_not(
    api: Api,
) -> None:
    schemas = (await api.call("GET", "/schema/openapi.json")).json()["components"]["schemas"]
    assert (schemas["StoreIn"].get("additionalProperties"),
            schemas["Store"].get("additionalProperties")) == (False, None)
