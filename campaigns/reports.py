"""What campaigns achieved: their deliveries, the outcome counts, and why offers did not go out.

One rule: every (moment, campaign) the campaign matched is counted exactly once, as a delivery
or as a suppression with its reason, so `triggered` is their sum.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from campaigns import attribution
from campaigns.latency import Latency, latency
from campaigns.webhooks import events as webhook_events
from campaigns.why import Why
from customers.context import MomentEvidence
from geo.errors import Conflict, NotFound
from geo.store import After, Connection

DeliveryStatus = Literal["queued", "sending", "sent", "failed", "expired"]
FeedbackKind = Literal["opened", "dismissed", "redeemed"]

# The contract's suppression reasons (`audience`: a moment outside the campaign's audience), plus
# those the decision rules add: a moment already older than the offer's TTL, a prediction below
# min_probability, losing to a better campaign, and a device in the global control group.
SUPPRESSION_KEYS = ("consent", "quiet_hours", "cap", "cooldown", "holdout", "policy", "schedule",
                    "audience", "moment_expired", "probability", "outranked", "global_holdout")
_REASON_KEY = {"expired": "moment_expired"}


def suppression_key(reason: str) -> str:
    """The name the stats (and backtests) count a decision rule's reason under."""
    return _REASON_KEY.get(reason, reason)


class Delivery(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    campaign_id: UUID
    device_id: UUID | None
    trigger_kind: str
    fence_id: UUID | None
    store_id: UUID
    moment_at: datetime
    expires_at: datetime
    status: DeliveryStatus
    attempts: int
    fcm_message_name: str | None
    error_code: str | None
    predicted_store_id: UUID | None
    probability: float | None
    arrived_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    opened_at: datetime | None
    dismissed_at: datetime | None
    redeemed_at: datetime | None
    # The moment's context when it was decided: the micromoment the offer answered, the
    # evidence that decided it, the customer's p_buy and the model that gave it.
    context: MomentEvidence | None = None


class Stats(msgspec.Struct, kw_only=True, frozen=True):
    triggered: int
    queued: int
    sent: int
    failed: int
    expired: int
    opened: int
    dismissed: int
    redeemed: int
    suppressed: dict[str, int]
    predicted: int
    predicted_arrived: int
    latency_ms: Latency  # ping received -> FCM accepted, over the sent deliveries
    # Purchases credited to the campaign's pushes, last touch within 24 h, and their amounts
    # (`campaigns/attribution.py`).
    conversions: int = 0
    revenue: float = 0.0


# A device body: unknown fields are ignored, so a newer app's events still count.
class FeedbackIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
                 frozen=True):
    kind: FeedbackKind
    ts: datetime

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("ts: needs a UTC offset (RFC 3339)")


class FeedbackRecorded(msgspec.Struct, frozen=True):
    delivery_id: UUID
    kind: FeedbackKind
    recorded: bool  # false when this kind was already recorded for the delivery


_DELIVERY_COLUMNS = ", ".join(Delivery.__struct_fields__)
LIST_DELIVERIES = f"""
SELECT {_DELIVERY_COLUMNS} FROM deliveries
WHERE campaign_id = $1 AND ($2::text IS NULL OR status = $2)
  AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::uuid))
ORDER BY created_at, id LIMIT $5
"""
DELIVERY_COUNTS = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE status IN ('queued', 'sending')) AS queued,
       count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'expired') AS expired,
       count(opened_at) AS opened, count(dismissed_at) AS dismissed,
       count(redeemed_at) AS redeemed,
       count(predicted_store_id) AS predicted, count(arrived_at) AS predicted_arrived
FROM deliveries WHERE campaign_id = $1
"""
SUPPRESSION_COUNTS = """
SELECT reason, count(*) AS n FROM suppressions WHERE campaign_id = $1 GROUP BY reason
"""
RECORD_FEEDBACK = {
    kind: f"""UPDATE deliveries SET {kind}_at = $3
              WHERE id = $1 AND device_id = $2 AND {kind}_at IS NULL RETURNING id"""
    for kind in ("opened", "dismissed", "redeemed")
}
DELIVERY_OWNER = "SELECT device_id, status FROM deliveries WHERE id = $1"
DELIVERY_WHY = "SELECT device_id, why FROM deliveries WHERE id = $1"


async def list_deliveries(conn: Connection, campaign_id: UUID, status: str | None,
                          after: After, limit: int) -> list[Delivery]:
    rows = await conn.fetch(LIST_DELIVERIES, campaign_id, status, *after, limit)
    return [msgspec.convert(dict(r), Delivery) for r in rows]


async def stats(conn: Connection, campaign_id: UUID) -> Stats:
    counts = await conn.fetchrow(DELIVERY_COUNTS, campaign_id)
    assert counts is not None
    suppressed = dict.fromkeys(SUPPRESSION_KEYS, 0)
    for row in await conn.fetch(SUPPRESSION_COUNTS, campaign_id):
        key = _REASON_KEY.get(row["reason"], row["reason"])
        suppressed[key] = suppressed.get(key, 0) + row["n"]
    credited = await attribution.credited(conn, campaign_id)
    return Stats(
        triggered=counts["total"] + sum(suppressed.values()),
        queued=counts["queued"], sent=counts["sent"], failed=counts["failed"],
        expired=counts["expired"], opened=counts["opened"], dismissed=counts["dismissed"],
        redeemed=counts["redeemed"], suppressed=suppressed, predicted=counts["predicted"],
        predicted_arrived=counts["predicted_arrived"],
        latency_ms=await latency(conn, campaign_id), conversions=credited.conversions,
        revenue=credited.revenue,
    )


async def record_feedback(conn: Connection, device_id: UUID, delivery_id: UUID,
                          feedback: FeedbackIn, now: datetime) -> FeedbackRecorded:
    owner = await conn.fetchrow(DELIVERY_OWNER, delivery_id)
    if owner is None or owner["device_id"] != device_id:
        raise NotFound("delivery", delivery_id)
    if owner["status"] != "sent":
        raise Conflict(f"delivery {delivery_id} was not sent (it is {owner['status']})")
    done = await conn.fetchval(RECORD_FEEDBACK[feedback.kind], delivery_id, device_id,
                               feedback.ts)
    if done is not None:
        await webhook_events.record_feedback(conn, delivery_id, feedback.kind, feedback.ts, now)
    return FeedbackRecorded(delivery_id, feedback.kind, done is not None)


async def why(conn: Connection, delivery_id: UUID, device_id: UUID | None) -> Why:
    """Why the delivery won. `device_id`: the caller is that device, which sees only its own
    deliveries (another's answers 404, exactly like an unknown id). A delivery decided before
    contexto kept why (migration 0007) has none: 404 too."""
    row = await conn.fetchrow(DELIVERY_WHY, delivery_id)
    if row is None or (device_id is not None and row["device_id"] != device_id):
        raise NotFound("delivery", delivery_id)
    if row["why"] is None:
        raise NotFound("why of delivery", delivery_id)
    return msgspec.convert(row["why"], Why)
