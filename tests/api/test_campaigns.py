"""Campaigns and the global policy over HTTP: creation, the validation table (each bad field named
by its path), listing, changes, the draft → active → paused lifecycle, deletion.

Roles are covered in test_roles.py; every call here is the admin's. The module shares one
database: each case makes its own campaigns under a unique name and looks only at those; the
policy, a singleton, is put back to its defaults after each case that changes it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.unit.test_fences import point

Json = dict[str, Any]

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEFAULT_POLICY: Json = {"max_per_device_per_day": 3, "min_seconds_between_pushes": 3600,
                        "quiet_hours": {"from": "21:00", "to": "09:00"},
                        "global_holdout_percent": 0}


@pytest.fixture(scope="module")
def api(module_api: Api) -> Api:
    return module_api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def places(module_api: Api) -> Json:
    """A store and one of its geofences, for triggers to name."""
    store = await module_api.ok("POST", "/v1/stores",
                                json={"name": "Rivoli", "timezone": "Europe/Paris"})
    fence = await module_api.ok("POST", f"/v1/stores/{store['id']}/geofences",
                                json={"name": "door", "geometry": point(), "radius_m": 50.0})
    return {"store_id": store["id"], "fence_id": fence["id"]}


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def full_campaign(places: Json, name: str) -> Json:
    """A valid campaign that gives every field of the contract."""
    return {
        "name": name,
        "trigger": {"kind": "dwell", "store_ids": [places["store_id"]],
                    "geofence_ids": [places["fence_id"]], "tags": ["food"]},
        "schedule": {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z",
                     "dayparts": [{"days": [1, 2, 3, 4, 5], "from": "11:30", "to": "14:00"},
                                  {"days": [6, 7], "from": "22:00", "to": "02:00"}]},
        "offer": {"title": "Lunch deal", "body": "10% off any menu until 14:00",
                  "deep_link": "shop://offers/lunch", "image_url": "https://cdn.example/l.png",
                  "data": {"coupon": "LUNCH10"}},
        "offer_ttl_seconds": 1800,
        "priority": 7,
        "caps": {"per_device": {"count": 2, "period_seconds": 604800}, "cooldown_seconds": 3600},
        "holdout_percent": 10.0,
        "status": "draft",
        "audience": {"micromoments": ["buy", "go"], "categories": ["electronics", "home.garden"],
                     "min_intent": 0.3, "value_tiers": ["high", "medium"]},
    }


def minimal_campaign(places: Json, name: str) -> Json:
    return {
        "name": name,
        "trigger": {"kind": "enter", "store_ids": [places["store_id"]]},
        "schedule": {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"},
        "offer": {"title": "Hello", "body": "Come in"},
        "offer_ttl_seconds": 600,
    }


NESTED_DEFAULTS: dict[str, Json] = {
    "trigger": {"geofence_ids": [], "store_ids": [], "tags": [], "min_probability": None,
                "min_stay_seconds": None},
    "schedule": {"dayparts": []},
    "offer": {"deep_link": None, "image_url": None, "data": {}},
    "caps": {"per_device": None, "cooldown_seconds": None},
    "audience": {"micromoments": None, "categories": None, "min_intent": None,
                 "value_tiers": None},
}


def nested_defaults(fields: Json) -> Json:
    """`fields` with what each nested object left out defaulted, as the service shows it."""
    return {k: {**NESTED_DEFAULTS[k], **v} if k in NESTED_DEFAULTS and v is not None else v
            for k, v in fields.items()}


def with_defaults(body: Json) -> Json:
    """The campaign as the service shows it: `body` with every field it left out defaulted."""
    top: Json = {"priority": 0, "caps": {}, "holdout_percent": 0.0, "status": "draft",
                 "audience": None, "value": 1.0}
    return nested_defaults({**top, **body})


def changed(body: Json, path: tuple[str | int, ...], value: Any) -> Json:
    """A deep copy of `body` with the value at `path` replaced (or added)."""
    result = copy.deepcopy(body)
    target: Any = result
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return result


async def names_listed(api: Api, query: str = "") -> list[str]:
    page = await api.ok("GET", f"/v1/campaigns?limit=1000{query}")
    return [c["name"] for c in page["items"]]


# ------------------------------------------------------------------------------- creation


@pytest.mark.parametrize("shape", [
    pytest.param("full", id="a campaign giving every field is created as written"),
    pytest.param("minimal", id="a minimal campaign is created with the contract's defaults"),
])
async def test_a_valid_campaign_is_created_with_identity_and_lifecycle(
    api: Api, places: Json, shape: str,
) -> None:
    name = unique("lunch")
    body = full_campaign(places, name) if shape == "full" else minimal_campaign(places, name)
    created = await api.ok("POST", "/v1/campaigns", json=body)
    expected = with_defaults(body)
    identity = {k for k in ("id", "status", "created_at", "updated_at") if created.get(k)}
    echoed = {k: created[k] for k in expected}
    assert (identity, echoed) == ({"id", "status", "created_at", "updated_at"}, expected)


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"

INVALID: list[Any] = [
    pytest.param(("schedule", "ends_at"), "2025-12-31T00:00:00Z", "schedule.ends_at",
                 id="a schedule ending before it starts names schedule.ends_at"),
    pytest.param(("schedule", "dayparts", 0, "days"), [0, 1], "schedule.dayparts[0].days[0]",
                 id="a daypart on day 0 names that day"),
    pytest.param(("schedule", "dayparts", 0, "days"), [1, 8], "schedule.dayparts[0].days[1]",
                 id="a daypart on day 8 names that day"),
    pytest.param(("schedule", "dayparts", 1, "from"), "25:00", "schedule.dayparts[1].from",
                 id="a daypart starting at 25:00 names its from"),
    pytest.param(("schedule", "dayparts", 0, "to"), "11:30", "schedule.dayparts[0].to",
                 id="a daypart ending when it starts names its to"),
    pytest.param(("offer_ttl_seconds",), 59, "offer_ttl_seconds",
                 id="an offer lasting 59 seconds is too short"),
    pytest.param(("offer_ttl_seconds",), 86401, "offer_ttl_seconds",
                 id="an offer lasting a day and a second is too long"),
    pytest.param(("trigger", "store_ids"), [UNKNOWN_ID], "trigger.store_ids",
                 id="a trigger naming an unknown store names trigger.store_ids"),
    pytest.param(("trigger", "geofence_ids"), [UNKNOWN_ID], "trigger.geofence_ids",
                 id="a trigger naming an unknown geofence names trigger.geofence_ids"),
    pytest.param(("trigger", "min_probability"), 0.5, "trigger.min_probability",
                 id="min_probability on a dwell trigger names trigger.min_probability"),
    pytest.param(("trigger", "min_stay_seconds"), 60, "trigger.min_stay_seconds",
                 id="min_stay_seconds on a dwell trigger names trigger.min_stay_seconds"),
    pytest.param(("offer", "title"), "", "offer.title", id="an empty title names offer.title"),
    pytest.param(("offer", "title"), "  ", "offer.title", id="a blank title names offer.title"),
    pytest.param(("offer", "body"), " \t ", "offer.body", id="a blank body names offer.body"),
    pytest.param(("offer", "data"), {"blob": "x" * 4000}, "offer",
                 id="an offer whose push payload is over 4 KB names the offer"),
    pytest.param(("offer", "data"), {"delivery_id": "x"}, "offer.data",
                 id="offer data using a key the push sets itself names offer.data"),
    pytest.param(("holdout_percent",), 51, "holdout_percent",
                 id="a holdout of 51 percent names holdout_percent"),
    pytest.param(("priority",), 1001, "priority", id="a priority of 1001 names priority"),
    pytest.param(("value",), -0.01, "value", id="a negative conversion value names value"),
    pytest.param(("value",), 2e9, "value", id="a conversion value above 1e9 names value"),
    pytest.param(("value",), "12", "value", id="a conversion value that is no number names value"),
    pytest.param(("audience", "micromoments"), ["buy", "wander"], "audience.micromoments[1]",
                 id="an unknown micromoment names its place in audience.micromoments"),
    pytest.param(("audience", "micromoments"), [], "audience.micromoments",
                 id="an empty micromoment list names audience.micromoments"),
    pytest.param(("audience", "micromoments"), ["go", "go"], "audience.micromoments",
                 id="a repeated micromoment names audience.micromoments"),
    pytest.param(("audience", "categories"), [], "audience.categories",
                 id="an empty category list names audience.categories"),
    pytest.param(("audience", "categories"), ["electronics", ""], "audience.categories[1]",
                 id="an empty category prefix names its place in audience.categories"),
    pytest.param(("audience", "categories"), [7], "audience.categories[0]",
                 id="a category prefix that is no string names its place"),
    pytest.param(("audience", "categories"), ["  "], "audience.categories",
                 id="a blank category prefix names audience.categories"),
    pytest.param(("audience", "categories"), ["electronics."], "audience.categories",
                 id="a category prefix ending in a dot, which nothing could match, is refused"),
    pytest.param(("audience", "categories"), ["Home", "home"], "audience.categories",
                 id="a category prefix repeated in another case is refused"),
    pytest.param(("audience", "value_tiers"), ["gold"], "audience.value_tiers[0]",
                 id="an unknown value tier names audience.value_tiers[0]"),
    pytest.param(("audience", "value_tiers"), ["low", "low"], "audience.value_tiers",
                 id="a repeated value tier names audience.value_tiers"),
    pytest.param(("audience", "min_intent"), 1.5, "audience.min_intent",
                 id="a minimum intent above 1 names audience.min_intent"),
    pytest.param(("audience", "min_intent"), -0.1, "audience.min_intent",
                 id="a negative minimum intent names audience.min_intent"),
    pytest.param(("audience", "min_intent"), "high", "audience.min_intent",
                 id="a minimum intent that is no number names audience.min_intent"),
    pytest.param(("audience",), {}, "audience",
                 id="an audience naming nothing is refused (null is how to have none)"),
    pytest.param(("audience",), ["buy"], "audience",
                 id="an audience that is no object names audience"),
    pytest.param(("audience", "colour"), "red", "audience.colour",
                 id="an unknown part of the audience is named by its path"),
    pytest.param(("colour",), "red", "colour", id="an unknown field is named"),
    pytest.param(("trigger", "colour"), "red", "trigger.colour",
                 id="an unknown field inside the trigger is named by its path"),
]


@pytest.mark.parametrize(("path", "value", "field"), INVALID)
async def test_an_invalid_campaign_is_refused_naming_the_field_and_nothing_is_created(
    api: Api, places: Json, path: tuple[str | int, ...], value: Any, field: str,
) -> None:
    name = unique("invalid")
    response = await api.call("POST", "/v1/campaigns", ADMIN_TOKEN,
                              json=changed(full_campaign(places, name), path, value))
    errors = response.json().get("errors", [])
    assert (response.status_code, errors[:1] and errors[0]["field"],
            name in await names_listed(api)) == (400, field, False)


@pytest.mark.parametrize(("path", "value", "field"), [
    pytest.param(("kind",), "enter", "trigger.min_probability",
                 id="min_probability with an enter trigger is refused"),
    pytest.param(("min_probability",), 1.5, "trigger.min_probability",
                 id="a probability above 1 is refused"),
    pytest.param(("store_ids",), [], "trigger.store_ids",
                 id="a predicted_next trigger that names no place is refused"),
])
async def test_an_invalid_predicted_next_trigger_is_refused_naming_the_field(
    api: Api, places: Json, path: tuple[str | int, ...], value: Any, field: str,
) -> None:
    body = full_campaign(places, unique("predicted"))
    body["trigger"] = changed({"kind": "predicted_next", "store_ids": [places["store_id"]],
                               "min_probability": 0.4}, path, value)
    response = await api.call("POST", "/v1/campaigns", ADMIN_TOKEN, json=body)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, field)


# -------------------------------------------------------------------------------- listing


@pytest.mark.parametrize(("query", "expected"), [
    pytest.param("", ["drafted", "activated", "paused"], id="no filter lists every status"),
    pytest.param("&status=draft", ["drafted"], id="the draft filter lists only drafts"),
    pytest.param("&status=active", ["activated"], id="the active filter lists only active ones"),
    pytest.param("&status=paused", ["paused"], id="the paused filter lists only paused ones"),
])
async def test_the_campaign_list_filters_by_status(
    api: Api, places: Json, query: str, expected: list[str],
) -> None:
    t = unique("")
    for name in ("drafted", "activated", "paused"):
        created = await api.ok("POST", "/v1/campaigns",
                               json=minimal_campaign(places, f"{name}{t}"))
        if name != "drafted":
            await api.ok("POST", f"/v1/campaigns/{created['id']}/activate", expect=200)
        if name == "paused":
            await api.ok("POST", f"/v1/campaigns/{created['id']}/pause", expect=200)
    page = await api.ok("GET", f"/v1/campaigns?limit=1000{query}")
    statuses = {c["status"] for c in page["items"]}
    mine = [c["name"].removesuffix(t) for c in page["items"] if c["name"].endswith(t)]
    wanted = {query.removeprefix("&status=")} if query else statuses
    assert (mine, statuses) == (expected, wanted)


async def test_a_bad_status_filter_is_refused(api: Api) -> None:
    response = await api.call("GET", "/v1/campaigns?status=finished", ADMIN_TOKEN)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "status")


# -------------------------------------------------------------------------------- changes


@pytest.mark.parametrize("patch", [
    pytest.param({"priority": 42}, id="changing the priority keeps everything else"),
    pytest.param({"name": "renamed"}, id="renaming keeps everything else"),
    pytest.param({"offer": {"title": "New", "body": "Newer"}},
                 id="a new offer replaces the old one whole"),
    pytest.param({"schedule": {"starts_at": "2026-02-01T00:00:00Z",
                               "ends_at": "2026-03-01T00:00:00Z"}},
                 id="a new schedule replaces the old one whole, dayparts included"),
    pytest.param({"audience": {"micromoments": ["know"]}},
                 id="a new audience replaces the old one whole, categories and min_intent too"),
    pytest.param({"audience": {"categories": ["Garden.Tools"], "min_intent": 0.0}},
                 id="an audience of categories alone keeps their case and a zero min_intent"),
    pytest.param({"audience": None}, id="a null audience removes it"),
    pytest.param({"value": 12.5}, id="a new conversion value keeps everything else"),
    pytest.param({"value": 0}, id="a conversion value of zero is allowed"),
])
async def test_a_patch_changes_only_what_it_names(api: Api, places: Json, patch: Json) -> None:
    created = await api.ok("POST", "/v1/campaigns", json=full_campaign(places, unique("lunch")))
    await api.ok("PATCH", f"/v1/campaigns/{created['id']}", json=patch)
    read = await api.ok("GET", f"/v1/campaigns/{created['id']}")
    expected = {**created, **nested_defaults(patch)}
    keys = set(expected) - {"updated_at"}
    assert {k: read[k] for k in keys} == {k: expected[k] for k in keys}


@pytest.mark.parametrize(("patch", "field"), [
    pytest.param({"schedule": {"starts_at": "2026-06-01T00:00:00Z",
                               "ends_at": "2026-05-01T00:00:00Z"}}, "schedule.ends_at",
                 id="a schedule ending before it starts is refused"),
    pytest.param({"schedule": {"starts_at": "2026-06-01T00:00:00Z"}}, "schedule.ends_at",
                 id="a schedule without its end is refused"),
    pytest.param({"trigger": {"kind": "enter", "store_ids": [UNKNOWN_ID]}},
                 "trigger.store_ids", id="a trigger naming an unknown store is refused"),
    pytest.param({"offer_ttl_seconds": 59}, "offer_ttl_seconds",
                 id="an offer lasting 59 seconds is refused"),
    pytest.param({"priority": 3, "offer": {"title": "x", "body": " "}}, "offer.body",
                 id="a valid priority with a blank body is refused whole"),
    pytest.param({"audience": {"micromoments": ["shop"]}}, "audience.micromoments[0]",
                 id="an audience with an unknown micromoment is refused"),
    pytest.param({"audience": {"micromoments": ["buy"], "min_intent": 2}},
                 "audience.min_intent", id="an audience with a minimum intent of 2 is refused"),
    pytest.param({"audience": {}}, "audience", id="an audience naming nothing is refused"),
    pytest.param({"value": -1}, "value", id="a negative conversion value is refused"),
    pytest.param({"value": None}, "value", id="a null conversion value is refused"),
])
async def test_an_invalid_patch_is_refused_and_the_campaign_is_unchanged(
    api: Api, places: Json, patch: Json, field: str,
) -> None:
    created = await api.ok("POST", "/v1/campaigns", json=full_campaign(places, unique("lunch")))
    response = await api.call("PATCH", f"/v1/campaigns/{created['id']}", ADMIN_TOKEN,
                              json=patch)
    read = await api.ok("GET", f"/v1/campaigns/{created['id']}")
    assert (response.status_code, response.json()["errors"][0]["field"], read) == (
        400, field, created)


# ------------------------------------------------------------------------------ lifecycle

LIVE = ("2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z")
ENDED = ("2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z")


@pytest.mark.parametrize(("schedule", "actions", "statuses", "final"), [
    pytest.param(LIVE, ["activate"], [200], "active", id="activating a draft makes it active"),
    pytest.param(LIVE, ["pause"], [200], "paused", id="pausing a draft makes it paused"),
    pytest.param(LIVE, ["activate", "pause"], [200, 200], "paused",
                 id="pausing an active campaign makes it paused"),
    pytest.param(LIVE, ["activate", "pause", "activate"], [200, 200, 200], "active",
                 id="a paused campaign can be activated again"),
    pytest.param(ENDED, ["activate"], [409], "draft",
                 id="activating a campaign whose schedule ended is a conflict"),
    pytest.param(ENDED, ["pause"], [200], "paused",
                 id="pausing a campaign whose schedule ended is allowed"),
])
async def test_activate_and_pause_move_the_status(
    api: Api, places: Json, schedule: tuple[str, str], actions: list[str], statuses: list[int],
    final: str,
) -> None:
    body = minimal_campaign(places, unique("cycle"))
    body["schedule"] = {"starts_at": schedule[0], "ends_at": schedule[1]}
    created = await api.ok("POST", "/v1/campaigns", json=body)
    got = [(await api.call("POST", f"/v1/campaigns/{created['id']}/{action}",
                           ADMIN_TOKEN)).status_code for action in actions]
    read = await api.ok("GET", f"/v1/campaigns/{created['id']}")
    assert (got, read["status"]) == (statuses, final)


async def test_a_deleted_campaign_is_gone(api: Api, places: Json) -> None:
    created = await api.ok("POST", "/v1/campaigns", json=minimal_campaign(places, unique("gone")))
    await api.ok("DELETE", f"/v1/campaigns/{created['id']}")
    statuses = [(await api.call(method, f"/v1/campaigns/{created['id']}", ADMIN_TOKEN)).status_code
                for method in ("GET", "DELETE")]
    assert statuses == [404, 404]


# --------------------------------------------------------------------------------- policy


@pytest_asyncio.fixture(loop_scope="module")
async def policy_restored(api: Api) -> AsyncIterator[None]:
    """Cases that change the global policy put the defaults back afterwards."""
    yield
    await api.ok("PUT", "/v1/policy", json=DEFAULT_POLICY)


async def test_the_policy_starts_with_the_contracts_defaults(api: Api) -> None:
    assert await api.ok("GET", "/v1/policy") == DEFAULT_POLICY


@pytest.mark.parametrize("policy", [
    pytest.param({"max_per_device_per_day": 5, "min_seconds_between_pushes": 600,
                  "quiet_hours": {"from": "22:30", "to": "07:15"},
                  "global_holdout_percent": 7.5},
                 id="a policy with every field replaces the old one"),
    pytest.param({"max_per_device_per_day": 0, "min_seconds_between_pushes": 0,
                  "quiet_hours": None, "global_holdout_percent": 0},
                 id="a policy with no quiet hours turns them off"),
    pytest.param({"max_per_device_per_day": 1, "min_seconds_between_pushes": 86400,
                  "quiet_hours": {"from": "08:00", "to": "20:00"},
                  "global_holdout_percent": 20},
                 id="a daytime quiet window that does not wrap is kept as given"),
])
@pytest.mark.usefixtures("policy_restored")
async def test_a_put_policy_replaces_it(api: Api, policy: Json) -> None:
    await api.ok("PUT", "/v1/policy", json=policy)
    assert await api.ok("GET", "/v1/policy") == policy


@pytest.mark.parametrize(("policy", "field"), [
    pytest.param({**DEFAULT_POLICY, "quiet_hours": {"from": "22:00", "to": "22:00"}},
                 "quiet_hours.to", id="quiet hours from and to the same minute are refused"),
    pytest.param({**DEFAULT_POLICY, "max_per_device_per_day": -1}, "max_per_device_per_day",
                 id="a negative daily maximum is refused"),
    pytest.param({**DEFAULT_POLICY, "min_seconds_between_pushes": -60},
                 "min_seconds_between_pushes", id="a negative gap between pushes is refused"),
    pytest.param({**DEFAULT_POLICY, "quiet_hours": {"from": "24:00", "to": "06:00"}},
                 "quiet_hours.from", id="quiet hours from 24:00 are refused"),
    pytest.param({**DEFAULT_POLICY, "quiet": True}, "quiet", id="an unknown field is refused"),
    pytest.param({**DEFAULT_POLICY, "global_holdout_percent": 20.5}, "global_holdout_percent",
                 id="a global holdout above 20 percent is refused"),
    pytest.param({**DEFAULT_POLICY, "global_holdout_percent": -1}, "global_holdout_percent",
                 id="a negative global holdout is refused"),
    pytest.param({**DEFAULT_POLICY, "global_holdout_percent": "5"}, "global_holdout_percent",
                 id="a global holdout given as text is refused"),
    pytest.param({**DEFAULT_POLICY, "global_holdout_percent": None}, "global_holdout_percent",
                 id="a null global holdout is refused"),
])
@pytest.mark.usefixtures("policy_restored")
async def test_an_invalid_policy_is_refused_and_the_policy_is_unchanged(
    api: Api, policy: Json, field: str,
) -> None:
    kept = {"max_per_device_per_day": 4, "min_seconds_between_pushes": 900,
            "quiet_hours": {"from": "20:00", "to": "08:00"}, "global_holdout_percent": 5}
    await api.ok("PUT", "/v1/policy", json=kept)
    response = await api.call("PUT", "/v1/policy", ADMIN_TOKEN, json=policy)
    read = await api.ok("GET", "/v1/policy")
    assert (response.status_code, response.json()["errors"][0]["field"], read) == (
        400, field, kept)
