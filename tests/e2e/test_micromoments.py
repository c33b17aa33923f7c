"""A ping batch to a push on the device, through the real firebase-admin and the emulator."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.db import init_connection
from campaigns.dispatch import Dispatcher
from campaigns.fcm import FcmGateway
from tests.clock import CLOCK
from tests.e2e.conftest import SHOP_LAT, SHOP_LNG, World, offset


async def test_one_visit_sends_exactly_one_message_with_the_offer_and_its_lifetime(
        world: World) -> None:
    campaign = await world.campaign()
    _, token = await world.device(token="tok-one-visit")
    await world.walk_in(token)
    messages = await world.wait_for(lambda m: len(m) >= 1)
    messages = await world.settle()
    assert len(messages) == 1
    message = messages[0]["message"]
    assert message["token"] == "tok-one-visit"
    assert message["notification"]["title"] == "Coffee -20 %"
    assert message["data"]["campaign_id"] == campaign["id"]
    assert message["data"]["sku"] == "coffee-1"
    expires_at = datetime.fromisoformat(message["data"]["expires_at"])
    left = (expires_at - CLOCK()).total_seconds()
    ttl = float(message["android"]["ttl"].rstrip("s"))
    assert abs(ttl - left) < 5
    assert int(message["apns"]["headers"]["apns-expiration"]) == int(expires_at.timestamp())
    assert message["android"]["collapse_key"] == message["data"]["delivery_id"]


async def test_a_second_visit_within_the_cap_sends_nothing(world: World) -> None:
    await world.campaign()
    _, token = await world.device()
    await world.walk_in(token)
    await world.wait_for(lambda m: len(m) >= 1)
    await world.walk_out(token)
    await world.walk_in(token, start=CLOCK())
    assert len(await world.settle()) == 1


async def test_without_marketing_consent_nothing_is_sent_and_the_reason_is_counted(
        world: World) -> None:
    campaign = await world.campaign()
    _, token = await world.device(marketing=False)
    await world.walk_in(token)
    assert await world.settle() == []
    stats = await world.stats(campaign["id"])
    assert (stats["triggered"], stats["suppressed"]["consent"]) == (1, 1)


async def test_in_the_devices_quiet_hours_nothing_is_sent(world: World) -> None:
    campaign = await world.campaign()
    now = CLOCK()
    quiet = {"from": (now - timedelta(hours=1)).strftime("%H:%M"),
             "to": (now + timedelta(hours=1)).strftime("%H:%M")}
    await world.api.ok("PUT", "/v1/policy", expect=200, json={
        "max_per_device_per_day": 10, "min_seconds_between_pushes": 0, "quiet_hours": quiet})
    _, token = await world.device(timezone="UTC")
    await world.walk_in(token)
    assert await world.settle() == []
    assert (await world.stats(campaign["id"]))["suppressed"]["quiet_hours"] == 1


async def test_two_503s_then_success_deliver_one_message(world: World) -> None:
    campaign = await world.campaign()
    await world.fault(503, 2, retry_after=0.2)
    _, token = await world.device()
    await world.walk_in(token)
    messages = await world.wait_for(lambda m: len(m) >= 1, seconds=15)
    assert len(messages) == 1
    (delivery,) = await world.settled_rows(campaign["id"])
    assert (delivery["status"], delivery["attempts"]) == ("sent", 3)


async def test_an_unregistered_token_is_retired_and_never_sent_to_again(world: World) -> None:
    first = await world.campaign()
    device_id, token = await world.device(token="unregistered-phone")
    await world.walk_in(token)
    for _ in range(100):
        rows = await world.delivery_rows(first["id"])
        if rows and rows[0]["status"] != "queued" and rows[0]["status"] != "sending":
            break
        await asyncio.sleep(0.05)
    assert (rows[0]["status"], rows[0]["error_code"]) == ("failed", "UNREGISTERED")
    (device,) = await world.sql("SELECT push_retired_at FROM devices WHERE id = $1",
                                uuid.UUID(device_id))
    assert device["push_retired_at"] is not None
    second = await world.campaign(name="second", trigger={"kind": "exit", "min_stay_seconds": 0})
    await world.walk_out(token)
    await world.settle()
    assert await world.delivery_rows(second["id"]) == []
    assert (await world.stats(second["id"]))["suppressed"]["consent"] == 1


async def test_twenty_concurrent_copies_of_a_batch_send_one_message(world: World) -> None:
    campaign = await world.campaign(caps={})
    _, token = await world.device()
    start = CLOCK() - timedelta(seconds=120)
    await asyncio.gather(*(world.walk_in(token, start=start) for _ in range(20)))
    await world.wait_for(lambda m: len(m) >= 1)
    assert len(await world.settle()) == 1
    assert len(await world.delivery_rows(campaign["id"])) == 1


async def test_a_fence_created_a_moment_ago_triggers_on_the_next_ping(world: World) -> None:
    store = await world.api.ok("POST", "/v1/stores",
                               json={"name": "Kiosk", "timezone": "Europe/Paris"})
    lat, lng = offset(SHOP_LAT, SHOP_LNG, 2000, 0)
    campaign = await world.campaign(trigger={"kind": "enter", "store_ids": [store["id"]]})
    _, token = await world.device()
    await world.api.ok("POST", f"/v1/stores/{store['id']}/geofences", json={
        "name": "kiosk", "geometry": {"type": "Point", "coordinates": [lng, lat]},
        "radius_m": 50})
    now = CLOCK()
    pings = [{"lat": lat, "lng": lng, "accuracy_m": 5,
              "ts": (now - timedelta(seconds=s)).isoformat()} for s in (20, 10)]
    await world.api.ok("POST", "/v1/pings", token, expect=202, json={"pings": pings})
    await world.wait_for(lambda m: len(m) >= 1)
    assert len(await world.delivery_rows(campaign["id"])) == 1


async def test_a_moment_older_than_the_offer_ttl_is_never_sent(world: World) -> None:
    campaign = await world.campaign(offer_ttl_seconds=60)
    _, token = await world.device()
    await world.walk_in(token, start=CLOCK() - timedelta(minutes=30))
    assert await world.settle() == []
    stats = await world.stats(campaign["id"])
    assert (stats["triggered"], stats["suppressed"]["moment_expired"]) == (1, 1)


async def test_an_offer_that_runs_out_while_fcm_is_unavailable_ends_expired(
        world: World) -> None:
    campaign = await world.campaign(offer_ttl_seconds=60)
    await world.fault(503, 5, retry_after=120)
    _, token = await world.device()
    await world.walk_in(token, start=CLOCK() - timedelta(seconds=45))
    for _ in range(100):
        rows = await world.delivery_rows(campaign["id"])
        if rows and rows[0]["status"] == "expired":
            break
        await asyncio.sleep(0.05)
    assert rows[0]["status"] == "expired"
    assert await world.messages() == []


async def test_rows_claimed_by_a_killed_dispatcher_are_sent_after_restart_once(
        quiet_world: World) -> None:
    world = quiet_world
    campaign = await world.campaign()
    for _ in range(3):
        _, token = await world.device()
        await world.walk_in(token)
    pool = await asyncpg.create_pool(world.database_url, min_size=1, max_size=2,
                                     init=init_connection)
    gateway = FcmGateway(project_id="contexto-local", endpoint=world.emulator_url,
                         credentials_path=None)
    try:
        killed = Dispatcher(pool, gateway, lease=timedelta(seconds=30))
        assert len(await killed.claim(CLOCK())) == 3  # then it dies before sending
        later = CLOCK() + timedelta(seconds=31)
        restarted = Dispatcher(pool, gateway, lease=timedelta(seconds=30), clock=lambda: later)
        assert await restarted.run_once() == 3
        assert await restarted.run_once() == 0
    finally:
        await gateway.close()
        await pool.close()
    assert len(await world.messages()) == 3
    assert {r["status"] for r in await world.delivery_rows(campaign["id"])} == {"sent"}


async def test_feedback_from_the_device_is_counted_once_per_kind(world: World) -> None:
    campaign = await world.campaign()
    _, token = await world.device()
    await world.walk_in(token)
    (message,) = await world.wait_for(lambda m: len(m) >= 1)
    delivery_id = message["message"]["data"]["delivery_id"]
    for _ in range(100):
        if (await world.delivery_rows(campaign["id"]))[0]["status"] == "sent":
            break
        await asyncio.sleep(0.05)
    now = CLOCK().isoformat()
    for kind, recorded in (("opened", True), ("opened", False), ("redeemed", True)):
        body = await world.api.ok("POST", f"/v1/deliveries/{delivery_id}/events", token,
                                  expect=202, json={"kind": kind, "ts": now})
        assert body["recorded"] is recorded
    _, stranger = await world.device()
    response = await world.api.call("POST", f"/v1/deliveries/{delivery_id}/events", stranger,
                                    json={"kind": "opened", "ts": now})
    assert response.status_code == 404
    stats = await world.stats(campaign["id"])
    assert (stats["sent"], stats["opened"], stats["redeemed"]) == (1, 1, 1)


async def test_the_export_holds_presence_events_visits_and_deliveries(world: World) -> None:
    campaign = await world.campaign()
    _, token = await world.device()
    now = CLOCK()
    await world.walk_in(token, start=now - timedelta(minutes=4))
    await world.walk_out(token, start=now - timedelta(minutes=2))
    export = await world.api.ok("GET", "/v1/devices/me/export", token)
    assert (
        [e["kind"] for e in export["geo_events"]],
        [v["place_id"] for v in export["visits"]],
        [d["campaign_id"] for d in export["deliveries"]],
        len(export["presence"]),
    ) == (["entered", "dwelled", "exited"], [world.store_id], [campaign["id"]], 1)
    # and why each delivery went out, as GET /v1/deliveries/{id}/why shows it
    assert [d["why"]["chosen"]["campaign_id"] for d in export["deliveries"]] == [campaign["id"]]


async def test_a_push_goes_out_while_ping_batches_hold_every_request_connection(
        world: World) -> None:
    # The dispatcher claims and records on connections of its own: requests holding the whole
    # request pool (a burst of ping batches) must not hold back a push. Here the push is a retry
    # (FCM answered 503 first), and the request pool is held from before it comes due.
    campaign = await world.campaign()
    await world.fault(503, 1, retry_after=1.0)
    _, token = await world.device()
    await world.walk_in(token)
    for _ in range(100):  # until the first attempt is recorded (a connection of the test's own)
        rows = await world.sql("SELECT status, attempts FROM deliveries")
        if [tuple(r) for r in rows] == [("queued", 1)]:
            break
        await asyncio.sleep(0.05)
    client = world.api.client
    pool = client.app.state.pool
    held: list[Any] = []

    async def hold_every_connection() -> None:  # and each one the service's own tasks release
        while len(held) < pool.get_max_size():
            held.append(await pool.acquire())

    async def release() -> None:
        for conn in held:
            await pool.release(conn)

    # On the service's own event loop (the test client's portal), where its pool lives.
    holding = client.blocking_portal.start_task_soon(hold_every_connection)
    try:
        await asyncio.sleep(0.2)
        assert held  # the requests' pool is taken
        messages = await world.wait_for(lambda m: len(m) >= 1, seconds=10)
        for _ in range(100):  # the outcome is recorded while they are still held
            rows = await world.sql("SELECT status, attempts FROM deliveries")
            if [tuple(r) for r in rows] == [("sent", 2)]:
                break
            await asyncio.sleep(0.05)
    finally:
        holding.cancel()
        await asyncio.to_thread(client.blocking_portal.call, release)
    assert (len(messages), [tuple(r) for r in rows]) == (1, [("sent", 2)])
    assert len(await world.delivery_rows(campaign["id"])) == 1
