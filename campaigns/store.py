"""SQL for campaigns and the global policy; each function takes the connection.

One rule: the stored spec is always a valid `CampaignSpec`; the `status` column, not the spec,
says whether a campaign is live.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from campaigns.arbitrate import OPENED_WEIGHT, Outcomes
from campaigns.model import Campaign, CampaignSpec, CampaignStatus, Policy, QuietHours
from geo import store as geo_store
from geo.errors import Conflict, InvalidField, NotFound
from geo.store import After, Connection

_COLUMNS = "id, status, spec, created_at, updated_at, activated_at"

INSERT_CAMPAIGN = f"""
INSERT INTO campaigns (id, name, status, trigger_kind, spec, priority, activated_at, created_at,
                       updated_at)
VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $3 = 'active' THEN $7::timestamptz END, $7, $7)
RETURNING {_COLUMNS}
"""
SELECT_CAMPAIGN = f"SELECT {_COLUMNS} FROM campaigns WHERE id = $1"
# A write that records what it changed reads the row locked, so no other write slips in between.
LOCK_CAMPAIGN = SELECT_CAMPAIGN + " FOR UPDATE"
LIST_CAMPAIGNS = f"""
SELECT {_COLUMNS} FROM campaigns
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
ORDER BY created_at, id LIMIT $4
"""
ACTIVE_CAMPAIGNS = f"SELECT {_COLUMNS} FROM campaigns WHERE status = 'active'"
UPDATE_CAMPAIGN = f"""
UPDATE campaigns SET name = $2, trigger_kind = $3, spec = $4, priority = $5, updated_at = $6
WHERE id = $1 RETURNING {_COLUMNS}
"""
SET_STATUS = f"""
UPDATE campaigns SET status = $2, updated_at = $3,
    activated_at = CASE WHEN $2 = 'active' AND status <> 'active' THEN $3::timestamptz
                        ELSE activated_at END
WHERE id = $1 RETURNING {_COLUMNS}
"""
DELETE_CAMPAIGN = "DELETE FROM campaigns WHERE id = $1 RETURNING id"
REFERENCING = """
SELECT id FROM campaigns
WHERE EXISTS (SELECT 1 FROM jsonb_array_elements_text(spec->'trigger'->'store_ids') s
              WHERE s::uuid = any($1::uuid[]))
   OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(spec->'trigger'->'geofence_ids') g
              WHERE g::uuid = any($2::uuid[]))
ORDER BY id
"""
# Arbitration's evidence: sent deliveries of the last EVIDENCE_DAYS whose outcome is known, per
# campaign and learning bucket. A conversion is a redemption, or a `purchase` signal of the
# customer (any device with the delivery device's customer_id; the device alone when it has none)
# within the offer's life (moment to expiry, none later than now) at the delivery's store or naming
# no store; an open without a conversion counts as $3 of one (`campaigns/arbitrate.py` says why).
# A delivery is known once converted, dismissed, or past its expiry. The window keeps the query's
# cost bounded as deliveries accumulate and lets the rates follow a campaign whose appeal changes.
EVIDENCE_DAYS = 90
OUTCOMES = """
SELECT campaign_id, bucket, count(*)::float8 AS trials,
       count(*) FILTER (WHERE converted)
           + $3::float8 * count(*) FILTER (WHERE opened AND NOT converted) AS conversions
FROM (
    SELECT d.campaign_id, d.why -> 'context' ->> 'bucket' AS bucket,
           d.redeemed_at IS NOT NULL OR coalesce(p.bought, false) AS converted,
           d.opened_at IS NOT NULL AS opened,
           d.dismissed_at IS NOT NULL OR d.expires_at <= $2 AS closed
    FROM deliveries d
    JOIN devices dv ON dv.id = d.device_id
    LEFT JOIN LATERAL (
        SELECT true AS bought FROM signals s
        WHERE s.device_id = any(CASE WHEN dv.customer_id IS NULL THEN ARRAY[dv.id] ELSE ARRAY(
                  SELECT c.id FROM devices c WHERE c.customer_id = dv.customer_id) END)
          AND s.kind = 'purchase'
          AND s.ts >= d.moment_at AND s.ts < d.expires_at AND s.ts <= $2
          AND coalesce(s.attributes ->> 'store_id', d.store_id::text) = d.store_id::text
        LIMIT 1) p ON true
    WHERE d.campaign_id = any($1::uuid[]) AND d.why IS NOT NULL AND d.status = 'sent'
      AND d.moment_at > $4
) t
WHERE converted OR closed
GROUP BY 1, 2
"""
SELECT_POLICY = """
SELECT max_per_device_per_day, min_seconds_between_pushes, quiet_from, quiet_to,
       global_holdout_percent
FROM policy
"""
LOCK_POLICY = SELECT_POLICY + " FOR UPDATE"
UPDATE_POLICY = """
UPDATE policy SET max_per_device_per_day = $1, min_seconds_between_pushes = $2,
    quiet_from = $3, quiet_to = $4, global_holdout_percent = $5, updated_at = $6
"""


async def outcomes(conn: Connection, campaign_ids: Sequence[UUID],
                   now: datetime) -> dict[tuple[UUID, str], Outcomes]:
    if not campaign_ids:
        return {}
    rows = await conn.fetch(OUTCOMES, campaign_ids, now, OPENED_WEIGHT,
                            now - timedelta(days=EVIDENCE_DAYS))
    return {(r["campaign_id"], r["bucket"]): Outcomes(r["trials"], r["conversions"])
            for r in rows}


def _campaign(row: asyncpg.Record) -> Campaign:
    spec = msgspec.convert(row["spec"], CampaignSpec)
    fields: dict[str, Any] = {f: getattr(spec, f) for f in spec.__struct_fields__}
    fields.update(id=row["id"], status=row["status"], created_at=row["created_at"],
                  updated_at=row["updated_at"], activated_at=row["activated_at"])
    return Campaign(**fields)


async def check_references(conn: Connection, spec: CampaignSpec) -> None:
    trigger = spec.trigger
    for field, query, ids in (
        ("trigger.store_ids", geo_store.EXISTING_STORES, trigger.store_ids),
        ("trigger.geofence_ids", geo_store.EXISTING_FENCES, trigger.geofence_ids),
    ):
        missing = await geo_store.missing_ids(conn, query, ids)
        if missing:
            raise InvalidField(field, "unknown ids: " + ", ".join(map(str, missing)))


async def insert_campaign(conn: Connection, spec: CampaignSpec, now: datetime) -> Campaign:
    if spec.status == "active" and spec.schedule.ends_at <= now:
        raise Conflict(f"the schedule ended at {spec.schedule.ends_at.isoformat()}; a campaign "
                       "cannot start active after its end")
    await check_references(conn, spec)
    row = await conn.fetchrow(INSERT_CAMPAIGN, uuid4(), spec.name, spec.status,
                              spec.trigger.kind, msgspec.to_builtins(spec), spec.priority, now)
    assert row is not None
    return _campaign(row)


async def get_campaign(conn: Connection, campaign_id: UUID, *, lock: bool = False) -> Campaign:
    """The campaign; `lock`: also hold its row until the transaction ends."""
    row = await conn.fetchrow(LOCK_CAMPAIGN if lock else SELECT_CAMPAIGN, campaign_id)
    if row is None:
        raise NotFound("campaign", campaign_id)
    return _campaign(row)


async def list_campaigns(conn: Connection, status: str | None,
                         after: After, limit: int) -> list[Campaign]:
    return [_campaign(r) for r in await conn.fetch(LIST_CAMPAIGNS, status, *after, limit)]


async def active_campaigns(conn: Connection) -> list[Campaign]:
    return [_campaign(r) for r in await conn.fetch(ACTIVE_CAMPAIGNS)]


def spec_of(campaign: Campaign) -> dict[str, Any]:
    """The campaign's spec as plain JSON values, ready to merge a change into."""
    fields = {f: getattr(campaign, f) for f in CampaignSpec.__struct_fields__}
    result: dict[str, Any] = msgspec.to_builtins(fields)
    return result


async def update_campaign(conn: Connection, campaign_id: UUID,
                          spec: CampaignSpec, now: datetime) -> Campaign:
    await check_references(conn, spec)
    row = await conn.fetchrow(UPDATE_CAMPAIGN, campaign_id, spec.name, spec.trigger.kind,
                              msgspec.to_builtins(spec), spec.priority, now)
    if row is None:
        raise NotFound("campaign", campaign_id)
    return _campaign(row)


async def set_status(conn: Connection, campaign_id: UUID, status: CampaignStatus,
                     now: datetime) -> Campaign:
    current = await get_campaign(conn, campaign_id)
    if status == "active" and current.schedule.ends_at <= now:
        raise Conflict(f"campaign {campaign_id}'s schedule ended at "
                       f"{current.schedule.ends_at.isoformat()}; extend it before activating")
    row = await conn.fetchrow(SET_STATUS, campaign_id, status, now)
    assert row is not None
    return _campaign(row)


async def delete_campaign(conn: Connection, campaign_id: UUID) -> None:
    if await conn.fetchval(DELETE_CAMPAIGN, campaign_id) is None:
        raise NotFound("campaign", campaign_id)


async def campaigns_referencing(conn: Connection, store_ids: Sequence[UUID],
                                fence_ids: Sequence[UUID]) -> list[UUID]:
    return [r["id"] for r in await conn.fetch(REFERENCING, list(store_ids), list(fence_ids))]


async def get_policy(conn: Connection, *, lock: bool = False) -> Policy:
    """The policy; `lock`: also hold its row until the transaction ends."""
    row = await conn.fetchrow(LOCK_POLICY if lock else SELECT_POLICY)
    assert row is not None
    quiet = (QuietHours(from_=row["quiet_from"], to=row["quiet_to"])
             if row["quiet_from"] is not None else None)
    return Policy(max_per_device_per_day=row["max_per_device_per_day"],
                  min_seconds_between_pushes=row["min_seconds_between_pushes"],
                  quiet_hours=quiet, global_holdout_percent=row["global_holdout_percent"])


async def put_policy(conn: Connection, policy: Policy, now: datetime) -> Policy:
    quiet = policy.quiet_hours
    await conn.execute(UPDATE_POLICY, policy.max_per_device_per_day,
                       policy.min_seconds_between_pushes,
                       quiet.from_ if quiet else None, quiet.to if quiet else None,
                       policy.global_holdout_percent, now)
    return policy
