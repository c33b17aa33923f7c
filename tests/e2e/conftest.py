"""The whole pipeline over HTTP: the app with its dispatcher, the real firebase-admin, and the
FCM emulator on loopback."""

from __future__ import annotations

import asyncio
import queue
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from app.main import create_app
from campaigns.fcm_emulator import run_emulator
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for
from tests.clock import CLOCK, now

# A store fence: a 60 m-radius circle around this point (Paris, rue Cler).
SHOP_LAT, SHOP_LNG = 48.8566, 2.3065
METRES_PER_DEG_LAT = 111_195.0


def offset(lat: float, lng: float, north_m: float, east_m: float) -> tuple[float, float]:
    import math

    return (lat + north_m / METRES_PER_DEG_LAT,
            lng + east_m / (METRES_PER_DEG_LAT * math.cos(math.radians(lat))))


@dataclass
class World:
    api: Api
    emulator: httpx.AsyncClient
    store_id: str
    fence_id: str
    app_token: str
    emulator_url: str
    database_url: str

    async def sql(self, query: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def stats(self, campaign_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.api.ok("GET", f"/v1/campaigns/{campaign_id}/stats")
        return result

    async def fault(self, status: int, count: int, retry_after: float | None = None) -> None:
        body: dict[str, Any] = {"status": status, "count": count}
        if retry_after is not None:
            body["retry_after"] = retry_after
        (await self.emulator.post("/emulator/faults", json=body)).raise_for_status()

    async def campaign(self, **overrides: Any) -> dict[str, Any]:
        now = CLOCK()
        body: dict[str, Any] = {
            "name": "coffee at the door",
            "trigger": {"kind": "enter", "store_ids": [self.store_id]},
            "schedule": {"starts_at": (now - timedelta(days=1)).isoformat(),
                         "ends_at": (now + timedelta(days=1)).isoformat()},
            "offer": {"title": "Coffee -20 %", "body": "Today only, at the counter",
                      "deep_link": "shop://offers/coffee", "data": {"sku": "coffee-1"}},
            "offer_ttl_seconds": 900,
            "caps": {"per_device": {"count": 1, "period_seconds": 86_400}},
            "status": "active",
        }
        body.update(overrides)
        result: dict[str, Any] = await self.api.ok("POST", "/v1/campaigns", json=body)
        return result

    async def device(self, *, marketing: bool = True, location: bool = True,
                     token: str | None = None, timezone: str = "UTC",
                     customer_id: str | None = None) -> tuple[str, str]:
        body: dict[str, Any] = {
            "platform": "android", "fcm_token": token or f"tok-{secrets.token_hex(8)}",
            "timezone": timezone, "consent": {"location": location, "marketing_push": marketing}}
        if customer_id is not None:
            body["customer_id"] = customer_id
        reg = await self.api.ok("POST", "/v1/devices", self.app_token, json=body)
        return reg["device_id"], reg["device_token"]

    async def walk_in(self, device_token: str, *, start: datetime | None = None,
                      expect: int = 202) -> Any:
        """Approach from 300 m north, then stand inside for a minute."""
        t0 = start or now() - timedelta(seconds=120)
        pings = []
        for i, north in enumerate([300, 200, 120, 60, 10, 0, -5, 0]):
            lat, lng = offset(SHOP_LAT, SHOP_LNG, north, 0)
            pings.append({"lat": lat, "lng": lng, "accuracy_m": 8,
                          "ts": (t0 + timedelta(seconds=10 * i)).isoformat()})
        response = await self.api.call("POST", "/v1/pings", device_token, json={"pings": pings})
        assert response.status_code == expect, response.text
        return response.json()

    async def walk_out(self, device_token: str, *, start: datetime | None = None) -> Any:
        t0 = start or now() - timedelta(seconds=60)
        pings = []
        for i, north in enumerate([150, 250, 350, 450, 550]):
            lat, lng = offset(SHOP_LAT, SHOP_LNG, north, 0)
            pings.append({"lat": lat, "lng": lng, "accuracy_m": 8,
                          "ts": (t0 + timedelta(seconds=15 * i)).isoformat()})
        return await self.api.ok("POST", "/v1/pings", device_token, expect=202,
                                 json={"pings": pings})

    async def messages(self) -> list[dict[str, Any]]:
        response = await self.emulator.get("/emulator/messages")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["messages"]
        return result

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool],
                       seconds: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while True:
            messages = await self.messages()
            if predicate(messages) or time.monotonic() > deadline:
                return messages
            await asyncio.sleep(0.05)

    async def settle(self, seconds: float = 0.6) -> list[dict[str, Any]]:
        """Give the dispatcher time to send anything it would send, then read the emulator."""
        await asyncio.sleep(seconds)
        return await self.messages()

    async def delivery_rows(self, campaign_id: str) -> list[dict[str, Any]]:
        page = await self.api.ok("GET", f"/v1/campaigns/{campaign_id}/deliveries")
        items: list[dict[str, Any]] = page["items"]
        return items

    async def settled_rows(self, campaign_id: str, seconds: float = 15.0) -> list[dict[str, Any]]:
        """The campaign's deliveries once none is queued or sending any more: the emulator may
        hold a message before the dispatcher has recorded its outcome (it saves outcomes in
        groups), so a row read the instant a message arrives can still say `sending`."""
        deadline = time.monotonic() + seconds
        while True:
            rows = await self.delivery_rows(campaign_id)
            if all(r["status"] not in ("queued", "sending") for r in rows) or \
                    time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.05)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    """Everything running: the app with its dispatcher, sending to the emulator."""
    async with build_world(database_url, run_dispatcher=True) as w:
        yield w


@pytest.fixture
async def quiet_world(database_url: str) -> AsyncIterator[World]:
    """The app without its dispatcher: deliveries are queued and stay so."""
    async with build_world(database_url, run_dispatcher=False) as w:
        yield w


@contextmanager
def emulator_thread() -> Iterator[str]:
    """The FCM emulator on its own thread and event loop; yields its URL.

    The app under test runs in the test client's thread, and that client's shutdown blocks the
    test's own event loop: an emulator served there could not answer a send still in flight, and
    the dispatcher would wait for it until its timeout.
    """
    ready: queue.Queue[str] = queue.Queue()
    stop: asyncio.Event | None = None
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with run_emulator("127.0.0.1", 0) as url:
            ready.put(url)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield ready.get(timeout=30)
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


@asynccontextmanager
async def build_world(database_url: str, *, run_dispatcher: bool,
                      **settings_overrides: Any) -> AsyncIterator[World]:
    with emulator_thread() as emulator_url:
        settings = settings_for(database_url, run_dispatcher=run_dispatcher,
                                fcm_endpoint=emulator_url, dispatch_lease_seconds=2.0,
                                **settings_overrides)
        app = create_app(settings, clock=CLOCK)
        async with AsyncTestClient(app=app) as client, \
                httpx.AsyncClient(base_url=emulator_url) as emulator:
            api = Api(client)
            store = await api.ok("POST", "/v1/stores",
                                 json={"name": "Rue Cler", "timezone": "Europe/Paris"})
            fence = await api.ok(
                "POST", f"/v1/stores/{store['id']}/geofences",
                json={"name": "shop", "geometry": {"type": "Point",
                                                   "coordinates": [SHOP_LNG, SHOP_LAT]},
                      "radius_m": 60, "dwell_seconds": 30})
            key = await api.ok("POST", "/v1/api-keys", json={"name": "app", "role": "app"})
            await api.ok("PUT", "/v1/policy", expect=200, json={
                "max_per_device_per_day": 10, "min_seconds_between_pushes": 0,
                "quiet_hours": None})
            yield World(api, emulator, store["id"], fence["id"], key["token"], emulator_url,
                        database_url)


__all__ = ["ADMIN_TOKEN", "World", "offset"]
