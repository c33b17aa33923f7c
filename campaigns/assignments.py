"""Treated and control moments: every moment a campaign won, kept with its arm, written in the
decision's own transaction, so that conversions can later be counted for each group alike.

One rule: a row is written for a moment only when the decision rules and arbitration chose its
campaign — `treated` when the offer was queued (it treated somebody once FCM accepted it: the
delivery of the same campaign, device and moment says so), `control` when the campaign's holdout
kept it from the device, `global_control` when the device is in the global control group — so
both arms hold moments that would have been sent, and nothing else.

Each row keeps the moment's time, device and customer (`customer_key`: the customer_id the
device gives, else the device alone) and the campaign's stores when it was decided, which a
visit or a purchase must be at to convert (`campaigns/uplift.py`). The held-out rows are also the
device's would-be pushes, which the decision rules count (`PastPush.held_out`; the outbox reads
them with the device's deliveries).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal
from uuid import UUID

from campaigns.decide import Decision, PastPush, moment_key
from campaigns.model import Campaign, Trigger
from geo.index import IndexedFence
from geo.store import Connection

Arm = Literal["treated", "control", "global_control"]
StoresOf = Callable[[Campaign], list[UUID] | None]

INSERT_ASSIGNMENTS = """
INSERT INTO assignments (campaign_id, device_id, customer_key, moment_key, moment_at, fence_id,
                         store_id, store_ids, arm, global_holdout, created_at)
SELECT c, $2, $3, $4, $5, $6, $7, s::uuid[], a, $10, $11
FROM unnest($1::uuid[], $8::text[], $9::text[]) AS t(c, s, a)
ON CONFLICT (campaign_id, device_id, moment_key) DO NOTHING
RETURNING campaign_id, arm
"""
_ARM_OF_REASON: dict[str, Arm] = {"holdout": "control", "global_holdout": "global_control"}


def campaign_stores(trigger: Trigger, fences: Mapping[UUID, IndexedFence],
                    store_tags: Mapping[UUID, tuple[str, ...]]) -> list[UUID] | None:
    """The stores a trigger covers — those it names, those of the fences it names, those with a
    fence carrying one of its tags — in a stable order; None for a trigger naming none of them,
    which covers every store."""
    if not (trigger.geofence_ids or trigger.store_ids or trigger.tags):
        return None
    stores = set(trigger.store_ids)
    stores.update(fences[f].store_id for f in trigger.geofence_ids if f in fences)
    if trigger.tags:
        wanted = set(trigger.tags)
        stores.update(s for s, tags in store_tags.items() if wanted.intersection(tags))
    return sorted(stores)


def arms_of(decision: Decision, queued: bool) -> list[tuple[UUID, Arm]]:
    """The rows a decision makes: its queued delivery as treated (`queued`: the delivery row was
    inserted now), each held-out winner as a control, the global control group's would-be push."""
    rows: list[tuple[UUID, Arm]] = []
    if decision.chosen is not None and queued:
        rows.append((decision.chosen.id, "treated"))
    rows.extend((s.campaign_id, _ARM_OF_REASON[s.reason]) for s in decision.suppressions
                if s.reason in _ARM_OF_REASON)
    return rows


async def record(conn: Connection, decision: Decision, *, queued: bool, customer_key: str,
                 campaigns: Mapping[UUID, Campaign], stores_of: StoresOf,
                 now: datetime) -> list[PastPush]:
    """Write the decision's rows; return the would-be pushes written now (for the rules that
    decide the device's next moments in the same batch)."""
    rows = arms_of(decision, queued)
    if not rows:
        return []
    ids = [campaign_id for campaign_id, _ in rows]
    stores = [stores_of(campaigns[i]) for i in ids]
    m = decision.moment
    written = await conn.fetch(
        INSERT_ASSIGNMENTS, ids, m.device_id, customer_key, moment_key(decision.moment),
        m.occurred_at, m.fence_id, m.store_id,
        [None if s is None else "{" + ",".join(map(str, s)) + "}" for s in stores],
        [arm for _, arm in rows], decision.global_holdout, now)
    return [PastPush(campaign_id=r["campaign_id"], fence_id=m.fence_id, store_id=m.store_id,
                     at=now, held_out=r["arm"] == "control")
            for r in written if r["arm"] != "treated"]
