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
    holdout      the device is in the campaign's deterministic holdout group; last, so that a
                 held-out device counts only when it would otherwise have received the offer

The device-wide rules (consent, quiet_hours, policy) are evaluated once per moment but recorded
per campaign, so each campaign's stats say why it did not go out. Survivors — and only
survivors — compete (`campaigns/arbitrate.py`): the highest `priority` wins outright; within it,
the best Thompson-drawn expected value (learned P(conversion) × `value`); exact ties go to the
latest `activated_at`, then the latest `created_at`, then the greater id (arbitrary, but stable).
The other survivors are suppressed as `outranked`. The decision carries its `Why`.

Windows are half-open: a push exactly N seconds old no longer counts against an N-second window,
and a time exactly at a window's end (daypart `to`, quiet hours `to`, `ends_at`) is outside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from campaigns.arbitrate import Evidence, arbitrate, by_rank, seed_of
from campaigns.audience import audience_failure
from campaigns.model import Campaign, Daypart, Policy, QuietHours, Trigger, minutes_of
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


class DeviceContext(msgspec.Struct, kw_only=True, frozen=True):
    device_id: UUID
    marketing_consent: bool
    timezone: str | None
    has_push_address: bool


class PastPush(msgspec.Struct, kw_only=True, frozen=True):
    """A delivery already queued or sent to this device (never a suppressed/expired/failed one)."""

    campaign_id: UUID
    fence_id: UUID | None
    store_id: UUID
    at: datetime


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


def in_holdout(device_id: UUID, campaign_id: UUID, percent: float) -> bool:
    """Whether the device is in the campaign's holdout group: the same answer every time."""
    digest = hashlib.sha256(device_id.bytes + campaign_id.bytes).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64 * 100
    return position < percent


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
    situation = _Situation.of(moment, device, policy, history, now)
    matched = [c for c in campaigns if c.status == "active" and matches(c.trigger, moment)]
    failures = {c.id: _first_failure(c, situation) for c in matched}
    survivors = [c for c in matched if failures[c.id] is None]
    key = moment_key(moment)
    seed = seed_of(moment.device_id, key)
    arbitration = arbitrate(survivors, moment.context, evidence or Evidence(), seed, _rank) \
        if draw else by_rank(survivors, moment.context, _rank)
    chosen = arbitration.chosen
    suppressions = tuple(
        _suppression(c, failures[c.id], chosen, draw) for c in matched if c is not chosen
    )
    why = None if chosen is None else explain(moment, key, matched, failures, arbitration, seed)
    return Decision(
        moment=moment,
        chosen=chosen,
        expires_at=None if chosen is None else _expiry(chosen, moment),
        suppressions=suppressions,
        matched=tuple(c.id for c in matched),
        why=why,
    )


class _Situation(msgspec.Struct, frozen=True):
    """Everything a rule may look at; the device-wide verdicts are computed once per moment."""

    moment: Moment
    device: DeviceContext
    history: Sequence[PastPush]
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
        return cls(
            moment=moment,
            device=device,
            history=history,
            now=now,
            consent_failure=_consent_failure(device),
            quiet_failure=_quiet_failure(policy.quiet_hours, device, now),
            policy_failure=_policy_failure(policy, device, history, now),
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
    if any(_in_daypart(part, local) for part in schedule.dayparts):
        return None
    return f"outside every daypart: it is {local:%a %H:%M} in {s.moment.store_timezone}"


def _in_quiet_hours(campaign: Campaign, s: _Situation) -> str | None:
    return s.quiet_failure


def _over_policy(campaign: Campaign, s: _Situation) -> str | None:
    return s.policy_failure


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
    age = _seconds_between(max(p.at for p in same_place), s.now)
    return f"pushed for this {place} {age} s ago; the cooldown is {cooldown} s"


def _expired(campaign: Campaign, s: _Situation) -> str | None:
    expires_at = _expiry(campaign, s.moment)
    if s.now < expires_at:
        return None
    age = _seconds_between(s.moment.occurred_at, s.now)
    return f"the moment is {age} s old; the offer lives {campaign.offer_ttl_seconds} s"


def _held_out(campaign: Campaign, s: _Situation) -> str | None:
    if not in_holdout(s.device.device_id, campaign.id, campaign.holdout_percent):
        return None
    return f"the device is in this campaign's {campaign.holdout_percent:g} % holdout group"


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
    ("holdout", _held_out),
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
    if failure is not None:
        reason, detail = failure
        return Suppression(campaign_id=campaign.id, reason=reason, detail=detail)
    assert chosen is not None, "a survivor is suppressed only when another one was chosen"
    how = "a higher priority" if chosen.priority > campaign.priority else \
        "a higher drawn expected value" if drawn else "rank (bench control: no draw)"
    detail = f"campaign {chosen.id} ({chosen.name!r}) was chosen instead, by {how}"
    return Suppression(campaign_id=campaign.id, reason="outranked", detail=detail)


def _rank(campaign: Campaign) -> tuple[int, datetime, datetime, UUID]:
    return (campaign.priority, campaign.activated_at or _NEVER, campaign.created_at, campaign.id)


def _expiry(campaign: Campaign, moment: Moment) -> datetime:
    return moment.occurred_at + timedelta(seconds=campaign.offer_ttl_seconds)


def _consent_failure(device: DeviceContext) -> str | None:
    missing: list[str] = []
    if not device.marketing_consent:
        missing.append("the device has not consented to marketing pushes")
    if not device.has_push_address:
        missing.append("the device has no push address (FCM token or FID)")
    return "; ".join(missing) or None


def _quiet_failure(quiet: QuietHours | None, device: DeviceContext, now: datetime) -> str | None:
    if quiet is None:
        return None
    zone = device.timezone or "UTC"
    local = now.astimezone(ZoneInfo(zone))
    if not _in_window(minutes_of(quiet.from_), minutes_of(quiet.to), _minute_of_day(local)):
        return None
    return f"quiet hours {quiet.from_}–{quiet.to}: it is {local:%H:%M} in {zone}"


def _policy_failure(
    policy: Policy, device: DeviceContext, history: Sequence[PastPush], now: datetime
) -> str | None:
    zone = device.timezone or "UTC"
    midnight = _local_midnight(now, ZoneInfo(zone))
    today = sum(1 for p in history if p.at >= midnight)
    if today >= policy.max_per_device_per_day:
        return (
            f"{today} pushes since midnight in {zone}; "
            f"the daily maximum is {policy.max_per_device_per_day}"
        )
    if not history or not policy.min_seconds_between_pushes:
        return None
    gap = _seconds_between(max(p.at for p in history), now)
    if gap >= policy.min_seconds_between_pushes:
        return None
    return (
        f"the last push was {gap} s ago; "
        f"the minimum gap is {policy.min_seconds_between_pushes} s"
    )


def _in_daypart(part: Daypart, local: datetime) -> bool:
    """Inside the daypart; a part that wraps past midnight belongs to the day it starts."""
    start, end, minute = minutes_of(part.from_), minutes_of(part.to), _minute_of_day(local)
    weekday = local.isoweekday()
    if start < end:
        return weekday in part.days and start <= minute < end
    yesterday = 7 if weekday == 1 else weekday - 1
    return (weekday in part.days and minute >= start) or (yesterday in part.days and minute < end)


def _in_window(start: int, end: int, minute: int) -> bool:
    """Inside [start, end) minutes of the day, wrapping past midnight when end < start.

    An empty window (start == end) contains nothing.
    """
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


def _minute_of_day(local: datetime) -> int:
    return local.hour * 60 + local.minute


def _local_midnight(now: datetime, zone: ZoneInfo) -> datetime:
    """The instant the device's local day began, in UTC (comparisons then never depend on folds)."""
    local_day = now.astimezone(zone).date()
    return datetime.combine(local_day, time(), tzinfo=zone).astimezone(UTC)


def _seconds_between(earlier: datetime, later: datetime) -> int:
    return int((later - earlier).total_seconds())
