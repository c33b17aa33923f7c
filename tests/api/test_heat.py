"""GET /v1/reports/heat: pings per H3 cell around a store, never a cell of fewer than 5
devices."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import h3

from geo.heat import MIN_DEVICES, aggregate
from tests.api.conftest import Api
from tests.clock import now
from tests.e2e.conftest import SHOP_LAT, SHOP_LNG, offset


async def _world(api: Api) -> dict[str, Any]:
    store = await api.ok("POST", "/v1/stores", json={"name": "Cler", "timezone": "Europe/Paris"})
    await api.ok("POST", f"/v1/stores/{store['id']}/geofences", json={
        "name": "shop", "geometry": {"type": "Point", "coordinates": [SHOP_LNG, SHOP_LAT]},
        "radius_m": 60})
    app = (await api.ok("POST", "/v1/api-keys", json={"name": "app", "role": "app"}))["token"]
    return {"store": store, "app": app}


async def _devices_ping(api: Api, app: str, n: int, at: tuple[float, float],
                        ago: timedelta, pings_each: int = 2) -> None:
    for i in range(n):
        reg = await api.ok("POST", "/v1/devices", app, json={
            "platform": "android", "fcm_token": f"tok-heat-{at[0]}-{i}",
            "consent": {"location": True, "marketing_push": False}})
        pings = [{"lat": at[0], "lng": at[1], "accuracy_m": 5,
                  "ts": (now() - ago + timedelta(seconds=j)).isoformat()}
                 for j in range(pings_each)]
        await api.ok("POST", "/v1/pings", reg["device_token"], expect=202, json={"pings": pings})


async def test_a_cell_shows_with_5_devices_and_not_with_4(api: Api) -> None:
    world = await _world(api)
    busy = offset(SHOP_LAT, SHOP_LNG, 0, 0)
    quiet = offset(SHOP_LAT, SHOP_LNG, 600, 0)
    await _devices_ping(api, world["app"], MIN_DEVICES, busy, timedelta(minutes=10))
    await _devices_ping(api, world["app"], MIN_DEVICES - 1, quiet, timedelta(minutes=10))
    await _devices_ping(api, world["app"], MIN_DEVICES, quiet, timedelta(hours=3))
    store_id = world["store"]["id"]
    hour = await api.ok("GET", f"/v1/reports/heat?store_id={store_id}&window=hour")
    day = await api.ok("GET", f"/v1/reports/heat?store_id={store_id}&window=day&resolution=9")
    busy_cell = h3.latlng_to_cell(*busy, 9)
    quiet_cell = h3.latlng_to_cell(*quiet, 9)
    assert (hour["cells"], hour["min_devices"]) == (
        [{"cell": busy_cell, "pings": 10, "devices": 5}], 5)
    assert sorted((c["cell"], c["pings"], c["devices"]) for c in day["cells"]) == sorted(
        [(busy_cell, 10, 5), (quiet_cell, 18, 9)])


async def test_pings_beyond_the_margin_are_not_counted(api: Api) -> None:
    world = await _world(api)
    await _devices_ping(api, world["app"], MIN_DEVICES, offset(SHOP_LAT, SHOP_LNG, 0, 3000),
                        timedelta(minutes=5), pings_each=1)
    near = await api.ok("GET", f"/v1/reports/heat?store_id={world['store']['id']}&window=hour")
    wide = await api.ok("GET", f"/v1/reports/heat?store_id={world['store']['id']}&window=hour"
                        "&margin_m=5000")
    assert ([c["devices"] for c in near["cells"]], [c["devices"] for c in wide["cells"]]) == (
        [], [5])


async def test_a_store_manager_reads_its_own_stores_only(api: Api) -> None:
    world = await _world(api)
    other = await api.ok("POST", "/v1/stores", json={"name": "B", "timezone": "Europe/Paris"})
    key = await api.ok("POST", "/v1/api-keys", json={
        "name": "m", "role": "store_manager", "store_ids": [world["store"]["id"]]})
    mine = await api.call("GET", f"/v1/reports/heat?store_id={world['store']['id']}",
                          key["token"])
    theirs = await api.call("GET", f"/v1/reports/heat?store_id={other['id']}", key["token"])
    app_key = await api.call("GET", f"/v1/reports/heat?store_id={other['id']}", world["app"])
    assert (mine.status_code, theirs.status_code, app_key.status_code) == (200, 404, 403)


async def test_bad_parameters_are_named(api: Api) -> None:
    world = await _world(api)
    base = f"/v1/reports/heat?store_id={world['store']['id']}"
    finer = await api.call("GET", f"{base}&resolution=12", "test-admin-token-0123456789abcdef"
                           "0123456789")
    window = await api.call("GET", f"{base}&window=month", "test-admin-token-0123456789abcdef"
                            "0123456789")
    assert (finer.status_code, finer.json()["errors"][0]["field"], window.status_code) == (
        400, "resolution", 400)


def test_devices_are_counted_after_the_cells_are_coarsened() -> None:
    fine = [h3.str_to_int(h3.latlng_to_cell(SHOP_LAT + i * 1e-4, SHOP_LNG, 11))
            for i in range(5)]
    rows = [(cell, f"device-{i}", 1) for i, cell in enumerate(fine)]
    coarse = aggregate(rows, 8)  # type: ignore[arg-type]
    assert ([(c.devices, c.pings) for c in coarse], aggregate(rows, 11)) == ([(5, 5)], [])
