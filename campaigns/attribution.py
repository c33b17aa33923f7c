"""Attribution: which push gets the credit for a purchase, for the campaigns' stats.

One rule: last touch — each purchase is credited to one delivery at most, the last one sent to
the customer (on any of their devices) before it within the default window (24 h), among those
for which it is a conversion: a `purchase` signal at one of the campaign's stores, or naming no
store. A purchase in two campaigns' windows counts for the later push only, and one in the
windows of two pushes of the same campaign counts once.

What counts: `purchase` signals, each with its `amount` as revenue (a visit carries no amount,
so visits are left to the uplift). Copies of one signal — the same device, instant and
attributes, as a retried batch leaves them — are one purchase. Deliveries made before migration
0008 (no assignment row) cover the store of their moment.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec

from campaigns.uplift import DEFAULT_WINDOW_HOURS
from geo.store import Connection

WINDOW = timedelta(hours=DEFAULT_WINDOW_HOURS)

# The stores a delivery's campaign covered when it was decided (NULL: every store); a delivery
# made before assignments were kept covers its moment's store.
_STORES = "CASE WHEN {a}.campaign_id IS NULL THEN ARRAY[{d}.store_id] ELSE {a}.store_ids END"
_ASSIGNMENT = """LEFT JOIN assignments {a} ON {a}.campaign_id = {d}.campaign_id
       AND {a}.device_id = {d}.device_id AND {a}.moment_key = {d}.moment_key"""
# The purchase `s` converts for a delivery covering `stores` (a text[] or NULL).
_COVERS = """(({stores}) IS NULL OR s.attributes ->> 'store_id' IS NULL
             OR s.attributes ->> 'store_id' = any(({stores})::text[]))"""
# $1 the campaign, $2 the window. `mine`: the campaign's sent deliveries, each with its customer's
# devices (the device alone when it gives no customer_id). A purchase of that customer in a
# delivery's window is credited to it unless a later delivery to the customer, sent before the
# purchase and covering its store, takes it.
CREDITED = f"""
WITH mine AS (
    SELECT d.id, d.sent_at, {_STORES.format(a="a", d="d")} AS stores,
           CASE WHEN v.customer_id IS NULL THEN ARRAY[d.device_id]
                ELSE ARRAY(SELECT c.id FROM devices c WHERE c.customer_id = v.customer_id)
           END AS devices
    FROM deliveries d
    JOIN devices v ON v.id = d.device_id
    {_ASSIGNMENT.format(a="a", d="d")}
    WHERE d.campaign_id = $1 AND d.status = 'sent' AND d.sent_at IS NOT NULL
), credited AS (
    SELECT DISTINCT s.device_id, s.ts, s.attributes
    FROM mine t
    JOIN signals s ON s.device_id = any(t.devices) AND s.kind = 'purchase'
                  AND s.ts > t.sent_at AND s.ts <= t.sent_at + $2::interval
    WHERE {_COVERS.format(stores="t.stores")}
      AND NOT EXISTS (
          SELECT 1 FROM deliveries l
          {_ASSIGNMENT.format(a="la", d="l")}
          WHERE l.device_id = any(t.devices) AND l.status = 'sent' AND l.sent_at < s.ts
            AND (l.sent_at, l.id) > (t.sent_at, t.id)
            AND {_COVERS.format(stores=_STORES.format(a="la", d="l"))})
)
SELECT count(*) AS conversions,
       coalesce(sum(CASE WHEN attributes ->> 'amount' ~ '^[0-9]+(\\.[0-9]+)?$'
                         THEN (attributes ->> 'amount')::numeric END), 0)::float8 AS revenue
FROM credited
"""


class Credited(msgspec.Struct, frozen=True):
    conversions: int
    revenue: float


async def credited(conn: Connection, campaign_id: UUID) -> Credited:
    """The purchases last-touch credits to the campaign's deliveries, and their amounts."""
    row = await conn.fetchrow(CREDITED, campaign_id, WINDOW)
    assert row is not None
    return Credited(conversions=row["conversions"], revenue=round(row["revenue"], 2))
