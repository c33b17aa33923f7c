"""Which campaign, if any, a presence moment triggers, and why every other one does not.

One rule: every active campaign whose trigger matches a moment ends in exactly one outcome:
chosen (at most one per moment) or one `Suppression` naming the first rule it failed.

Pure: no database, no clock, no I/O. The shell loads the device's context and its recent pushes
under a per-device lock, calls `decide`, and inserts the chosen delivery and one row per
suppression in the same transaction.

The rules, checked in this order for each matched campaign (`RULES` below); the first that fails
is the campaign's one reason:

    probability  a `predicted_next` moment below the trigger's `min_probability`
                 (`DEFAULT_MIN_PROBABILITY` when unset); first, because such a prediction never
                 really triggered the campaign and should not count as lost to anything else
    audience     the moment is outside the campaign's `audience` (its micromoment, the
                 customer's intent per category or overall; `campaigns/audience.py` says how);
                 second, for the same reason: it is targeting, not pressure, so a moment the
                 campaign was never aimed at does not count as lost to consent or caps
    consent      no marketing-push consent, or no push address (the detail says which)
    schedule     `now` outside `starts_at`..`ends_at`, or outside every daypart, in the store's zone
    quiet_hours  `now` inside the policy's quiet hours in the device's zone (UTC when unknown)
    policy       the device already had `max_per_device_per_day` pushes since its local midnight,
                 or its last push is less than `min_seconds_between_pushes` old
    cap          this campaign's per-device cap is reached within its period
    cooldown     this campaign pushed for the same fence (the same store when the moment has no
                 fence) less than `cooldown_seconds` ago
    expired      the moment is `offer_ttl_seconds` old or older: the offer would already be void

The device-wide rules (consent, quiet_hours, policy) are evaluated once per moment but recorded
per campaign, so each campaign's stats say why it did not go out. Survivors — and only
survivors — compete (`campaigns/arbitrate.py`): the highest `priority` wins outright; within it,
the best Thompson-drawn expected value (learned P(conversion) × `value`); exact ties go to the
latest `activated_at`, then the latest `created_at`, then the greater id (arbitrary, but stable).
Then the holdouts (`campaigns/holdout.py`), last, so that a held-out moment is one that would
really have been sent:

    holdout         the winner holds the device in its holdout group: the moment is that
                    campaign's control, and arbitration runs again among the other survivors
    global_holdout  the device is in the policy's global control group: the campaign that would
                    have gone out is suppressed with this reason, and nothing is sent

The other survivors are suppressed as `outranked`. The decision carries its `Why`.

A device's history holds its would-be pushes too (`PastPush.held_out`: the moments a campaign's
holdout kept from it), and each campaign's cap, cooldown and policy count that campaign's own
would-be pushes as if they had been sent. Otherwise a held-out device, never pushed, would
match the campaign again and again where a treated one is capped, and the control group would
pile up moments the treated group cannot have.

Windows are half-open: a push exactly N seconds old no longer counts against an N-second window,
and a time exactly at a window's end (daypart `to`, quiet hours `to`, `ends_at`) is outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from campaigns import pressure
from campaigns.arbitrate import Evidence, seed_of
from campaigns.audience import audience_failure
from campaigns.holdout import arbitrate_with_holdouts, in_global_holdout
from campaigns.local_time import in_daypart
from campaigns.model import Campaign, Policy, Trigger

# The decision's inputs, defined with the rules that read them and re-exported here.
from campaigns.pressure import DeviceContext as DeviceContext
from campaigns.pressure import PastPush as PastPush
from campaigns.pressure import seconds_between
from campaigns.why import Why, explain
from customers.context import MomentContext

MomentKind = Literal["enter", "dwell", "exit", "predicted_next"]
SuppressionReason = Literal[
    "probability",
    "audience",
    "consent",
    "schedule",
    "quiet_hours",
    "policy",
    "cap",
    "cooldown",
    "expired",
    "holdout",
    "global_holdout",
    "outranked",
]

DEFAULT_MIN_PROBABILITY = 0.5
# An exit offer is for someone who visited. Entry to confirmed exit includes presence's 45 s
# exit clock, so 120 s means more than a minute inside: a passer-by that GPS noise put inside a
# shop for a moment is not told to "come back".
DEFAULT_EXIT_MIN_STAY_SECONDS = 120
_NEVER = datetime.min.replace(tzinfo=UTC)


class Moment(msgspec.Struct, kw_only=True, frozen=True):
    """One presence event or prediction that may trigger offers."""

    device_id: UUID
    kind: MomentKind
    fence_id: UUID | None
    store_id: UUID
    fence_tags: tuple[str, ...]
    occurred_at: datetime
    store_timezone: str
    probability: float | None = None
    stay_seconds: float | None = None  # exit only: entry to confirmed exit
    # The customer's context at this moment; None when it is unknown (no campaign with an
    # audience goes out then).
    context: MomentContext | None = None

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset")


class Suppression(msgspec.Struct, kw_only=True, frozen=True):
    campaign_id: UUID
    reason: SuppressionReason
    detail: str


class Decision(msgspec.Struct, kw_only=True, frozen=True):
    moment: Moment
    chosen: Campaign | None
    expires_at: datetime | None
    suppressions: tuple[Suppression, ...]
    matched: tuple[UUID, ...]
    why: Why | None = None  # set when a campaign was chosen
    # The device is in the global control group: nothing is chosen, and the campaign that would
    # have gone out is suppressed as `global_holdout`.
    global_holdout: bool = False


def moment_key(moment: Moment) -> str:
    """The moment's identity for its device: a delivery is unique per (campaign, device, key)."""
    place = moment.fence_id if moment.fence_id is not None else moment.store_id
    return f"{moment.kind}:{place}:{moment.occurred_at.isoformat()}"


def matches(trigger: Trigger, moment: Moment) -> bool:
    """The trigger's kind is the moment's, and its fences, stores or tags (if any) include it;
    an exit also needs a stay of at least the trigger's `min_stay_seconds`."""
    if trigger.kind != moment.kind:
        return False
    if moment.kind == "exit" and moment.stay_seconds is not None:
        shortest = trigger.min_stay_seconds
        if moment.stay_seconds < (DEFAULT_EXIT_MIN_STAY_SECONDS if shortest is None else shortest):
            return False
    if not (trigger.geofence_ids or trigger.store_ids or trigger.tags):
        return True
    return (
        (moment.fence_id is not None and moment.fence_id in trigger.geofence_ids)
        or moment.store_id in trigger.store_ids
        or any(tag in trigger.tags for tag in moment.fence_tags)
    )


def decide(
    moment: Moment,
    device: DeviceContext,
    campaigns: Sequence[Campaign],
    policy: Policy,
    history: Sequence[PastPush],
    now: datetime,
    evidence: Evidence | None = None,
    *,
    draw: bool = True,
) -> Decision:
    """Choose at most one campaign for the moment and record why each other matched one is not.

    `evidence`: what earlier deliveries' outcomes taught arbitration (none: every campaign at
    its prior). `draw=False` is the benchmark's control run only
    (`Settings.bench_skip_arbitration`): survivors are ranked without arbitration."""
    if now.tzinfo is None:
        raise ValueError("now needs a UTC offset")
    if device.device_id != moment.device_id:
        raise ValueError("the device context is not the moment's device")
    matched = [c for c in campaigns if c.status == "active" and matches(c.trigger, moment)]
    if not matched:
        # Nothing to rule on, arbitrate or explain (most exits and dwells): what the steps
        # below make of no campaign.
        return Decision(moment=moment, chosen=None, expires_at=None, suppressions=(),
                        matched=(), global_holdout=in_global_holdout(
                            device.device_id, policy.global_holdout_percent))
    situation = _Situation.of(moment, device, policy, history, now)
    failures = {c.id: _first_failure(c, situation) for c in matched}
    survivors = [c for c in matched if failures[c.id] is None]
    key = moment_key(moment)
    seed = seed_of(moment.device_id, key)
    held = arbitrate_with_holdouts(survivors, moment.device_id, moment.context,
                                   evidence or Evidence(), seed, _rank, draw=draw)
    for c in held.held_out:
        failures[c.id] = ("holdout", f"the device is in this campaign's "
                                     f"{c.holdout_percent:g} % holdout group; it had won the "
                                     "moment, which is recorded as a control")
    winner = held.chosen
    suppressions = [
        _suppression(c, failures[c.id], winner, draw) for c in matched if c is not winner
    ]
    global_holdout = in_global_holdout(device.device_id, policy.global_holdout_percent)
    chosen = None if global_holdout else winner
    if winner is not None and chosen is None:
        suppressions.append(Suppression(
            campaign_id=winner.id, reason="global_holdout",
            detail=f"the device is in the global control group ({policy.global_holdout_percent:g}"
                   " % of devices get no push); this campaign would have gone out"))
    why = None if chosen is None else \
        explain(moment, key, matched, failures, held.arbitration, seed)
    return Decision(
        moment=moment,
        chosen=chosen,
        expires_at=None if chosen is None else _expiry(chosen, moment),
        suppressions=tuple(suppressions),
        matched=tuple(c.id for c in matched),
        why=why,
        global_holdout=global_holdout,
    )


class _Situation(msgspec.Struct, frozen=True):
    """Everything a rule may look at; the device-wide verdicts are computed once per moment."""

    moment: Moment
    device: DeviceContext
    policy: Policy
    history: Sequence[PastPush]  # real and would-be pushes
    now: datetime
    consent_failure: str | None
    quiet_failure: str | None
    policy_failure: str | None

    @classmethod
    def of(
        cls,
        moment: Moment,
        device: DeviceContext,
        policy: Policy,
        history: Sequence[PastPush],
        now: datetime,
    ) -> _Situation:
        real = [p for p in history if not p.held_out]
        return cls(
            moment=moment,
            device=device,
            policy=policy,
            history=history,
            now=now,
            consent_failure=pressure.consent_failure(device),
            quiet_failure=pressure.quiet_failure(policy.quiet_hours, device, now),
            policy_failure=pressure.policy_failure(policy, device, real, now),
        )


Rule = Callable[[Campaign, _Situation], str | None]
"""A rule returns why the campaign fails it (the suppression's detail), or None when it passes."""


def _below_probability(campaign: Campaign, s: _Situation) -> str | None:
    if s.moment.kind != "predicted_next":
        return None
    threshold = campaign.trigger.min_probability
    if threshold is None:
        threshold = DEFAULT_MIN_PROBABILITY
    if s.moment.probability is None:
        return f"the prediction has no probability; the trigger needs ≥ {threshold:g}"
    if s.moment.probability < threshold:
        return f"probability {s.moment.probability:g} is below the trigger's {threshold:g}"
    return None


def _outside_audience(campaign: Campaign, s: _Situation) -> str | None:
    if campaign.audience is None:
        return None
    return audience_failure(campaign.audience, s.moment.context)


def _lacks_consent(campaign: Campaign, s: _Situation) -> str | None:
    return s.consent_failure


def _off_schedule(campaign: Campaign, s: _Situation) -> str | None:
    schedule = campaign.schedule
    if s.now < schedule.starts_at:
        return f"the campaign starts at {schedule.starts_at.isoformat()}"
    if s.now >= schedule.ends_at:
        return f"the campaign ended at {schedule.ends_at.isoformat()}"
    if not schedule.dayparts:
        return None
    local = s.now.astimezone(ZoneInfo(s.moment.store_timezone))
    if any(in_daypart(part, local) for part in schedule.dayparts):
        return None
    return f"outside every daypart: it is {local:%a %H:%M} in {s.moment.store_timezone}"


def _in_quiet_hours(campaign: Campaign, s: _Situation) -> str | None:
    return s.quiet_failure


def _over_policy(campaign: Campaign, s: _Situation) -> str | None:
    """The device's real pushes, and for this campaign also its own would-be ones."""
    if not any(p.held_out and p.campaign_id == campaign.id for p in s.history):
        return s.policy_failure
    pushes = [p for p in s.history if not p.held_out or p.campaign_id == campaign.id]
    return pressure.policy_failure(s.policy, s.device, pushes, s.now)


def _over_cap(campaign: Campaign, s: _Situation) -> str | None:
    cap = campaign.caps.per_device
    if cap is None:
        return None
    since = s.now - timedelta(seconds=cap.period_seconds)
    count = sum(1 for p in s.history if p.campaign_id == campaign.id and p.at > since)
    if count < cap.count:
        return None
    return (
        f"{count} pushes of this campaign in the last {cap.period_seconds} s; "
        f"the cap is {cap.count}"
    )


def _cooling_down(campaign: Campaign, s: _Situation) -> str | None:
    cooldown = campaign.caps.cooldown_seconds
    if not cooldown:
        return None
    since = s.now - timedelta(seconds=cooldown)
    recent = [p for p in s.history if p.campaign_id == campaign.id and p.at > since]
    if s.moment.fence_id is not None:
        same_place = [p for p in recent if p.fence_id == s.moment.fence_id]
        place = "fence"
    else:
        same_place = [p for p in recent if p.store_id == s.moment.store_id]
        place = "store"
    if not same_place:
        return None
    age = seconds_between(max(p.at for p in same_place), s.now)
    return f"pushed for this {place} {age} s ago; the cooldown is {cooldown} s"


def _expired(campaign: Campaign, s: _Situation) -> str | None:
    expires_at = _expiry(campaign, s.moment)
    if s.now < expires_at:
        return None
    age = seconds_between(s.moment.occurred_at, s.now)
    return f"the moment is {age} s old; the offer lives {campaign.offer_ttl_seconds} s"


RULES: tuple[tuple[SuppressionReason, Rule], ...] = (
    ("probability", _below_probability),
    ("audience", _outside_audience),
    ("consent", _lacks_consent),
    ("schedule", _off_schedule),
    ("quiet_hours", _in_quiet_hours),
    ("policy", _over_policy),
    ("cap", _over_cap),
    ("cooldown", _cooling_down),
    ("expired", _expired),
)


def _first_failure(campaign: Campaign, s: _Situation) -> tuple[SuppressionReason, str] | None:
    for reason, rule in RULES:
        detail = rule(campaign, s)
        if detail is not None:
            return reason, detail
    return None


def _suppression(
    campaign: Campaign, failure: tuple[SuppressionReason, str] | None, chosen: Campaign | None,
    drawn: bool = True,
) -> Suppression:
    """Why the campaign did not go out: the rule it failed, else outranked by `chosen`."""
    if failure is not None:
        reason, detail = failure
        return Suppression(campaign_id=campaign.id, reason=reason, detail=detail)
    assert chosen is not None, "a survivor is suppressed only when another one won"
    how = "a higher priority" if chosen.priority > campaign.priority else \
        "a higher drawn expected value" if drawn else "rank (bench control: no draw)"
    detail = f"campaign {chosen.id} ({chosen.name!r}) was chosen instead, by {how}"
    return Suppression(campaign_id=campaign.id, reason="outranked", detail=detail)


def _rank(campaign: Campaign) -> tuple[int, datetime, datetime, UUID]:
    return (campaign.priority, campaign.activated_at or _NEVER, campaign.created_at, campaign.id)


def _expiry(campaign: Campaign, moment: Moment) -> datetime:
    return moment.occurred_at + timedelta(seconds=campaign.offer_ttl_seconds)
