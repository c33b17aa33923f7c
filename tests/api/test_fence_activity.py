"""GET /v1/reports/fences: enters, dwells and exits per fence and day, the days being the
store's own. The clock is pinned (Wednesday 17 June 2026, 10:00 UTC: 06:00 in New York)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.clock import at_local, now
from tests.e2e.conftest import SHOP_LAT, SHOP_LNG, offset

NEW_YORK = "America/New_York"


async def _world(api: Api, zone: str = NEW_YORK) -> dict[str, Any]:
    store = await api.ok("POST", "/v1/stores", json={"name": "Soho", "timezone": zone})
    door, aisle = [await api.ok("POST", f"/v1/stores/{store['id']}/geofences", json={
        "name": name, "geometry": {"type": "Point", "coordinates": [SHOP_LNG, SHOP_LAT]},
        "radius_m": radius}) for name, radius in (("door", 60), ("aisle", 30))]
    app = (await api.ok("POST", "/v1/api-keys", json={"name": "app", "role": "app"}))["token"]
    reg = await api.ok("POST", "/v1/devices", app, json={
        "platform": "ios", "fcm_token": "tok-activity",
        "consent": {"location": True, "marketing_push": False}})
    return {"store": store, "door": door, "aisle": aisle, "device": reg}


async def _events(database_url: str, world: dict[str, Any],
                  rows: list[tuple[str, str, datetime]]) -> None:
    """Presence events as the ping path records them: (fence, kind, at)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO geo_events (device_id, fence_id, store_id, kind, at) "
            "VALUES ($1, $2, $3, $4, $5)",
            [(world["device"]["device_id"], world[fence]["id"], world["store"]["id"], kind, at)
             for fence, kind, at in rows])
    finally:
        await conn.close()


def june(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    """An instant of June 2026 on New York's wall clock."""
    return at_local(NEW_YORK, time(hour, minute, second), date(2026, 6, day))


def _days(report: dict[str, Any], fence: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    [row] = [f for f in report["fences"] if f["geofence_id"] == fence["id"]]
    return [(d["date"], d["enters"], d["dwells"], d["exits"]) for d in row["days"]]


async def test_events_count_on_the_day_of_the_stores_wall_clock(
    api: Api, database_url: str,
) -> None:
    world = await _world(api)
    await _events(database_url, world, [
        ("door", "entered", june(16, 0, 0)),            # the first instant of the 16th
        ("door", "dwelled", june(16, 23, 59, 59)),      # its last second
        ("door", "exited", datetime(2026, 6, 17, 3, 30, tzinfo=UTC)),  # 23:30 on the 16th
        ("door", "entered", june(17, 0, 0)),            # midnight: the 17th
        ("door", "entered", june(14, 12, 0)),           # before the period asked
        ("aisle", "entered", june(16, 12, 0)),
    ])
    # and one through the ping path: a walk in at 05:58 on the 17th in New York
    t0 = now() - timedelta(minutes=2)
    pings = [{"lat": lat, "lng": lng, "accuracy_m": 8,
              "ts": (t0 + timedelta(seconds=10 * i)).isoformat()}
             for i, (lat, lng) in enumerate(offset(SHOP_LAT, SHOP_LNG, n, 0)
                                            for n in [300, 200, 120, 60, 10, 0, -5, 0])]
    await api.ok("POST", "/v1/pings", world["device"]["device_token"], expect=202,
                 json={"pings": pings})
    report = await api.ok("GET", f"/v1/reports/fences?store_id={world['store']['id']}"
                          "&from=2026-06-15&to=2026-06-17")
    assert (report["timezone"], report["from"], report["to"]) == (NEW_YORK, "2026-06-15",
                                                                    "2026-06-17")
    assert _days(report, world["door"]) == [
        ("2026-06-15", 0, 0, 0), ("2026-06-16", 1, 1, 1), ("2026-06-17", 2, 0, 0)]
    assert _days(report, world["aisle"]) == [
        ("2026-06-15", 0, 0, 0), ("2026-06-16", 1, 0, 0), ("2026-06-17", 1, 0, 0)]
    door = next(f for f in report["fences"] if f["geofence_id"] == world["door"]["id"])
    assert (door["name"], door["enters"], door["dwells"], door["exits"]) == ("door", 3, 1, 1)


async def test_by_default_the_last_14_days_up_to_today_in_the_stores_zone(api: Api) -> None:
    """At 10:00 UTC it is already the 18th on Kiritimati (UTC+14)."""
    world = await _world(api, "Pacific/Kiritimati")
    report = await api.ok("GET", f"/v1/reports/fences?store_id={world['store']['id']}")
    assert (report["from"], report["to"]) == ("2026-06-05", "2026-06-18")
    assert [len(f["days"]) for f in report["fences"]] == [14, 14]


async def test_one_fence_alone(api: Api, database_url: str) -> None:
    world = await _world(api)
    await _events(database_url, world, [("door", "entered", now() - timedelta(hours=1)),
                                        ("aisle", "entered", now() - timedelta(hours=1))])
    report = await api.ok("GET", f"/v1/reports/fences?store_id={world['store']['id']}"
                          f"&geofence_id={world['aisle']['id']}&from=2026-06-17&to=2026-06-17")
    assert [(f["name"], f["enters"]) for f in report["fences"]] == [("aisle", 1)]


async def test_only_the_stores_a_key_may_see(api: Api) -> None:
    world = await _world(api)
    other = await _world(api)
    mine = await api.ok("POST", "/v1/api-keys", json={
        "name": "m", "role": "store_manager", "store_ids": [world["store"]["id"]]})
    app = await api.ok("POST", "/v1/api-keys", json={"name": "a", "role": "app"})
    path = "/v1/reports/fences?store_id="
    answers = [
        await api.call("GET", path + world["store"]["id"], mine["token"]),
        await api.call("GET", path + other["store"]["id"], mine["token"]),
        await api.call("GET", path + world["store"]["id"]
                       + f"&geofence_id={other['door']['id']}", mine["token"]),
        await api.call("GET", path + world["store"]["id"], app["token"]),
    ]
    assert [a.status_code for a in answers] == [200, 404, 404, 403]


async def test_a_bad_period_is_refused_naming_the_field(api: Api) -> None:
    world = await _world(api)
    path = f"/v1/reports/fences?store_id={world['store']['id']}"
    cases = {
        "&from=2026-06-17&to=2026-06-16": "from",
        "&from=2026-01-01&to=2026-06-16": "to",
        "&from=0001-01-01&to=2026-06-16": "from",
        "&from=2026-02-30": "from",
    }
    for query, field in cases.items():
        response = await api.call("GET", path + query, ADMIN_TOKEN)
        problem = response.json()
        assert (response.status_code, [e["field"] for e in problem.get("errors", [])]) == (
            400, [field]), (query, problem)
