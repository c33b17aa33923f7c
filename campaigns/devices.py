"""Devices: their push address (FCM token or Firebase installation id), consent, and erasure.

One rule: a device holds exactly one push address, and erasing a device leaves no row that
refers to it anywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import asyncpg
import msgspec
from msgspec import UNSET, Meta, UnsetType

from geo.errors import NotFound
from geo.model import check_timezone
from geo.store import Connection

Locale = Annotated[str, Meta(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")]
Platform = Literal["android", "ios", "web"]
PushAddress = Annotated[str, Meta(min_length=1, max_length=4096)]
ShortText = Annotated[str, Meta(min_length=1, max_length=200)]


# Device bodies ignore fields this version does not know (the contract): an app released
# after this server may send more, and must not be refused for it. Staff bodies refuse them.
class Consent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
              frozen=True):
    location: bool
    marketing_push: bool


class ConsentPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
                   frozen=True):
    location: bool | UnsetType = UNSET
    marketing_push: bool | UnsetType = UNSET


class DeviceIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
               frozen=True):
    platform: Platform
    consent: Consent
    fcm_token: PushAddress | None = None
    fid: PushAddress | None = None
    customer_id: ShortText | None = None
    locale: Locale | None = None
    timezone: str | None = None
    app_version: Annotated[str, Meta(min_length=1, max_length=64)] | None = None

    def __post_init__(self) -> None:
        if (self.fcm_token is None) == (self.fid is None):
            raise ValueError("fcm_token: give exactly one push address, fcm_token or fid")
        if self.timezone is not None:
            check_timezone(self.timezone)


class DevicePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
                  frozen=True):
    fcm_token: PushAddress | UnsetType = UNSET
    fid: PushAddress | UnsetType = UNSET
    consent: ConsentPatch | UnsetType = UNSET
    customer_id: ShortText | UnsetType | None = UNSET
    locale: Locale | UnsetType | None = UNSET
    timezone: str | UnsetType | None = UNSET
    app_version: Annotated[str, Meta(min_length=1, max_length=64)] | UnsetType = UNSET
    # Known, so not ignored like an unknown field: changing it is refused by name.
    platform: Annotated[str, Meta(description="cannot be changed: refused")] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.platform is not UNSET:
            raise ValueError("platform: cannot be changed; register the install again instead")
        if self.fcm_token is not UNSET and self.fid is not UNSET:
            raise ValueError("fcm_token: give at most one push address, fcm_token or fid")
        if isinstance(self.timezone, str):
            check_timezone(self.timezone)


class Registered(msgspec.Struct, frozen=True):
    device_id: UUID
    device_token: str


class Device(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    platform: str
    fcm_token: str | None
    fid: str | None
    push_retired_at: datetime | None
    customer_id: str | None
    locale: str | None
    timezone: str | None
    app_version: str | None
    consent: Consent
    consent_updated_at: datetime
    created_at: datetime
    updated_at: datetime


_COLUMNS = """id, platform, fcm_token, fid, push_retired_at, customer_id, locale, timezone,
    app_version, consent_location, consent_marketing, consent_updated_at, created_at, updated_at"""
# What `device_of` reads, for queries elsewhere that list devices.
DEVICE_COLUMNS = _COLUMNS

INSERT_DEVICE = """
INSERT INTO devices (id, token_hash, platform, fcm_token, fid, customer_id, locale, timezone,
                     app_version, consent_location, consent_marketing, consent_updated_at,
                     created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12)
"""
SELECT_DEVICE = f"SELECT {_COLUMNS} FROM devices WHERE id = $1"
LOCK_DEVICE = f"SELECT {_COLUMNS} FROM devices WHERE id = $1 FOR UPDATE"
UPDATE_DEVICE = f"""
UPDATE devices SET fcm_token = $2, fid = $3, push_retired_at = $4, customer_id = $5, locale = $6,
    timezone = $7, app_version = $8, consent_location = $9, consent_marketing = $10,
    consent_updated_at = CASE WHEN consent_location IS DISTINCT FROM $9
                                OR consent_marketing IS DISTINCT FROM $10
                              THEN $11 ELSE consent_updated_at END,
    updated_at = $11
WHERE id = $1 RETURNING {_COLUMNS}
"""
DELETE_DEVICE = "DELETE FROM devices WHERE id = $1 RETURNING id"
DEVICE_PINGS = """
SELECT ts, lat, lng, accuracy_m, speed_mps, heading_deg, cell, received_at FROM pings
WHERE device_id = $1 ORDER BY ts
"""
DEVICE_SIGNALS = """
SELECT ts, kind, attributes, received_at FROM signals WHERE device_id = $1 ORDER BY ts
"""
# Everything else held about the device, table by table, for the export.
DEVICE_HELD: dict[str, str] = {
    "presence": "SELECT state, last_at, updated_at FROM presence WHERE device_id = $1",
    "geo_events": """SELECT fence_id, store_id, kind, at, entered_at, customer_id, created_at
                     FROM geo_events WHERE device_id = $1 ORDER BY at, id""",
    "visits": """SELECT customer_key, place_id, arrived_at, departed_at, lat, lng, source
                 FROM visits WHERE device_id = $1 ORDER BY arrived_at, id""",
    "deliveries": """SELECT id, campaign_id, trigger_kind, fence_id, store_id, moment_at,
                            expires_at, status, error_code, fcm_message_name,
                            predicted_store_id, probability, created_at, sent_at, opened_at,
                            dismissed_at, redeemed_at, why
                     FROM deliveries WHERE device_id = $1 ORDER BY created_at, id""",
    "suppressions": """SELECT campaign_id, reason, detail, created_at FROM suppressions
                       WHERE device_id = $1 ORDER BY created_at""",
    # Treated and control moments, for measurement (campaigns/assignments.py).
    "assignments": """SELECT campaign_id, customer_key, moment_at, fence_id, store_id, arm,
                             global_holdout, created_at
                      FROM assignments WHERE device_id = $1 ORDER BY created_at, campaign_id""",
    # The events about it on the webhook stream (campaigns/webhooks/events.py).
    "webhook_events": """SELECT id, type, created_at, data FROM webhook_events
                         WHERE device_id = $1 ORDER BY created_at, id""",
}


def _device(row: asyncpg.Record) -> Device:
    values: dict[str, Any] = dict(row)
    values["consent"] = Consent(location=values.pop("consent_location"),
                                marketing_push=values.pop("consent_marketing"))
    return Device(**values)


def device_of(row: asyncpg.Record) -> Device:
    """A row of `DEVICE_COLUMNS` as a `Device`."""
    return _device(row)


async def register(conn: Connection, body: DeviceIn, token_hash: bytes, now: datetime) -> UUID:
    device_id = uuid4()
    await conn.execute(INSERT_DEVICE, device_id, token_hash, body.platform, body.fcm_token,
                       body.fid, body.customer_id, body.locale, body.timezone, body.app_version,
                       body.consent.location, body.consent.marketing_push, now)
    return device_id


async def get_device(conn: Connection, device_id: UUID, *, lock: bool = False) -> Device:
    row = await conn.fetchrow(LOCK_DEVICE if lock else SELECT_DEVICE, device_id)
    if row is None:
        raise NotFound("device", device_id)
    return _device(row)


async def patch_device(conn: Connection, device_id: UUID, patch: DevicePatch,
                       now: datetime) -> Device:
    d = await get_device(conn, device_id, lock=True)
    fcm_token, fid, retired = d.fcm_token, d.fid, d.push_retired_at
    # A new push address replaces the old one whole, and un-retires the device.
    if isinstance(patch.fcm_token, str):
        fcm_token, fid, retired = patch.fcm_token, None, None
    elif isinstance(patch.fid, str):
        fcm_token, fid, retired = None, patch.fid, None
    consent = d.consent
    if isinstance(patch.consent, ConsentPatch):
        consent = Consent(
            location=consent.location if patch.consent.location is UNSET
            else bool(patch.consent.location),
            marketing_push=consent.marketing_push if patch.consent.marketing_push is UNSET
            else bool(patch.consent.marketing_push),
        )

    def keep(new: Any, old: Any) -> Any:
        return old if new is UNSET else new

    row = await conn.fetchrow(
        UPDATE_DEVICE, device_id, fcm_token, fid, retired,
        keep(patch.customer_id, d.customer_id), keep(patch.locale, d.locale),
        keep(patch.timezone, d.timezone), keep(patch.app_version, d.app_version),
        consent.location, consent.marketing_push, now,
    )
    assert row is not None
    return _device(row)


# Tables that hold rows about a device, besides `devices` itself, and how to erase them.
# Later migrations that add such a table add it here too; the erasure test checks every
# uuid column of every table, so a forgotten one fails it.
ERASURE_STATEMENTS: tuple[str, ...] = (
    "DELETE FROM pings WHERE device_id = $1",
    "DELETE FROM signals WHERE device_id = $1",
    "DELETE FROM presence WHERE device_id = $1",
    "DELETE FROM geo_events WHERE device_id = $1",
    # Deliveries and suppressions stay for the campaigns' statistics, with nothing personal:
    # a push not yet sent will never be.
    """UPDATE deliveries SET device_id = NULL,
           status = CASE WHEN status IN ('queued', 'sending') THEN 'failed' ELSE status END,
           error_code = CASE WHEN status IN ('queued', 'sending') THEN 'DEVICE_ERASED'
                             ELSE error_code END
       WHERE device_id = $1""",
    "UPDATE suppressions SET device_id = NULL WHERE device_id = $1",
    # A moment of a device that is gone cannot be matched to conversions any more (its visits
    # and purchases go with it), so it leaves the measurement rather than count as unconverted.
    "DELETE FROM assignments WHERE device_id = $1",
    # Its webhook events, sent or not (their deliveries and attempts go with them): what was
    # already delivered is in the customer's own systems, which erasure there must cover.
    "DELETE FROM webhook_events WHERE device_id = $1",
)


async def erase(conn: Connection, device_id: UUID) -> None:
    """Erase the device and everything held about it (call inside a transaction)."""
    await get_device(conn, device_id, lock=True)
    for statement in ERASURE_STATEMENTS:
        await conn.execute(statement, device_id)
    await conn.execute(DELETE_DEVICE, device_id)


async def export(conn: Connection, device_id: UUID) -> dict[str, Any]:
    """Everything held about the device, as JSON-ready values."""
    device = await get_device(conn, device_id)
    held: dict[str, Any] = {"device": msgspec.to_builtins(device)}
    for name, query in (("pings", DEVICE_PINGS), ("signals", DEVICE_SIGNALS),
                        *DEVICE_HELD.items()):
        held[name] = msgspec.to_builtins([dict(r) for r in await conn.fetch(query, device_id)])
    return held
