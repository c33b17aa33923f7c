"""The world the schema fuzzer works in: real objects made through the API, a token per role.

One rule: everything is made the way a client would make it (through the API), except the sent
delivery, which is written as the dispatcher leaves one once FCM accepted it — sending a real
push needs the emulator, which this test has no use for.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from litestar import Litestar
from schemathesis.python import asgi

from tests.api.conftest import ADMIN_TOKEN

ROLES = ("admin", "campaign_manager", "store_manager", "app", "device")

# Its ping batch arrived at the moment and FCM accepted the push 350 ms later.
SENT_DELIVERY = """
INSERT INTO deliveries (id, campaign_id, device_id, moment_key, trigger_kind, fence_id,
                        store_id, moment_at, expires_at, status, attempts, created_at, sent_at)
VALUES ($1, $2, $3, $4, 'enter', $5, $6, $7, $8, 'sent', 1, $7, $7::timestamptz + interval '350 ms')
"""


@dataclass
class World:
    """Ids by the path parameter that names them, and a token by role."""

    app: Litestar
    database_url: str
    at: datetime
    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    key_ids: list[str] = field(default_factory=list)  # the role keys, which must stay in force

    def call(self, method: str, path: str, token: str = ADMIN_TOKEN,
             json: Any = None) -> Any:
        with asgi.get_client(self.app) as client:
            response = client.request(method, path, json=json,
                                      headers={"Authorization": f"Bearer {token}"})
        assert response.status_code in (200, 201), (method, path, response.text)
        return response.json()

    def token_for(self, role: str, method: str, path: str) -> str:
        """The role's token; a device changing or erasing itself is a throwaway one, so the
        shared device keeps its consent and its token."""
        if role == "device" and path == "/v1/devices/me" and method in ("PATCH", "DELETE"):
            return str(self.register_device()["device_token"])
        return self.tokens[role]

    def register_device(self) -> dict[str, Any]:
        body = {"platform": "android", "fcm_token": f"fuzz-{secrets.token_hex(8)}",
                "timezone": "UTC", "consent": {"location": True, "marketing_push": True}}
        device: dict[str, Any] = self.call("POST", "/v1/devices", self.tokens["app"], body)
        return device

    def repair(self) -> None:
        """Seed again what a fuzzed DELETE took away (a key, a store or what hangs on it)."""
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with asgi.get_client(self.app) as client:
            gone = any(client.get(path, headers=admin).status_code == 404 for path in (
                f"/v1/stores/{self.ids['store_id']}", f"/v1/geofences/{self.ids['fence_id']}",
                f"/v1/campaigns/{self.ids['campaign_id']}"))
            keys = {k["id"] for k in client.get("/v1/api-keys?limit=1000",
                                                headers=admin).json()["items"]}
        if gone or not {self.ids["key_id"], *self.key_ids}.issubset(keys):
            self.seed()

    def seed(self) -> None:
        at = self.at
        store = self.call("POST", "/v1/stores", json={
            "name": "Fuzz store", "timezone": "Europe/Paris",
            "external_id": f"fuzz-{secrets.token_hex(6)}"})
        fence = self.call("POST", f"/v1/stores/{store['id']}/geofences", json={
            "name": "Fuzz entrance", "geometry": {"type": "Point", "coordinates": [2.35, 48.85]},
            "radius_m": 80, "tags": ["fuzz"]})
        campaign = self.call("POST", "/v1/campaigns", json={
            "name": "Fuzz offer",
            "trigger": {"kind": "enter", "store_ids": [store["id"]],
                        "geofence_ids": [fence["id"]]},
            "schedule": {"starts_at": (at - timedelta(days=1)).isoformat(),
                         "ends_at": (at + timedelta(days=30)).isoformat()},
            "offer": {"title": "Fuzz", "body": "Ten percent off"},
            "offer_ttl_seconds": 900, "status": "active"})
        keys = {role: self.call("POST", "/v1/api-keys", json={
            "name": f"fuzz {role}", "role": role,
            **({"store_ids": [store["id"]]} if role == "store_manager" else {})})
            for role in ("campaign_manager", "store_manager", "app")}
        spare = self.call("POST", "/v1/api-keys", json={"name": "fuzz spare", "role": "app"})
        self.tokens = {"admin": ADMIN_TOKEN, **{r: k["token"] for r, k in keys.items()}}
        self.key_ids = [k["id"] for k in keys.values()]
        device = self.register_device()
        self.tokens["device"] = device["device_token"]
        delivery_id = uuid.uuid4()
        asyncio.run(_sent_delivery(self.database_url, delivery_id, campaign["id"],
                                   device["device_id"], fence["id"], store["id"], at))
        self.ids = {"store_id": store["id"], "fence_id": fence["id"],
                    "campaign_id": campaign["id"], "delivery_id": str(delivery_id),
                    "key_id": spare["id"]}


async def _sent_delivery(url: str, delivery_id: uuid.UUID, campaign_id: str, device_id: str,
                         fence_id: str, store_id: str, at: datetime) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SENT_DELIVERY, delivery_id, uuid.UUID(campaign_id),
                           uuid.UUID(device_id), f"fuzz-{delivery_id}", uuid.UUID(fence_id),
                           uuid.UUID(store_id), at, at + timedelta(minutes=15))
    finally:
        await conn.close()


def seed_world(app: Litestar, database_url: str, at: datetime) -> World:
    world = World(app=app, database_url=database_url, at=at)
    world.seed()
    return world
