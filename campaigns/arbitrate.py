"""The next best action: which of a moment's surviving campaigns goes out, and why.

One rule: arbitration only ranks campaigns that passed every decision rule (consent, schedule,
quiet hours, policy, caps, cooldown, expiry — `campaigns/decide.py` runs them first), so
exploring can never break a cap, a consent or a quiet hour: a suppressed campaign is not a
candidate here at all. Holdouts come after, on the winner (`campaigns/holdout.py`).

Among the survivors the highest `priority` wins outright. Within the top priority each campaign
scores a Thompson draw of its expected value: p × `value`, where p is drawn from the posterior of
P(conversion | campaign, context bucket). The bucket is the moment's micromoment, the customer's
value tier and their intent in the campaign's category, cut into three bands (`bucket_of`).
The posterior is hierarchical, so a bucket with few deliveries borrows from the campaign's
overall rate instead of starting from nothing:

    p_c ~ Beta(1 + conversions_c, 1 + failures_c)                    the campaign, all buckets
    p   ~ Beta(SHRINK · p_c + conversions_b, SHRINK · (1 − p_c) + failures_b)   the bucket

Drawing instead of taking the mean is the exploration: a campaign with little evidence has a wide
posterior, so it sometimes draws high and gets tried, and it keeps winning a share of moments
until the evidence says it is worse. No eligible campaign starves, and the better one takes over
as the evidence grows.

A conversion is a redemption, or a purchase by the device within the offer's life at its store
(or naming none); an opened offer that did not convert counts as `OPENED_WEIGHT` of one (weaker
evidence that the offer interested the person). A delivery is evidence once it is resolved:
converted, dismissed, or past its expiry (the shell counts them: `campaigns/store.py` OUTCOMES).

Deterministic: the draw takes a generator seeded from the device and the moment (`seed_of`), so
the same moment with the same evidence always decides the same way and `why` can be replayed.
Pure: no clock, no database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal
from uuid import UUID

import msgspec
import numpy as np

from campaigns.model import Campaign
from customers.context import MomentContext

# Pseudo-observations the campaign's overall rate lends each bucket: a bucket's own evidence
# outweighs it after about this many resolved deliveries.
SHRINK = 10.0
OPENED_WEIGHT = 0.25
# Intent in the campaign's category, banded: low < 1/3 ≤ medium < 2/3 ≤ high.
INTENT_BANDS = ((1 / 3, "low"), (2 / 3, "medium"))

Rank = Callable[[Campaign], Any]
Decider = Literal["only candidate", "priority", "expected value draw"]


class Outcomes(msgspec.Struct, frozen=True):
    """Resolved deliveries and their conversions (fractional: an open counts OPENED_WEIGHT)."""

    trials: float = 0.0
    conversions: float = 0.0

    def __add__(self, other: Outcomes) -> Outcomes:
        return Outcomes(self.trials + other.trials, self.conversions + other.conversions)


_NOTHING = Outcomes()


class Evidence(msgspec.Struct, frozen=True):
    """What the learner knows: outcomes per (campaign, bucket), and per campaign overall."""

    cells: Mapping[tuple[UUID, str], Outcomes] = msgspec.field(default_factory=dict)
    totals: Mapping[UUID, Outcomes] = msgspec.field(default_factory=dict)

    @classmethod
    def of(cls, cells: Mapping[tuple[UUID, str], Outcomes]) -> Evidence:
        totals: dict[UUID, Outcomes] = {}
        for (campaign_id, _), outcomes in cells.items():
            totals[campaign_id] = totals.get(campaign_id, Outcomes()) + outcomes
        return cls(cells=dict(cells), totals=totals)


class Candidate(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One campaign the moment matched, as `why` shows it."""

    campaign_id: UUID
    eligible: bool
    reason: str | None = None  # the rule it failed, or `outranked`
    detail: str | None = None
    p_conversion: float | None = None  # the posterior mean for this bucket
    value: float | None = None
    score: float | None = None  # the drawn expected value that competed


class Arbitration(msgspec.Struct, kw_only=True, frozen=True):
    """The winner among the survivors, the rule that decided, and every survivor's numbers."""

    chosen: Campaign | None
    rule: Decider | None
    bucket: str
    scored: Mapping[UUID, Candidate]  # survivors only, eligible, with their numbers


def intent_band(score: float | None) -> str:
    if score is None:
        return "unknown"
    for upper, name in INTENT_BANDS:
        if score < upper:
            return name
    return "high"


def campaign_intent(campaign: Campaign, context: MomentContext | None) -> float | None:
    """The customer's intent in the campaign's categories (its audience's), else p_buy."""
    if context is None:
        return None
    categories = campaign.audience.categories if campaign.audience is not None else None
    if not categories:
        return context.p_buy
    strongest = context.strongest_under(categories)
    return 0.0 if strongest is None else strongest[1]


def tier_of(context: MomentContext | None) -> str:
    """The customer's value tier; `unknown` when the moment's context has none (a valid
    bucket: before the first value fit, or without a context)."""
    if context is None or context.value_tier is None:
        return "unknown"
    return context.value_tier


def bucket_of(campaign: Campaign, context: MomentContext | None) -> str:
    """`micromoment|tier|intent band`, e.g. `buy|high|medium` (`none`/`unknown` if missing)."""
    micromoment = "unknown" if context is None else (context.micromoment or "none")
    return f"{micromoment}|{tier_of(context)}|{intent_band(campaign_intent(campaign, context))}"


def seed_of(device_id: UUID, moment_key: str) -> int:
    digest = hashlib.sha256(device_id.bytes + moment_key.encode()).digest()
    return int.from_bytes(digest[:8], "big")


def posterior(evidence: Evidence, campaign_id: UUID,
              bucket: str) -> tuple[float, float, float, float]:
    """(alpha_c, beta_c, conversions_b, failures_b) of the two-level posterior."""
    total = evidence.totals.get(campaign_id, _NOTHING)
    cell = evidence.cells.get((campaign_id, bucket), _NOTHING)
    return (1.0 + total.conversions, 1.0 + total.trials - total.conversions,
            cell.conversions, cell.trials - cell.conversions)


def mean_rate(evidence: Evidence, campaign_id: UUID, bucket: str) -> float:
    """The posterior mean of P(conversion) for the campaign in this bucket."""
    return _mean(posterior(evidence, campaign_id, bucket))


def _mean(params: tuple[float, float, float, float]) -> float:
    alpha_c, beta_c, wins, losses = params
    overall = alpha_c / (alpha_c + beta_c)
    return (SHRINK * overall + wins) / (SHRINK + wins + losses)


def draw_rate(params: tuple[float, float, float, float], rng: np.random.Generator) -> float:
    """One Thompson draw of P(conversion): the campaign's rate, then the bucket's around it."""
    alpha_c, beta_c, wins, losses = params
    overall = float(rng.beta(alpha_c, beta_c))
    # Beta needs positive parameters; a draw of exactly 0 or 1 is clipped a hair inside.
    overall = min(max(overall, 1e-9), 1 - 1e-9)
    return float(rng.beta(SHRINK * overall + wins, SHRINK * (1 - overall) + losses))


def arbitrate(survivors: Sequence[Campaign], context: MomentContext | None, evidence: Evidence,
              seed: int, tie_rank: Rank) -> Arbitration:
    """Choose among campaigns that passed every rule: top priority, then the best drawn EV.

    `tie_rank` orders exact ties (equal draws, e.g. two campaigns worth 0) as decide.py always
    did: latest activation, then creation, then id. This runs on the ping path, once per moment
    with survivors: the generator is made only when there is something to draw."""
    if not survivors:
        return Arbitration(chosen=None, rule=None, bucket=bucket_of_none(context), scored={})
    top = max(c.priority for c in survivors)
    # Every contender draws, in a stable order, so the draws replay whatever wins.
    contenders = sorted((c for c in survivors if c.priority == top), key=tie_rank)
    rng = np.random.default_rng(seed) if len(contenders) > 1 else None
    scored: dict[UUID, Candidate] = {}
    best: tuple[float, Any] | None = None
    chosen, chosen_bucket = contenders[0], ""
    for c in contenders:
        bucket = bucket_of(c, context)
        params = posterior(evidence, c.id, bucket)
        score = None if rng is None else draw_rate(params, rng) * c.value
        scored[c.id] = Candidate(campaign_id=c.id, eligible=True,
                                 p_conversion=round(_mean(params), 6), value=c.value,
                                 score=None if score is None else round(score, 6))
        key = (score or 0.0, tie_rank(c))
        if best is None or key > best:
            best, chosen, chosen_bucket = key, c, bucket
    rule: Decider = "only candidate" if len(survivors) == 1 else \
        "priority" if len(contenders) == 1 else "expected value draw"
    winning = scored[chosen.id].score
    for c in contenders:
        if c is not chosen:
            scored[c.id] = msgspec.structs.replace(
                scored[c.id], reason="outranked",
                detail=f"its drawn expected value {scored[c.id].score} is below {winning}")
    for c in survivors:
        if c.priority != top:
            scored[c.id] = Candidate(
                campaign_id=c.id, eligible=True, reason="outranked",
                detail=f"priority {c.priority} is below {top}",
                p_conversion=round(mean_rate(evidence, c.id, bucket_of(c, context)), 6),
                value=c.value)
    return Arbitration(chosen=chosen, rule=rule, bucket=chosen_bucket, scored=scored)


def by_rank(survivors: Sequence[Campaign], context: MomentContext | None,
            tie_rank: Rank) -> Arbitration:
    """The benchmark's control run only (`Settings.bench_skip_arbitration`): the rule before
    arbitration — the greatest `tie_rank` (priority, then latest activation, creation, id) wins,
    with no evidence and no draw — so that `make bench` can measure what `arbitrate` adds."""
    if not survivors:
        return Arbitration(chosen=None, rule=None, bucket=bucket_of_none(context), scored={})
    chosen = max(survivors, key=tie_rank)
    scored = {c.id: Candidate(campaign_id=c.id, eligible=True, value=c.value) if c is chosen
              else Candidate(campaign_id=c.id, eligible=True, reason="outranked",
                             detail="ranked below it (bench control: no draw)", value=c.value)
              for c in survivors}
    rule: Decider = "only candidate" if len(survivors) == 1 else "priority"
    return Arbitration(chosen=chosen, rule=rule, bucket=bucket_of(chosen, context),
                       scored=scored)


def bucket_of_none(context: MomentContext | None) -> str:
    micromoment = "unknown" if context is None else (context.micromoment or "none")
    return f"{micromoment}|{tier_of(context)}|unknown"
