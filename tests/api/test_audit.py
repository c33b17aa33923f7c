"""The audit log over HTTP: every staff write appears once, with its key, time, before and after;
a refused write leaves nothing; tokens never reach it.

The module shares one database and one app whose clock stands still at AT (a test moves it when
it needs another time). Each test writes with keys of its own and reads the log filtered by
those keys, so other tests' entries never get in the way. Objects a write needs beforehand are
made with the environment admin token, whose entries carry no key id. Filters and paging are in
test_audit_listing.py.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from app.auth import ENVIRONMENT_ADMIN
from app.clock import PinnedClock
from app.main import create_app
from tests.api.audit_world import (
    AT,
    POLICY,
    Json,
    campaign_body,
    entries,
    import_body,
    iso,
    new_campaign,
    new_fence,
    new_key,
    new_store,
)
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for
from tests.unit.test_fences import point

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLOCK = PinnedClock(AT, running=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(module_database_url: str) -> AsyncIterator[Api]:
    async with AsyncTestClient(app=create_app(settings_for(module_database_url),
                                              clock=CLOCK)) as client:
        yield Api(client)


@pytest.fixture(autouse=True)
def clock_at_start() -> None:
    CLOCK.set(AT)


async def shown(api: Api, resource: str, ident: str | None) -> Json | None:
    """The resource as the API shows it now (None: it does not exist, or is a revoked key)."""
    if resource == "api_key":
        cursor = ""
        while True:
            page = await api.ok("GET", f"/v1/api-keys?limit=1000{cursor}")
            found = [k for k in page["items"] if k["id"] == ident]
            if found or page["next_cursor"] is None:
                return found[0] if found else None
            cursor = f"&cursor={page['next_cursor']}"
    path = {"store": "/v1/stores/", "geofence": "/v1/geofences/", "campaign": "/v1/campaigns/",
            "policy": "/v1/policy"}[resource] + (ident or "")
    response = await api.call("GET", path, ADMIN_TOKEN)
    return response.json() if response.status_code == 200 else None


@dataclass(frozen=True)
class Write:
    """One staff write: what it does to which resource (`target`: None when it creates it)."""

    action: str
    resource: str
    method: str
    path: str
    body: Any = None
    target: str | None = None
    role: str = "admin"
    store_id: str | None = None  # the store a store manager's key is for
    status: int | None = None


async def key_create(api: Api) -> Write:
    return Write("create", "api_key", "POST", "/v1/api-keys", {"name": "kiosk", "role": "app"})


async def key_revoke(api: Api) -> Write:
    key = await new_key(api, "app")
    return Write("revoke", "api_key", "DELETE", f"/v1/api-keys/{key.id}", target=key.id)


async def store_create(api: Api) -> Write:
    return Write("create", "store", "POST", "/v1/stores",
                 {"name": "Opera", "timezone": "Europe/Paris"})


async def store_patch(api: Api) -> Write:
    store = await new_store(api)
    return Write("update", "store", "PATCH", f"/v1/stores/{store['id']}",
                 {"address": "1 rue Scribe"}, target=store["id"], role="store_manager",
                 store_id=store["id"])


async def store_delete(api: Api) -> Write:
    store = await new_store(api)
    return Write("delete", "store", "DELETE", f"/v1/stores/{store['id']}", target=store["id"])


async def fence_create(api: Api) -> Write:
    store = await new_store(api)
    return Write("create", "geofence", "POST", f"/v1/stores/{store['id']}/geofences",
                 {"name": "door", "geometry": point(), "radius_m": 30}, role="store_manager",
                 store_id=store["id"])


async def fence_put(api: Api) -> Write:
    store = await new_store(api)
    fence = await new_fence(api, store["id"])
    return Write("update", "geofence", "PUT", f"/v1/geofences/{fence['id']}",
                 {"name": "door", "geometry": point(), "radius_m": 60}, target=fence["id"],
                 role="store_manager", store_id=store["id"])


async def fence_delete(api: Api) -> Write:
    store = await new_store(api)
    fence = await new_fence(api, store["id"])
    return Write("delete", "geofence", "DELETE", f"/v1/geofences/{fence['id']}",
                 target=fence["id"])


async def fence_import(api: Api) -> Write:
    store = await new_store(api)
    return Write("import", "geofence", "POST", f"/v1/stores/{store['id']}/geofences/import",
                 import_body("north door", "south door"), role="store_manager",
                 store_id=store["id"])


async def campaign_create(api: Api) -> Write:
    return Write("create", "campaign", "POST", "/v1/campaigns", campaign_body(),
                 role="campaign_manager")


async def campaign_patch(api: Api) -> Write:
    campaign = await new_campaign(api)
    return Write("update", "campaign", "PATCH", f"/v1/campaigns/{campaign['id']}",
                 {"priority": 7}, target=campaign["id"], role="campaign_manager")


async def campaign_delete(api: Api) -> Write:
    campaign = await new_campaign(api)
    return Write("delete", "campaign", "DELETE", f"/v1/campaigns/{campaign['id']}",
                 target=campaign["id"], role="campaign_manager")


async def campaign_activate(api: Api) -> Write:
    campaign = await new_campaign(api)
    return Write("activate", "campaign", "POST", f"/v1/campaigns/{campaign['id']}/activate",
                 target=campaign["id"], role="campaign_manager", status=200)


async def campaign_pause(api: Api) -> Write:
    campaign = await new_campaign(api, status="active")
    return Write("pause", "campaign", "POST", f"/v1/campaigns/{campaign['id']}/pause",
                 target=campaign["id"], status=200)


async def policy_put(api: Api) -> Write:
    return Write("update", "policy", "PUT", "/v1/policy", POLICY)


WRITES: list[tuple[str, Callable[[Api], Awaitable[Write]]]] = [
    ("issuing an API key is recorded without its token", key_create),
    ("revoking an API key is recorded with its revocation time", key_revoke),
    ("creating a store is recorded", store_create),
    ("a store manager changing its store is recorded", store_patch),
    ("deleting a store is recorded", store_delete),
    ("a store manager drawing a geofence is recorded", fence_create),
    ("a store manager replacing a geofence is recorded", fence_put),
    ("deleting a geofence is recorded", fence_delete),
    ("an import is recorded once per geofence it created", fence_import),
    ("a campaign manager creating a campaign is recorded", campaign_create),
    ("a campaign manager changing a campaign is recorded", campaign_patch),
    ("a campaign manager deleting a campaign is recorded", campaign_delete),
    ("a campaign manager activating a campaign is recorded", campaign_activate),
    ("pausing a campaign is recorded", campaign_pause),
    ("replacing the policy is recorded", policy_put),
]


@pytest.mark.parametrize("arrange", [w[1] for w in WRITES], ids=[w[0] for w in WRITES])
async def test_every_staff_write_is_recorded_once_with_its_key_time_before_and_after(
        api: Api, arrange: Callable[[Api], Awaitable[Write]]) -> None:
    write = await arrange(api)
    key = await new_key(api, write.role, [write.store_id] if write.store_id else None)
    creates = write.action in ("create", "import")
    before = None if creates else await shown(api, write.resource, write.target)
    CLOCK.set(AT + timedelta(minutes=5))

    response = await api.ok(write.method, write.path, key.token, json=write.body,
                            expect=write.status)

    if creates:
        made = response["created"] if write.action == "import" else [response]
        targets: list[str | None] = [m["id"] for m in made]
    else:
        targets = [write.target]
    afters = [None if write.action == "delete" else await shown(api, write.resource, t)
              for t in targets]
    if write.action == "revoke":  # a revoked key is no longer listed; it is the key, revoked
        afters = [{**before, "revoked_at": iso(AT + timedelta(minutes=5))}] if before else []
    expected = [{"at": iso(AT + timedelta(minutes=5)), "key_id": key.id, "key_name": key.name,
                 "action": write.action, "resource": write.resource, "resource_id": t,
                 "before": before, "after": a} for t, a in zip(targets, afters, strict=True)]
    got = [{k: v for k, v in e.items() if k != "id"}
           for e in await entries(api, f"key_id={key.id}")]
    assert sorted(got, key=str) == sorted(expected, key=str)


async def test_deleting_a_store_records_the_store_and_each_geofence_it_took(api: Api) -> None:
    store = await new_store(api)
    fences = [await new_fence(api, store["id"]) for _ in range(2)]
    key = await new_key(api)

    await api.ok("DELETE", f"/v1/stores/{store['id']}", key.token)

    got = {(e["resource"], e["resource_id"], e["action"], e["after"]): e["before"]
           for e in await entries(api, f"key_id={key.id}")}
    assert got == {("store", store["id"], "delete", None): store,
                   **{("geofence", f["id"], "delete", None): f for f in fences}}


async def test_the_environment_admin_token_is_recorded_by_name_without_a_key_id(
        api: Api) -> None:
    store = await new_store(api)

    found = [e for e in await entries(api, "resource=store")
             if e["resource_id"] == store["id"]]

    assert [(e["key_id"], e["key_name"], e["action"]) for e in found] == [
        (None, ENVIRONMENT_ADMIN, "create")]


# ------------------------------------------------------------------------- refused writes

async def refused_unknown_field(api: Api) -> tuple[str, str, Any]:
    return "POST", "/v1/stores", {"name": "x", "timezone": "Europe/Paris", "colour": "red"}


async def refused_unknown_store(api: Api) -> tuple[str, str, Any]:
    return "PATCH", f"/v1/stores/{uuid.uuid4()}", {"name": "ghost"}


async def refused_duplicate_external_id(api: Api) -> tuple[str, str, Any]:
    taken = f"EXT-{uuid.uuid4().hex[:8]}"
    await new_store(api, external_id=taken)
    return "POST", "/v1/stores", {"name": "twin", "timezone": "Europe/Paris",
                                  "external_id": taken}


async def refused_import_with_a_bad_second_feature(api: Api) -> tuple[str, str, Any]:
    store = await new_store(api)
    body = import_body("good", "bad")
    body["features"][1]["properties"]["radius_m"] = 5  # below 10 m
    return "POST", f"/v1/stores/{store['id']}/geofences/import", body


async def refused_delete_of_a_referenced_store(api: Api) -> tuple[str, str, Any]:
    store = await new_store(api)
    await new_campaign(api, trigger={"kind": "enter", "store_ids": [store["id"]]})
    return "DELETE", f"/v1/stores/{store['id']}", None


async def refused_activation_after_the_end(api: Api) -> tuple[str, str, Any]:
    campaign = await new_campaign(api)
    CLOCK.set(AT + timedelta(days=31))
    return "POST", f"/v1/campaigns/{campaign['id']}/activate", None


async def refused_revocation_of_an_unknown_key(api: Api) -> tuple[str, str, Any]:
    return "DELETE", f"/v1/api-keys/{uuid.uuid4()}", None


async def refused_policy_out_of_range(api: Api) -> tuple[str, str, Any]:
    return "PUT", "/v1/policy", {**POLICY, "max_per_device_per_day": 101}


REFUSED: list[tuple[str, Callable[[Api], Awaitable[tuple[str, str, Any]]], int]] = [
    ("a store body with an unknown field", refused_unknown_field, 400),
    ("a change to a store that does not exist", refused_unknown_store, 404),
    ("a store with an external id already taken", refused_duplicate_external_id, 409),
    ("an import whose second feature is invalid", refused_import_with_a_bad_second_feature, 400),
    ("deleting a store a campaign names", refused_delete_of_a_referenced_store, 409),
    ("activating a campaign after its end", refused_activation_after_the_end, 409),
    ("revoking a key that does not exist", refused_revocation_of_an_unknown_key, 404),
    ("a policy out of range", refused_policy_out_of_range, 400),
]


@pytest.mark.parametrize(("arrange", "status"), [r[1:] for r in REFUSED],
                         ids=[f"{r[0]} is refused with {r[2]} and leaves no entry"
                              for r in REFUSED])
async def test_a_refused_write_leaves_no_entry(
        api: Api, module_db: asyncpg.Connection,
        arrange: Callable[[Api], Awaitable[tuple[str, str, Any]]], status: int) -> None:
    method, path, body = await arrange(api)
    key = await new_key(api)
    count = await module_db.fetchval("SELECT count(*) FROM audit_log")

    response = await api.call(method, path, key.token, json=body)

    assert (response.status_code, await entries(api, f"key_id={key.id}"),
            await module_db.fetchval("SELECT count(*) FROM audit_log")) == (status, [], count)


async def test_a_write_whose_entry_cannot_be_stored_is_not_stored_either(
        api: Api, module_db: asyncpg.Connection) -> None:
    key = await new_key(api)
    await module_db.execute(f"""
        CREATE FUNCTION refuse_entry() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$;
        CREATE TRIGGER refuse_entry BEFORE INSERT ON audit_log FOR EACH ROW
            WHEN (NEW.key_id = '{key.id}') EXECUTE FUNCTION refuse_entry();""")
    name = f"never {uuid.uuid4().hex[:8]}"
    try:
        response = await api.call("POST", "/v1/stores", key.token,
                                  json={"name": name, "timezone": "Europe/Paris"})
    finally:
        await module_db.execute("DROP TRIGGER refuse_entry ON audit_log; "
                                "DROP FUNCTION refuse_entry()")

    assert (response.status_code,
            await module_db.fetchval("SELECT count(*) FROM stores WHERE name = $1", name)) == (
        500, 0)


# --------------------------------------------------------------------------------- secrets

async def test_neither_a_token_nor_its_hash_reaches_the_audit_log(
        api: Api, module_db: asyncpg.Connection) -> None:
    issuer = await new_key(api)
    key = await api.ok("POST", "/v1/api-keys", issuer.token,
                       json={"name": "secret keeper", "role": "app"})
    await api.ok("DELETE", f"/v1/api-keys/{key['id']}", issuer.token)
    digest = hashlib.sha256(key["token"].encode()).digest()
    forms = {key["token"], key["token"].split("_", 1)[1], digest.hex(),
             msgspec.json.encode(digest).decode().strip('"')}  # base64, as JSON holds bytes

    rows = [r["row"] for r in await module_db.fetch(
        "SELECT a::text AS row FROM audit_log a WHERE key_id = $1", uuid.UUID(issuer.id))]

    assert (len(rows), [f for f in forms if any(f in row for row in rows)]) == (2, [])
