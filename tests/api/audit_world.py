"""What the audit tests write with: keys of their own, and the stores, fences, campaigns and
policy they change. Times are around AT, the instant the tests pin their app's clock at.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from tests.api.conftest import Api
from tests.unit.test_fences import point, square

Json = dict[str, Any]

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def iso(at: datetime) -> str:
    """A time as the service writes it."""
    return msgspec.json.encode(at).decode().strip('"')


@dataclass(frozen=True)
class Key:
    id: str
    name: str
    token: str


async def new_key(api: Api, role: str = "admin", store_ids: list[str] | None = None) -> Key:
    name = f"{role} {uuid.uuid4().hex[:8]}"
    extra = {"store_ids": store_ids} if store_ids else {}
    key = await api.ok("POST", "/v1/api-keys", json={"name": name, "role": role, **extra})
    return Key(key["id"], name, key["token"])


async def entries(api: Api, query: str) -> list[Json]:
    page = await api.ok("GET", f"/v1/audit?limit=1000&{query}")
    items: list[Json] = page["items"]
    return items


async def new_store(api: Api, **fields: Any) -> Json:
    body = {"name": f"store {uuid.uuid4().hex[:8]}", "timezone": "Europe/Paris", **fields}
    store: Json = await api.ok("POST", "/v1/stores", json=body)
    return store


async def new_fence(api: Api, store_id: str) -> Json:
    fence: Json = await api.ok("POST", f"/v1/stores/{store_id}/geofences",
                               json={"name": "entrance", "geometry": square()})
    return fence


def campaign_body(**fields: Any) -> Json:
    return {"name": "coats", "offer_ttl_seconds": 900,
            "trigger": {"kind": "enter", "tags": ["audit"]},
            "schedule": {"starts_at": iso(AT - timedelta(days=1)),
                         "ends_at": iso(AT + timedelta(days=30))},
            "offer": {"title": "Welcome", "body": "20% off"}, **fields}


async def new_campaign(api: Api, **fields: Any) -> Json:
    campaign: Json = await api.ok("POST", "/v1/campaigns", json=campaign_body(**fields))
    return campaign


def import_body(*names: str) -> Json:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": point(), "properties": {"name": n, "radius_m": 40}}
        for n in names]}


POLICY = {"max_per_device_per_day": 2, "min_seconds_between_pushes": 1800,
          "quiet_hours": {"from": "22:00", "to": "08:00"}}
