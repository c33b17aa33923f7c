"""The event stream, written inside the transaction of each fact it reports.

One rule: an event row is inserted by the same statement or transaction that records its fact —
a presence moment, a push's outcome, an open or a redemption, a credited purchase — so a
committed fact always has its event and a rolled-back one never does; and only when some
subscription wants that type (decided by the database in the same statement: no cache to go
stale, no extra round trip, and nothing written when nobody listens). Fan-out to subscriptions
happens later, in the relay, never here.

Each event's `data`:
- `moment`: `device_id`, `customer_id`, `kind` (enter | dwell | exit), `fence_id`, `store_id`,
  `at`, `entered_at` (dwell and exit); or, for the customer's predicted next store (decided in
  the batch that made the prediction, only for stores a `predicted_next` campaign targets),
  `kind` predicted_next with `store_id`, `probability` and `at` (when they left the last place);
- `delivery.sent` / `delivery.failed`: `delivery_id`, `campaign_id`, `device_id`, `store_id`,
  `trigger_kind`, `moment_at`, `status`, `sent_at`, `fcm_message_name`, `error_code`;
- `delivery.opened` / `delivery.redeemed`: `delivery_id`, `campaign_id`, `device_id`, `at`;
- `conversion`: `kind` purchase — a `purchase` signal credited, when it is received, to the
  delivery last touch gives it (campaigns/attribution.py): `delivery_id`, `campaign_id`,
  `device_id`, `customer_id`, `store_id`, `amount`, `purchased_at`, `sent_at`; copies of one
  purchase (same device, instant and attributes) are one event. `kind` visit — an enter at a
  store, credited the same way (the last push sent before it that covers the store, within the
  window): `delivery_id`, `campaign_id`, `device_id`, `customer_id`, `store_id`, `fence_id`,
  `visited_at`, `sent_at`; a push converts by visit once, on the first such enter.

Every event row also keeps the `device_id` it is about, so erasing a device erases its events
(campaigns/devices.py) before or after they were sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from campaigns.attribution import WINDOW
from geo.store import Connection


def wanted(event_type_sql: str) -> str:
    """SQL true when some subscription wants the event type `event_type_sql` evaluates to."""
    return f"EXISTS (SELECT 1 FROM webhooks w WHERE {event_type_sql} = any(w.events))"


# The stores a delivery covered (as campaigns/attribution.py reads them).
_STORES = "CASE WHEN a.campaign_id IS NULL THEN ARRAY[d.store_id] ELSE a.store_ids END"
# The last push sent to the customer (whose devices are {devices}) before {at}, covering the
# store {store} (a text uuid; NULL: any): last touch, as campaigns/attribution.py credits.
_LAST_TOUCH = f"""
    SELECT d.id, d.campaign_id, d.sent_at
    FROM deliveries d
    LEFT JOIN assignments a ON a.campaign_id = d.campaign_id AND a.device_id = d.device_id
                           AND a.moment_key = d.moment_key
    WHERE d.device_id = any({{devices}}) AND d.status = 'sent' AND d.sent_at < {{at}}
      AND (({_STORES}) IS NULL OR {{store}} IS NULL OR {{store}} = any(({_STORES})::text[]))
    ORDER BY d.sent_at DESC, d.id DESC LIMIT 1
"""
_CUSTOMER_DEVICES = """CASE WHEN $2::text IS NULL THEN ARRAY[$1::uuid]
         ELSE ARRAY(SELECT c.id FROM devices c WHERE c.customer_id = $2) END"""

# The presence moments of a batch and their events, in one statement (ingest's one round trip
# for its geo events): $1 device, $2 customer, $3..$7 the events' columns, $8 now, $9 the
# attribution window. An enter at a store is also a visit `conversion` of the last push sent to
# the customer before it that covers the store, within the window; each push converts by visit
# once (its first such enter).
INSERT_MOMENTS = f"""
WITH g AS (
    INSERT INTO geo_events (device_id, customer_id, fence_id, store_id, kind, at, entered_at,
                            created_at)
    SELECT $1, $2, f, s, k, a, e, $8
    FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::timestamptz[], $7::timestamptz[])
         AS t(f, s, k, a, e)
    RETURNING id, device_id, customer_id, fence_id, store_id, kind, at, entered_at
), visits AS (
    INSERT INTO webhook_events (id, device_id, type, created_at, data, dedupe_key)
    SELECT gen_random_uuid(), g.device_id, 'conversion', $8,
           jsonb_build_object('kind', 'visit', 'delivery_id', last.id,
                              'campaign_id', last.campaign_id, 'device_id', g.device_id,
                              'customer_id', g.customer_id, 'store_id', g.store_id,
                              'fence_id', g.fence_id, 'visited_at', g.at,
                              'sent_at', last.sent_at),
           'conversion:visit:' || last.id
    FROM g CROSS JOIN LATERAL ({_LAST_TOUCH.format(devices=_CUSTOMER_DEVICES, at="g.at",
                                                   store="g.store_id::text")}) AS last
    WHERE g.kind = 'entered' AND g.at <= last.sent_at + $9::interval
      AND {wanted("'conversion'")}
    ON CONFLICT (dedupe_key) DO NOTHING
)
INSERT INTO webhook_events (id, device_id, type, created_at, data)
SELECT gen_random_uuid(), g.device_id, 'moment', $8,
       jsonb_build_object('device_id', g.device_id, 'customer_id', g.customer_id,
                          'kind', CASE g.kind WHEN 'entered' THEN 'enter'
                                              WHEN 'dwelled' THEN 'dwell' ELSE 'exit' END,
                          'fence_id', g.fence_id, 'store_id', g.store_id, 'at', g.at,
                          'entered_at', g.entered_at)
FROM g WHERE {wanted("'moment'")}
ORDER BY g.id
"""

# A predicted next store, decided in the batch's transaction: $1 device, $2 store, $3 when,
# $4 probability, $5 the moment's key (one event per moment however often it is decided), $6 now.
INSERT_PREDICTION = f"""
INSERT INTO webhook_events (id, device_id, type, created_at, data, dedupe_key)
SELECT gen_random_uuid(), $1, 'moment', $6,
       jsonb_build_object('device_id', $1::uuid,
                          'customer_id', (SELECT customer_id FROM devices WHERE id = $1),
                          'kind', 'predicted_next', 'fence_id', NULL, 'store_id', $2::uuid,
                          'at', $3::timestamptz, 'probability', $4::float8),
       'moment:' || $1::uuid || ':' || $5
WHERE {wanted("'moment'")}
ON CONFLICT (dedupe_key) DO NOTHING
"""

# The outcomes the dispatcher just recorded ($1: deliveries now sent or failed), $2 now.
_OUTCOME_TYPE = "CASE d.status WHEN 'sent' THEN 'delivery.sent' ELSE 'delivery.failed' END"
INSERT_OUTCOMES = f"""
INSERT INTO webhook_events (id, device_id, type, created_at, data, dedupe_key)
SELECT gen_random_uuid(), d.device_id, {_OUTCOME_TYPE}, $2,
       jsonb_build_object('delivery_id', d.id, 'campaign_id', d.campaign_id,
                          'device_id', d.device_id, 'store_id', d.store_id,
                          'trigger_kind', d.trigger_kind, 'moment_at', d.moment_at,
                          'status', d.status, 'sent_at', d.sent_at,
                          'fcm_message_name', d.fcm_message_name, 'error_code', d.error_code),
       {_OUTCOME_TYPE} || ':' || d.id
FROM deliveries d
WHERE d.id = any($1::uuid[]) AND d.status IN ('sent', 'failed') AND {wanted(_OUTCOME_TYPE)}
ON CONFLICT (dedupe_key) DO NOTHING
"""

# $1 delivery, $2 'opened' | 'redeemed', $3 when (the device's ts), $4 now.
INSERT_FEEDBACK = f"""
INSERT INTO webhook_events (id, device_id, type, created_at, data, dedupe_key)
SELECT gen_random_uuid(), d.device_id, 'delivery.' || $2, $4,
       jsonb_build_object('delivery_id', d.id, 'campaign_id', d.campaign_id,
                          'device_id', d.device_id, 'at', $3::timestamptz),
       'delivery.' || $2 || ':' || d.id
FROM deliveries d
WHERE d.id = $1 AND {wanted("'delivery.' || $2")}
ON CONFLICT (dedupe_key) DO NOTHING
"""

# $1 the device, $2 its purchases [{"ts", "attributes"}], $3 the window, $4 now. Each purchase
# goes to the last delivery sent to the customer (any of their devices) before it, covering its
# store; within the window, that one is credited.
INSERT_CONVERSIONS = f"""
WITH me AS (SELECT id, customer_id FROM devices WHERE id = $1),
mine AS (
    SELECT CASE WHEN me.customer_id IS NULL THEN ARRAY[me.id]
                ELSE ARRAY(SELECT c.id FROM devices c WHERE c.customer_id = me.customer_id)
           END AS devices, me.customer_id
    FROM me
),
p AS (
    SELECT DISTINCT ts, attributes FROM jsonb_to_recordset($2::jsonb) AS x(ts timestamptz,
                                                                           attributes jsonb)
)
INSERT INTO webhook_events (id, device_id, type, created_at, data, dedupe_key)
SELECT gen_random_uuid(), $1::uuid, 'conversion', $4,
       jsonb_build_object('kind', 'purchase', 'delivery_id', last.id,
                          'campaign_id', last.campaign_id,
                          'device_id', $1::uuid, 'customer_id', mine.customer_id,
                          'store_id', p.attributes ->> 'store_id',
                          'amount', p.attributes ->> 'amount', 'purchased_at', p.ts,
                          'sent_at', last.sent_at),
       'conversion:' || $1::uuid || ':' || p.ts || ':' || md5(p.attributes::text)
FROM p CROSS JOIN mine
CROSS JOIN LATERAL ({_LAST_TOUCH.format(devices="mine.devices", at="p.ts",
                                        store="(p.attributes ->> 'store_id')")}) AS last
WHERE p.ts <= last.sent_at + $3::interval AND {wanted("'conversion'")}
ON CONFLICT (dedupe_key) DO NOTHING
"""


async def record_moments(conn: Connection, device_id: UUID, customer_id: str | None,
                         fence_ids: Sequence[UUID], store_ids: Sequence[UUID],
                         kinds: Sequence[str], at: Sequence[datetime],
                         entered_at: Sequence[datetime | None], now: datetime) -> None:
    """Insert a batch's geo events and, when subscribed, their `moment` events and the visit
    `conversion`s their enters make."""
    await conn.execute(INSERT_MOMENTS, device_id, customer_id, list(fence_ids), list(store_ids),
                       list(kinds), list(at), list(entered_at), now, WINDOW)


async def record_prediction(conn: Connection, device_id: UUID, store_id: UUID,
                            at: datetime, probability: float | None, moment_key: str,
                            now: datetime) -> None:
    """The `moment` event of a predicted next store, when subscribed."""
    await conn.execute(INSERT_PREDICTION, device_id, store_id, at, probability, moment_key, now)


async def record_outcomes(conn: Connection, delivery_ids: Sequence[UUID], now: datetime) -> None:
    """`delivery.sent` / `delivery.failed` for deliveries that just reached that state."""
    if delivery_ids:
        await conn.execute(INSERT_OUTCOMES, list(delivery_ids), now)


async def record_feedback(conn: Connection, delivery_id: UUID, kind: str, at: datetime,
                          now: datetime) -> None:
    """`delivery.opened` / `delivery.redeemed` for feedback recorded for the first time."""
    if kind in ("opened", "redeemed"):
        await conn.execute(INSERT_FEEDBACK, delivery_id, kind, at, now)


async def record_conversions(conn: Connection, device_id: UUID,
                             purchases: Sequence[tuple[datetime, dict[str, Any]]],
                             now: datetime) -> None:
    """`conversion` for the purchases (ts, attributes) just received that last touch credits
    to a delivery."""
    if purchases:
        await conn.execute(INSERT_CONVERSIONS, device_id,
                           [{"ts": ts.isoformat(), "attributes": attrs} for ts, attrs in purchases],
                           WINDOW, now)
