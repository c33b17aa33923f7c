"""The audit log's listing: filters by key, resource and time, newest-first keyset paging, and
a clear 400 for every filter it cannot read.

Like test_audit.py, the module shares one database and one app whose clock stands still at AT;
a test moves the clock to give its writes distinct times, and reads only its own keys' entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from urllib.parse import quote

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from app.clock import PinnedClock
from app.main import create_app
from tests.api.audit_world import AT, POLICY, Key, campaign_body, entries, import_body, new_key
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for

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


async def test_the_key_filter_shows_only_that_key_s_writes(api: Api) -> None:
    first, second = await new_key(api), await new_key(api)
    mine = await api.ok("POST", "/v1/stores", first.token,
                        json={"name": "mine", "timezone": "Europe/Paris"})
    await api.ok("POST", "/v1/stores", second.token,
                 json={"name": "theirs", "timezone": "Europe/Paris"})

    found = await entries(api, f"key_id={first.id}")

    assert [(e["key_id"], e["resource_id"]) for e in found] == [(first.id, mine["id"])]


async def test_the_resource_filter_shows_only_that_kind_of_resource(api: Api) -> None:
    key = await new_key(api)
    store = await api.ok("POST", "/v1/stores", key.token,
                         json={"name": "filtered", "timezone": "Europe/Paris"})
    await api.ok("POST", "/v1/campaigns", key.token, json=campaign_body())
    await api.ok("PUT", "/v1/policy", key.token, json=POLICY)

    found = await entries(api, f"key_id={key.id}&resource=store")

    assert [(e["resource"], e["resource_id"]) for e in found] == [("store", store["id"])]


async def writes_at(api: Api, key: Key, hours: list[int]) -> list[str]:
    """One store created at AT + each hour; the stores' ids."""
    ids = []
    for h in hours:
        CLOCK.set(AT + timedelta(hours=h))
        store = await api.ok("POST", "/v1/stores", key.token,
                             json={"name": f"hour {h}", "timezone": "Europe/Paris"})
        ids.append(store["id"])
    return ids


def hour(h: int, offset_hours: int = 0) -> str:
    """AT + h hours as a query value, written with the given offset."""
    at = (AT + timedelta(hours=h)).astimezone(timezone(timedelta(hours=offset_hours)))
    return quote(at.isoformat())


WINDOWS = [
    ("from is inclusive", f"from={hour(1)}", [3, 2, 1]),
    ("to is exclusive", f"to={hour(1)}", [0]),
    ("from and to together keep what lies between", f"from={hour(1)}&to={hour(3)}", [2, 1]),
    ("from equal to to is an empty window", f"from={hour(2)}&to={hour(2)}", []),
    ("a window before every write is empty", f"to={hour(0)}", []),
    ("a time with another offset is the same instant", f"from={hour(1, offset_hours=2)}",
     [3, 2, 1]),
]


@pytest.mark.parametrize(("query", "hours"), [w[1:] for w in WINDOWS],
                         ids=[w[0] for w in WINDOWS])
async def test_the_time_filter_keeps_writes_from_from_up_to_to(
        api: Api, query: str, hours: list[int]) -> None:
    key = await new_key(api)
    ids = await writes_at(api, key, [0, 1, 2, 3])

    found = await entries(api, f"key_id={key.id}&{query}")

    assert [e["resource_id"] for e in found] == [ids[h] for h in hours]


@pytest.mark.parametrize("limit", [1, 2, 5], ids=lambda n: f"pages of {n} walk the log newest "
                                                          "first without skip or repeat")
async def test_the_log_walked_by_cursor_yields_every_entry_once_newest_first(
        api: Api, limit: int) -> None:
    key = await new_key(api)
    ids = await writes_at(api, key, [0, 1, 2, 3, 4])
    seen: list[str] = []
    cursor = ""
    while True:
        page = await api.ok("GET", f"/v1/audit?key_id={key.id}&limit={limit}{cursor}")
        seen.extend(e["resource_id"] for e in page["items"])
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
        await writes_at(api, key, [9])  # newer than every page: never among the later ones

    assert seen == ids[::-1]


async def test_entries_at_the_same_instant_are_paged_without_skip_or_repeat(api: Api) -> None:
    key = await new_key(api)
    store = await api.ok("POST", "/v1/stores", key.token,
                         json={"name": "bulk", "timezone": "Europe/Paris"})
    created = await api.ok("POST", f"/v1/stores/{store['id']}/geofences/import", key.token,
                           json=import_body(*(f"door {i}" for i in range(5))))
    seen: list[str] = []
    cursor = ""
    while True:
        page = await api.ok("GET", f"/v1/audit?key_id={key.id}&resource=geofence"
                                   f"&limit=2{cursor}")
        seen.extend(e["resource_id"] for e in page["items"])
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"

    assert sorted(seen) == sorted(f["id"] for f in created["created"])


BAD_QUERIES = [
    ("an unknown resource", "resource=banana", "resource"),
    ("a from that is not a time", "from=yesterday", "from"),
    ("a from without an offset", "from=2026-03-10T12:00:00", "from"),
    ("a from with an unencoded plus", "from=2026-03-10T12:00:00+02:00", "from"),
    ("a to that is not a time", "to=2026-13-01T00:00:00Z", "to"),
    ("a from after the to", "from=2026-03-11T00:00:00Z&to=2026-03-10T00:00:00Z", "from"),
    ("a key id that is not a uuid", "key_id=42", "key_id"),
    ("a limit of 0", "limit=0", "limit"),
    ("a limit of 1001", "limit=1001", "limit"),
    ("a cursor the service did not issue", "cursor=not-a-cursor", "cursor"),
]


@pytest.mark.parametrize(("query", "field"), [q[1:] for q in BAD_QUERIES],
                         ids=[f"{q[0]} is refused naming {q[2]}" for q in BAD_QUERIES])
async def test_a_bad_audit_query_is_refused_naming_the_parameter(
        api: Api, query: str, field: str) -> None:
    response = await api.call("GET", f"/v1/audit?{query}", ADMIN_TOKEN)

    assert (response.status_code, response.headers["content-type"],
            [e["field"] for e in response.json()["errors"]]) == (
        400, "application/problem+json", [field])
