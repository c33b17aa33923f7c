"""GET /v1/live: moments and pushes as server-sent events, over a real socket (uvicorn on
loopback: a stream never ends, so it cannot go through the in-process test client), with the
dispatcher sending to the FCM emulator."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import uvicorn

from app.main import create_app
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.clock import CLOCK, now
from tests.e2e.conftest import SHOP_LAT, SHOP_LNG, emulator_thread, offset

Event = tuple[str, Any]  # (event name, decoded data; None for a comment)


@asynccontextmanager
async def served(database_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The service on a free loopback port, in this test's event loop."""
    with emulator_thread() as fcm:
        app = create_app(settings_for(database_url, fcm_endpoint=fcm, run_dispatcher=True,
                                      **settings), clock=CLOCK)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                              timeout_graceful_shutdown=1))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            assert not task.done(), "the service did not start"
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                yield client
        finally:
            server.should_exit = True
            await task
            sock.close()


class Watcher:
    """One open stream, read event by event."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines

    async def next(self, seconds: float = 5.0) -> Event:
        return await asyncio.wait_for(self._next(), seconds)

    async def _next(self) -> Event:
        name, data, comment = "message", [], None
        async for line in self.lines:
            if line == "":
                if data:
                    return name, json.loads("\n".join(data))
                if comment is not None:
                    return "comment", comment
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "":
                comment = value
        raise AssertionError("the stream ended")

    async def until(self, wanted: Callable[[Event], bool], seconds: float = 5.0) -> list[Event]:
        """Every event up to and including the first one `wanted`."""
        seen = []
        async with asyncio.timeout(seconds):
            while True:
                seen.append(await self._next())
                if wanted(seen[-1]):
                    return seen


@asynccontextmanager
async def watching(client: httpx.AsyncClient, token: str) -> AsyncIterator[Watcher]:
    async with client.stream("GET", "/v1/live",
                             headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        watcher = Watcher(response.aiter_lines())
        name, _ = await watcher.next()
        assert name == "hello"  # subscribed: what is published from now on reaches it
        yield watcher


async def call(client: httpx.AsyncClient, method: str, path: str, token: str = ADMIN_TOKEN,
               expect: int | None = None, **kwargs: Any) -> Any:
    response = await client.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                    **kwargs)
    assert response.status_code == (expect or {"POST": 201}.get(method, 200)), response.text
    return response.json() if response.content else None


async def shop(client: httpx.AsyncClient, name: str, lat: float, lng: float,
               fences: int = 1) -> tuple[str, list[str]]:
    store = await call(client, "POST", "/v1/stores", json={"name": name,
                                                          "timezone": "Europe/Paris"})
    ids = []
    for i in range(fences):
        fence = await call(client, "POST", f"/v1/stores/{store['id']}/geofences", json={
            "name": f"{name} {i}", "geometry": {"type": "Point", "coordinates": [lng, lat]},
            "radius_m": 60 + 10 * i})
        ids.append(fence["id"])
    return store["id"], ids


async def walk_in(client: httpx.AsyncClient, device: str, lat: float, lng: float,
                  minutes_ago: float = 2) -> None:
    t0 = now() - timedelta(minutes=minutes_ago)
    pings = []
    for i, north in enumerate([300, 200, 120, 60, 10, 0, -5, 0]):
        p_lat, p_lng = offset(lat, lng, north, 0)
        pings.append({"lat": p_lat, "lng": p_lng, "accuracy_m": 8,
                      "ts": (t0 + timedelta(seconds=10 * i)).isoformat()})
    await call(client, "POST", "/v1/pings", device, expect=202, json={"pings": pings})


async def device(client: httpx.AsyncClient) -> tuple[str, str]:
    app = (await call(client, "POST", "/v1/api-keys", json={"name": "app", "role": "app"}))
    reg = await call(client, "POST", "/v1/devices", app["token"], json={
        "platform": "android", "fcm_token": "tok-live", "timezone": "Europe/Paris",
        "consent": {"location": True, "marketing_push": True}})
    return reg["device_id"], reg["device_token"]


def is_push(status: str) -> Callable[[Event], bool]:
    return lambda e: e[0] == "push" and e[1]["status"] == status


async def test_a_store_manager_sees_its_stores_moments_and_pushes_and_not_another_stores(
    database_url: str,
) -> None:
    async with served(database_url, live_heartbeat_seconds=0.5) as client:
        a, (fence_a,) = await shop(client, "A", SHOP_LAT, SHOP_LNG)
        b, _ = await shop(client, "B", *offset(SHOP_LAT, SHOP_LNG, 0, 2000))
        manager = (await call(client, "POST", "/v1/api-keys", json={
            "name": "m", "role": "store_manager", "store_ids": [a]}))["token"]
        staff = (await call(client, "POST", "/v1/api-keys", json={
            "name": "s", "role": "campaign_manager"}))["token"]
        await call(client, "PUT", "/v1/policy", json={
            "max_per_device_per_day": 10, "min_seconds_between_pushes": 0, "quiet_hours": None})
        campaign = await call(client, "POST", "/v1/campaigns", json={
            "name": "coffee at A", "trigger": {"kind": "enter", "store_ids": [a]},
            "schedule": {"starts_at": (now() - timedelta(days=1)).isoformat(),
                         "ends_at": (now() + timedelta(days=1)).isoformat()},
            "offer": {"title": "Coffee", "body": "-20 %"}, "offer_ttl_seconds": 900,
            "status": "active"})
        device_id, token = await device(client)
        async with watching(client, manager) as mine, watching(client, staff) as everyone:
            await walk_in(client, token, *offset(SHOP_LAT, SHOP_LNG, 0, 2000), minutes_ago=30)
            await walk_in(client, token, SHOP_LAT, SHOP_LNG)
            seen_by_manager = await mine.until(is_push("sent"))
            seen_by_staff = await everyone.until(is_push("sent"))
            heartbeat = await mine.until(lambda e: e[0] == "comment", seconds=3)
    moments = [(e[1]["kind"], e[1]["store_id"], e[1]["fence_id"]) for e in seen_by_manager
               if e[0] == "moment"]
    pushes = [(e[1]["status"], e[1]["campaign_id"], e[1]["campaign_name"], e[1]["store_id"])
              for e in seen_by_manager if e[0] == "push"]
    assert moments == [("enter", a, fence_a)]
    assert pushes == [("queued", campaign["id"], "coffee at A", a),
                      ("sent", campaign["id"], "coffee at A", a)]
    enter = next(e[1] for e in seen_by_manager if e[0] == "moment")
    assert (enter["device"], enter["timezone"]) == (device_id.replace("-", "")[:8],
                                                    "Europe/Paris")
    assert sorted((e[1]["kind"], e[1]["store_id"]) for e in seen_by_staff
                  if e[0] == "moment") == sorted([("enter", b), ("exit", b), ("enter", a)])
    assert heartbeat[-1] == ("comment", "heartbeat")


async def test_only_staff_keys_may_watch(database_url: str) -> None:
    async with served(database_url) as client:
        app = (await call(client, "POST", "/v1/api-keys", json={"name": "a", "role": "app"}))
        nobody = await client.get("/v1/live")
        the_app = await client.get("/v1/live",
                                   headers={"Authorization": f"Bearer {app['token']}"})
    assert (nobody.status_code, the_app.status_code) == (401, 403)


async def test_a_watcher_that_takes_nothing_loses_the_newest_events_and_is_told(
    database_url: str,
) -> None:
    """Five fences entered in one batch, a queue of two: the batch is answered as usual, the
    watcher gets the two oldest and a `dropped` of three, and the metric counts them."""
    async with served(database_url, live_queue_events=2) as client:
        _, fences = await shop(client, "A", SHOP_LAT, SHOP_LNG, fences=5)
        _, token = await device(client)
        async with watching(client, ADMIN_TOKEN) as watcher:
            await walk_in(client, token, SHOP_LAT, SHOP_LNG)
            events = [await watcher.next() for _ in range(3)]
        metrics = (await client.get("/metrics")).text
    assert events[0] == ("dropped", {"events": 3})
    assert [(name, e["kind"]) for name, e in events[1:]] == [("moment", "enter")] * 2
    assert {e["fence_id"] for _, e in events[1:]} < set(fences)
    assert "contexto_live_dropped_total 3.0" in metrics

