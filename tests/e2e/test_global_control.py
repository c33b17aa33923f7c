"""The global control group through the HTTP API: its devices get no push from any campaign,
their would-be pushes are recorded, and `GET /v1/reports/uplift` compares them with everyone
else's treated moments (return visits drawn as exact seeded quotas, as in test_uplift)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from uuid import UUID

from campaigns.holdout import in_global_holdout
from tests.clock import CLOCK
from tests.e2e.conftest import World
from tests.e2e.test_uplift import dispatched

POLICY = {"max_per_device_per_day": 10, "min_seconds_between_pushes": 0, "quiet_hours": None,
          "global_holdout_percent": 20}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+", "%2B")


async def test_global_control_devices_get_no_push_and_are_compared_with_everyone_else(
    world: World,
) -> None:
    await world.api.ok("PUT", "/v1/policy", json=POLICY)
    campaign = await world.campaign()
    devices: dict[str, str] = {}
    while (sum(in_global_holdout(UUID(d), 20.0) for d in devices) < 8
           or sum(not in_global_holdout(UUID(d), 20.0) for d in devices) < 24):
        device, token = await world.device()
        devices[device] = token
    held = {d: t for d, t in devices.items() if in_global_holdout(UUID(d), 20.0)}
    others = {d: t for d, t in devices.items() if d not in held}
    start = CLOCK()
    for token in devices.values():
        await world.walk_in(token)
    await dispatched(world)

    pushed = {m["message"]["token"] for m in await world.messages()}
    tokens = await world.sql("SELECT id::text, fcm_token FROM devices")
    token_of = {r["id"]: r["fcm_token"] for r in tokens}
    assert pushed == {token_of[d] for d in others}
    stats = await world.stats(campaign["id"])
    assert (stats["sent"], stats["suppressed"]["global_holdout"]) == (len(others), len(held))

    CLOCK.advance(timedelta(minutes=2))
    for token in devices.values():
        await world.walk_out(token)
    CLOCK.advance(timedelta(hours=2))
    rng = random.Random(78)
    back = {**dict(rng.sample(sorted(held.items()), round(0.25 * len(held)))),
            **dict(rng.sample(sorted(others.items()), round(0.5 * len(others))))}
    for token in back.values():
        await world.walk_in(token)
    CLOCK.advance(timedelta(hours=23))

    report = await world.api.ok(
        "GET", f"/v1/reports/uplift?goal=visit&window_hours=24"
               f"&from={iso(start - timedelta(hours=1))}&to={iso(start + timedelta(hours=1))}")
    held_back = sum(d in back for d in held)
    others_back = sum(d in back for d in others)
    assert (report["control"], report["treated"]) == (
        {"n": len(held), "conversions": held_back, "rate": held_back / len(held)},
        {"n": len(others), "conversions": others_back, "rate": others_back / len(others)})
    assert report["uplift"] == others_back / len(others) - held_back / len(held)
    assert report["ci95"][0] <= report["uplift"] <= report["ci95"][1]
    # The global control group is no control for the campaign itself (it has no holdout).
    own = await world.api.ok("GET", f"/v1/campaigns/{campaign['id']}/uplift")
    assert (own["treated"]["n"], own["control"]["n"]) == (len(others), 0)
