"""Why a delivery won its moment: what `GET /v1/deliveries/{id}/why` shows and every
delivery keeps (`deliveries.why`).

One rule: it is written from the decision itself — the campaigns the moment matched, the rule
each failed or the numbers it competed with, the rule or draw that chose — never reconstructed
later, so it says what really happened even after the campaigns or the evidence change.
Pure: no clock, no database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec

from campaigns.arbitrate import Arbitration, Candidate, Decider
from campaigns.model import Campaign

if TYPE_CHECKING:
    from campaigns.decide import Moment


class WhyMoment(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    key: str
    kind: str  # enter, dwell, exit or predicted_next
    fence_id: UUID | None
    store_id: UUID
    occurred_at: datetime
    probability: float | None = None


class WhyChosen(msgspec.Struct, kw_only=True, frozen=True):
    campaign_id: UUID
    rule: Decider  # "only candidate", "priority" or "expected value draw"
    seed: int  # the draw's seed: the same evidence and seed replay the same draw


class WhyContext(msgspec.Struct, kw_only=True, frozen=True):
    micromoment: str | None
    tier: str  # "unknown" until the customer context has a value tier
    p_buy: float | None
    bucket: str  # the chosen campaign's learning bucket: micromoment|tier|intent band


class Why(msgspec.Struct, kw_only=True, frozen=True):
    """Why a delivery won: every matched campaign, the rule or draw that decided, the context."""

    moment: WhyMoment
    candidates: list[Candidate]
    chosen: WhyChosen
    context: WhyContext



def explain(moment: Moment, key: str, matched: Sequence[Campaign],
            failures: Mapping[UUID, tuple[str, str] | None], arbitration: Arbitration,
            seed: int) -> Why:
    """The why of a decision that chose a campaign: every matched campaign in the catalog's
    order, eligible with its numbers or with the rule it failed."""
    chosen = arbitration.chosen
    assert chosen is not None and arbitration.rule is not None, "only a chosen push has a why"
    candidates = [arbitration.scored.get(c.id) or _ineligible(c.id, failures[c.id])
                  for c in matched]
    context = moment.context
    return Why(
        moment=WhyMoment(key=key, kind=moment.kind, fence_id=moment.fence_id,
                         store_id=moment.store_id, occurred_at=moment.occurred_at,
                         probability=moment.probability),
        candidates=candidates,
        chosen=WhyChosen(campaign_id=chosen.id, rule=arbitration.rule, seed=seed),
        context=WhyContext(
            micromoment=None if context is None else context.micromoment,
            tier=arbitration.bucket.split("|")[1],
            p_buy=None if context is None else round(context.p_buy, 6),
            bucket=arbitration.bucket),
    )


def _ineligible(campaign_id: UUID, failure: tuple[str, str] | None) -> Candidate:
    assert failure is not None, "every survivor was scored"
    return Candidate(campaign_id=campaign_id, eligible=False, reason=failure[0],
                     detail=failure[1])
