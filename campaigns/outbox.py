"""The outbox: a decision, its cap checks and its delivery row, written in the batch's
transaction under the device's lock.

One rule: a delivery is unique per (campaign, device, moment), so any number of copies of the same
batch — retried, duplicated, concurrent — queue at most one push for a moment; and the history the
caps are checked against is read under the same lock that the insert is made under.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import msgspec

from campaigns import decide
from campaigns.decide import Decision, PastPush
from campaigns.model import Campaign
from customers.context import MomentEvidence
from geo.store import Connection

# Daily maximums count from local midnight, which is at most 38 h ago in any time zone.
MIN_HISTORY = timedelta(hours=38)

# The device's pushes, and its would-be pushes (campaigns/assignments.py): a moment a campaign's
# holdout kept from it (`held_out`, counted for that campaign only) or, for a device in the global
# control group, the push it would have had.
HISTORY = """
SELECT campaign_id, fence_id, store_id, created_at, false AS held_out FROM deliveries
WHERE device_id = $1 AND status IN ('queued', 'sending', 'sent') AND created_at >= $2
UNION ALL
SELECT campaign_id, fence_id, store_id, created_at, arm = 'control' FROM assignments
WHERE device_id = $1 AND arm <> 'treated' AND created_at >= $2
ORDER BY created_at
"""
INSERT_DELIVERY = """
INSERT INTO deliveries (id, campaign_id, device_id, moment_key, trigger_kind, fence_id, store_id,
                        moment_at, expires_at, predicted_store_id, probability, created_at,
                        next_attempt_at, context, why)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14)
ON CONFLICT (campaign_id, device_id, moment_key) DO NOTHING
RETURNING id
"""
INSERT_SUPPRESSIONS = """
INSERT INTO suppressions (campaign_id, device_id, moment_key, reason, detail, created_at)
SELECT c, $2, $3, r, d, $6 FROM unnest($1::uuid[], $4::text[], $5::text[]) AS t(c, r, d)
ON CONFLICT (campaign_id, device_id, moment_key) DO NOTHING
"""


def history_horizon(campaigns: Sequence[Campaign]) -> timedelta:
    """How far back the caps of these campaigns look."""
    longest = MIN_HISTORY
    for c in campaigns:
        if c.caps.per_device is not None:
            longest = max(longest, timedelta(seconds=c.caps.per_device.period_seconds))
        if c.caps.cooldown_seconds is not None:
            longest = max(longest, timedelta(seconds=c.caps.cooldown_seconds))
    return longest


async def history(conn: Connection, device_id: UUID, since: datetime) -> list[PastPush]:
    rows = await conn.fetch(HISTORY, device_id, since)
    return [PastPush(campaign_id=r["campaign_id"], fence_id=r["fence_id"],
                     store_id=r["store_id"], at=r["created_at"], held_out=r["held_out"])
            for r in rows]


def moment_key(decision: Decision) -> str:
    return decide.moment_key(decision.moment)


async def record(conn: Connection, decision: Decision, now: datetime,
                 evidence: MomentEvidence | None = None) -> PastPush | None:
    """Persist one decision; return the push it queued (None when nothing was queued). The
    delivery keeps `evidence`: the micromoment it answered and why."""
    key = moment_key(decision)
    m = decision.moment
    if decision.suppressions:
        await conn.execute(
            INSERT_SUPPRESSIONS, [s.campaign_id for s in decision.suppressions], m.device_id,
            key, [s.reason for s in decision.suppressions],
            [s.detail for s in decision.suppressions], now,
        )
    chosen = decision.chosen
    if chosen is None or decision.expires_at is None:
        return None
    predicted = m.store_id if m.kind == "predicted_next" else None
    inserted = await conn.fetchval(
        INSERT_DELIVERY, uuid4(), chosen.id, m.device_id, key, m.kind, m.fence_id, m.store_id,
        m.occurred_at, decision.expires_at, predicted, m.probability, now,
        None if evidence is None else msgspec.to_builtins(evidence),
        None if decision.why is None else msgspec.to_builtins(decision.why),
    )
    if inserted is None:
        return None
    return PastPush(campaign_id=chosen.id, fence_id=m.fence_id, store_id=m.store_id, at=now)
