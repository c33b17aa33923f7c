"""The decision rules, driven as tables: one moment, its device, the campaigns, the policy and the
device's recent pushes in; the chosen campaign and each other campaign's reason out.

Every case starts from a situation in which the campaign "base" goes out, and changes one thing.
The reference instant NOW is Friday 2026-11-20 11:00 UTC: 12:00 in Paris, 20:00 in Tokyo,
06:00 in New York.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
import pytest

from campaigns.decide import (
    Decision,
    DeviceContext,
    Moment,
    MomentKind,
    PastPush,
    decide,
    matches,
)
from campaigns.holdout import in_holdout
from campaigns.model import (
    Campaign,
    CampaignStatus,
    Caps,
    Daypart,
    Offer,
    PerDeviceCap,
    Policy,
    QuietHours,
    Schedule,
    Trigger,
)

NS = uuid5(NAMESPACE_URL, "https://contexto.test/decide")
NOW = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
STORE = uuid5(NS, "store")
OTHER_STORE = uuid5(NS, "other-store")
FENCE = uuid5(NS, "fence")
OTHER_FENCE = uuid5(NS, "other-fence")
DEVICE_ID = uuid5(NS, "device")
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
ACTIVATED = datetime(2026, 2, 1, tzinfo=UTC)

NO_QUIET = Policy(quiet_hours=None)
LOOSE = Policy(max_per_device_per_day=100, min_seconds_between_pushes=0, quiet_hours=None)


def cid(name: str) -> UUID:
    return uuid5(NS, f"campaign/{name}")


def campaign(
    name: str = "base",
    *,
    trigger: Trigger | None = None,
    starts_at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    ends_at: datetime = datetime(2027, 1, 1, tzinfo=UTC),
    dayparts: tuple[Daypart, ...] = (),
    ttl: int = 3600,
    priority: int = 0,
    caps: Caps | None = None,
    holdout: float = 0.0,
    status: CampaignStatus = "active",
    created_at: datetime = CREATED,
    activated_at: datetime | None = ACTIVATED,
    id: UUID | None = None,
    value: float = 1.0,
) -> Campaign:
    return Campaign(
        id=id or cid(name),
        name=name,
        trigger=trigger or Trigger(kind="enter"),
        schedule=Schedule(starts_at=starts_at, ends_at=ends_at, dayparts=list(dayparts)),
        offer=Offer(title="Coffee", body="A free refill for the next hour"),
        offer_ttl_seconds=ttl,
        priority=priority,
        caps=caps or Caps(),
        holdout_percent=holdout,
        status=status,
        created_at=created_at,
        updated_at=created_at,
        activated_at=activated_at,
        value=value,
    )


def exit_after(stay_seconds: float) -> Moment:
    return msgspec.structs.replace(moment(kind="exit"), stay_seconds=stay_seconds)


def moment(
    *,
    kind: MomentKind = "enter",
    fence: UUID | None = FENCE,
    store: UUID = STORE,
    tags: tuple[str, ...] = ("coffee",),
    at: datetime = NOW,
    store_tz: str = "Europe/Paris",
    probability: float | None = None,
    device_id: UUID = DEVICE_ID,
) -> Moment:
    return Moment(
        device_id=device_id,
        kind=kind,
        fence_id=fence,
        store_id=store,
        fence_tags=tags,
        occurred_at=at,
        store_timezone=store_tz,
        probability=probability,
    )


def prediction(probability: float | None, *, at: datetime = NOW) -> Moment:
    return moment(kind="predicted_next", fence=None, tags=(), probability=probability, at=at)


def device(
    *,
    tz: str | None = "Europe/Paris",
    consent: bool = True,
    address: bool = True,
    device_id: UUID = DEVICE_ID,
) -> DeviceContext:
    return DeviceContext(
        device_id=device_id, marketing_consent=consent, timezone=tz, has_push_address=address
    )


def push(
    at: datetime,
    *,
    of: str = "elsewhere",
    fence: UUID | None = FENCE,
    store: UUID = STORE,
) -> PastPush:
    return PastPush(campaign_id=cid(of), fence_id=fence, store_id=store, at=at)


def ago(seconds: float, *, now: datetime = NOW) -> datetime:
    return now - timedelta(seconds=seconds)


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


_rng = random.Random(7)
DEVICES = tuple(UUID(int=_rng.getrandbits(128)) for _ in range(10_000))


def device_in_holdout(campaign_id: UUID, percent: float, *, held_out: bool) -> UUID:
    return next(d for d in DEVICES if in_holdout(d, campaign_id, percent) is held_out)


HELD_OUT = device_in_holdout(cid("base"), 20.0, held_out=True)
NOT_HELD_OUT = device_in_holdout(cid("base"), 20.0, held_out=False)

PREDICTS_STORE = Trigger(kind="predicted_next", store_ids=[STORE])
PREDICTS_STORE_FROM_0_3 = Trigger(kind="predicted_next", store_ids=[STORE], min_probability=0.3)
FRIDAY_NIGHT = Daypart(days=[5], from_="22:00", to="02:00")
COOLDOWN_2H = Caps(cooldown_seconds=7200)
TWO_A_DAY = Caps(per_device=PerDeviceCap(count=2, period_seconds=86_400))


@dataclass(frozen=True)
class Case:
    id: str
    campaigns: tuple[Campaign, ...] = (campaign(),)
    moment: Moment = field(default_factory=moment)
    device: DeviceContext = field(default_factory=device)
    policy: Policy = field(default_factory=Policy)
    history: tuple[PastPush, ...] = ()
    now: datetime = NOW
    chosen: str | None = "base"
    suppressed: Mapping[str, str] = field(default_factory=dict)

    def run(self, campaigns: tuple[Campaign, ...] | None = None) -> Decision:
        return decide(
            self.moment,
            self.device,
            self.campaigns if campaigns is None else campaigns,
            self.policy,
            self.history,
            self.now,
        )


def suppressed(reason: str, *names: str) -> dict[str, str]:
    return {name: reason for name in names or ("base",)}


CASES = [
    # which campaigns take part
    Case("an active campaign whose trigger matches is chosen"),
    Case(
        "a paused campaign is ignored",
        campaigns=(campaign(status="paused"),),
        chosen=None,
    ),
    Case(
        "a draft campaign is ignored",
        campaigns=(campaign(status="draft"),),
        chosen=None,
    ),
    Case(
        "a campaign triggered by dwelling ignores an entry",
        campaigns=(campaign(trigger=Trigger(kind="dwell")),),
        chosen=None,
    ),
    Case(
        "a campaign for another fence ignores this one",
        campaigns=(campaign(trigger=Trigger(kind="enter", geofence_ids=[OTHER_FENCE])),),
        chosen=None,
    ),
    # consent
    Case(
        "a device without marketing consent is suppressed for consent",
        device=device(consent=False),
        chosen=None,
        suppressed=suppressed("consent"),
    ),
    Case(
        "a device without a push address is suppressed for consent",
        device=device(address=False),
        chosen=None,
        suppressed=suppressed("consent"),
    ),
    Case(
        "every matched campaign records its own consent suppression",
        campaigns=(campaign("a"), campaign("b")),
        device=device(consent=False),
        chosen=None,
        suppressed=suppressed("consent", "a", "b"),
    ),
    # schedule
    Case(
        "a campaign that has not started yet is suppressed for schedule",
        campaigns=(campaign(starts_at=NOW + timedelta(minutes=1)),),
        chosen=None,
        suppressed=suppressed("schedule"),
    ),
    Case(
        "a campaign that starts at this very instant is on",
        campaigns=(campaign(starts_at=NOW),),
    ),
    Case(
        "a campaign that ends at this very instant is suppressed for schedule",
        campaigns=(campaign(ends_at=NOW),),
        chosen=None,
        suppressed=suppressed("schedule"),
    ),
    Case(
        "a daypart is read in the store's zone: 12:00 in Paris is inside 11:30–12:30",
        campaigns=(campaign(dayparts=(Daypart(days=[5], from_="11:30", to="12:30"),)),),
    ),
    Case(
        "a daypart on other weekdays suppresses for schedule",
        campaigns=(campaign(dayparts=(Daypart(days=[1, 2, 3, 4], from_="11:30", to="12:30"),)),),
        chosen=None,
        suppressed=suppressed("schedule"),
    ),
    Case(
        "a daypart ending at 12:00 no longer covers 12:00",
        campaigns=(campaign(dayparts=(Daypart(days=[5], from_="08:00", to="12:00"),)),),
        chosen=None,
        suppressed=suppressed("schedule"),
    ),
    Case(
        "a daypart starting at 12:00 covers 12:00",
        campaigns=(campaign(dayparts=(Daypart(days=[5], from_="12:00", to="13:00"),)),),
    ),
    Case(
        "a time outside every daypart suppresses for schedule",
        campaigns=(
            campaign(
                dayparts=(
                    Daypart(days=[5], from_="07:00", to="11:00"),
                    Daypart(days=[5], from_="12:01", to="18:00"),
                )
            ),
        ),
        chosen=None,
        suppressed=suppressed("schedule"),
    ),
    Case(
        "Friday 22:00–02:00 covers 01:30 on Saturday in the New York store",
        campaigns=(campaign(dayparts=(FRIDAY_NIGHT,)),),
        moment=moment(store_tz="America/New_York", at=utc(21, 6, 30)),
        policy=NO_QUIET,
        now=utc(21, 6, 30),
    ),
    Case(
        "Friday 22:00–02:00 covers 23:00 on Friday in the New York store",
        campaigns=(campaign(dayparts=(FRIDAY_NIGHT,)),),
        moment=moment(store_tz="America/New_York", at=utc(21, 4)),
        policy=NO_QUIET,
        now=utc(21, 4),
    ),
    Case(
        "Friday 22:00–02:00 does not cover 01:30 on Friday in the New York store",
        campaigns=(campaign(dayparts=(FRIDAY_NIGHT,)),),
        moment=moment(store_tz="America/New_York", at=utc(20, 6, 30)),
        policy=NO_QUIET,
        now=utc(20, 6, 30),
        chosen=None,
        suppressed=suppressed("schedule"),
    ),
    # quiet hours
    Case(
        "21:30 in Tokyo is quiet for a Tokyo device though it is 13:30 at the Paris store",
        moment=moment(at=utc(20, 12, 30)),
        device=device(tz="Asia/Tokyo"),
        now=utc(20, 12, 30),
        chosen=None,
        suppressed=suppressed("quiet_hours"),
    ),
    Case(
        "the same instant is not quiet for a device in Paris",
        moment=moment(at=utc(20, 12, 30)),
        now=utc(20, 12, 30),
    ),
    Case(
        "quiet hours end at their last minute: 09:00 in Paris is not quiet",
        moment=moment(at=utc(20, 8)),
        now=utc(20, 8),
    ),
    Case(
        "a device without a time zone keeps quiet hours in UTC",
        moment=moment(at=utc(20, 8)),
        device=device(tz=None),
        now=utc(20, 8),
        chosen=None,
        suppressed=suppressed("quiet_hours"),
    ),
    Case(
        "quiet hours that do not wrap midnight hold within the day",
        policy=Policy(quiet_hours=QuietHours(from_="11:00", to="14:00")),
        chosen=None,
        suppressed=suppressed("quiet_hours"),
    ),
    Case(
        "quiet hours that do not wrap midnight end at their last minute",
        policy=Policy(quiet_hours=QuietHours(from_="11:00", to="12:00")),
    ),
    # global policy
    Case(
        "three pushes since midnight in Tokyo reach the daily maximum of three",
        device=device(tz="Asia/Tokyo"),
        history=(push(utc(19, 16)), push(utc(19, 20)), push(utc(20, 8))),
        chosen=None,
        suppressed=suppressed("policy"),
    ),
    Case(
        "a push at 23:00 yesterday in Tokyo does not count toward today's maximum",
        device=device(tz="Asia/Tokyo"),
        history=(push(utc(19, 14)), push(utc(19, 20)), push(utc(20, 8))),
    ),
    Case(
        "pushes last evening in New York do not count today though they share its UTC date",
        moment=moment(at=utc(20, 15)),
        device=device(tz="America/New_York"),
        history=(push(utc(20, 1)), push(utc(20, 2)), push(utc(20, 3))),
        now=utc(20, 15),
    ),
    Case(
        "a daily maximum of zero sends nothing",
        policy=Policy(max_per_device_per_day=0),
        chosen=None,
        suppressed=suppressed("policy"),
    ),
    Case(
        "a push 30 minutes ago is within the one-hour minimum gap",
        history=(push(ago(1800)),),
        chosen=None,
        suppressed=suppressed("policy"),
    ),
    Case(
        "a push exactly one hour ago respects the one-hour minimum gap",
        history=(push(ago(3600)),),
    ),
    # per-device cap
    Case(
        "two pushes of this campaign within its day reach its cap of two",
        campaigns=(campaign(caps=TWO_A_DAY),),
        policy=LOOSE,
        history=(push(ago(86_000), of="base"), push(ago(60), of="base")),
        chosen=None,
        suppressed=suppressed("cap"),
    ),
    Case(
        "a push as old as the cap's period no longer counts toward it",
        campaigns=(campaign(caps=TWO_A_DAY),),
        policy=LOOSE,
        history=(push(ago(86_400), of="base"), push(ago(60), of="base")),
    ),
    Case(
        "pushes of other campaigns do not count toward this campaign's cap",
        campaigns=(campaign(caps=TWO_A_DAY),),
        policy=LOOSE,
        history=(push(ago(600)), push(ago(60))),
    ),
    # cooldown
    Case(
        "a push of this campaign at this fence an hour ago is within a two-hour cooldown",
        campaigns=(campaign(caps=COOLDOWN_2H),),
        policy=LOOSE,
        history=(push(ago(3600), of="base"),),
        chosen=None,
        suppressed=suppressed("cooldown"),
    ),
    Case(
        "a push of this campaign at another fence of the store does not cool this fence down",
        campaigns=(campaign(caps=COOLDOWN_2H),),
        policy=LOOSE,
        history=(push(ago(3600), of="base", fence=OTHER_FENCE),),
    ),
    Case(
        "a push of another campaign at this fence does not cool this campaign down",
        campaigns=(campaign(caps=COOLDOWN_2H),),
        policy=LOOSE,
        history=(push(ago(3600)),),
    ),
    Case(
        "a push as old as the cooldown no longer counts",
        campaigns=(campaign(caps=COOLDOWN_2H),),
        policy=LOOSE,
        history=(push(ago(7200), of="base"),),
    ),
    Case(
        "a prediction without a fence cools down per store",
        campaigns=(campaign(trigger=PREDICTS_STORE, caps=COOLDOWN_2H),),
        moment=prediction(0.9),
        policy=LOOSE,
        history=(push(ago(3600), of="base", fence=OTHER_FENCE),),
        chosen=None,
        suppressed=suppressed("cooldown"),
    ),
    Case(
        "a prediction is not cooled down by a push at another store",
        campaigns=(campaign(trigger=PREDICTS_STORE, caps=COOLDOWN_2H),),
        moment=prediction(0.9),
        policy=LOOSE,
        history=(push(ago(3600), of="base", fence=OTHER_FENCE, store=OTHER_STORE),),
    ),
    # offer lifetime
    Case(
        "a moment older than the offer's TTL is expired",
        moment=moment(at=ago(3601)),
        chosen=None,
        suppressed=suppressed("expired"),
    ),
    Case(
        "a moment exactly as old as the TTL is expired",
        moment=moment(at=ago(3600)),
        chosen=None,
        suppressed=suppressed("expired"),
    ),
    Case(
        "a moment one second younger than the TTL is still offered",
        moment=moment(at=ago(3599)),
    ),
    # holdout
    Case(
        "a device in the holdout group is recorded as holdout, not sent",
        campaigns=(campaign(holdout=20.0),),
        moment=moment(device_id=HELD_OUT),
        device=device(device_id=HELD_OUT),
        chosen=None,
        suppressed=suppressed("holdout"),
    ),
    Case(
        "a device outside the holdout group receives the offer",
        campaigns=(campaign(holdout=20.0),),
        moment=moment(device_id=NOT_HELD_OUT),
        device=device(device_id=NOT_HELD_OUT),
    ),
    Case(
        "a held-out device in quiet hours counts as quiet hours, not holdout",
        campaigns=(campaign(holdout=20.0),),
        moment=moment(device_id=HELD_OUT),
        device=device(device_id=HELD_OUT),
        policy=Policy(quiet_hours=QuietHours(from_="11:00", to="14:00")),
        chosen=None,
        suppressed=suppressed("quiet_hours"),
    ),
    # predictions
    Case(
        "a prediction below the default 0.5 is suppressed for probability",
        campaigns=(campaign(trigger=PREDICTS_STORE),),
        moment=prediction(0.49),
        chosen=None,
        suppressed=suppressed("probability"),
    ),
    Case(
        "a prediction of exactly 0.5 passes the default threshold",
        campaigns=(campaign(trigger=PREDICTS_STORE),),
        moment=prediction(0.5),
    ),
    Case(
        "a prediction above the trigger's own lower threshold passes",
        campaigns=(campaign(trigger=PREDICTS_STORE_FROM_0_3),),
        moment=prediction(0.4),
    ),
    Case(
        "a prediction without a probability is suppressed for probability",
        campaigns=(campaign(trigger=PREDICTS_STORE),),
        moment=prediction(None),
        chosen=None,
        suppressed=suppressed("probability"),
    ),
    Case(
        "a weak prediction counts as probability even without consent",
        campaigns=(campaign(trigger=PREDICTS_STORE),),
        moment=prediction(0.1),
        device=device(consent=False),
        chosen=None,
        suppressed=suppressed("probability"),
    ),
    # priority
    Case(
        "the higher priority wins and the other is outranked",
        campaigns=(campaign("low", priority=1), campaign("high", priority=5)),
        chosen="high",
        suppressed=suppressed("outranked", "low"),
    ),
    Case(
        "equal priorities worth nothing (equal expected values) go to the most recently activated",
        campaigns=(
            campaign("new", value=0.0, activated_at=datetime(2026, 3, 1, tzinfo=UTC)),
            campaign("old", value=0.0, created_at=datetime(2026, 1, 31, tzinfo=UTC)),
        ),
        chosen="new",
        suppressed=suppressed("outranked", "old"),
    ),
    Case(
        "equal priorities, values of 0 and activations go to the most recently created",
        campaigns=(
            campaign("older", value=0.0, created_at=datetime(2025, 12, 1, tzinfo=UTC)),
            campaign("newer", value=0.0),
        ),
        chosen="newer",
        suppressed=suppressed("outranked", "older"),
    ),
    Case(
        "a campaign never activated loses an exact tie to one that was",
        campaigns=(campaign("unstamped", value=0.0, activated_at=None),
                   campaign("stamped", value=0.0)),
        chosen="stamped",
        suppressed=suppressed("outranked", "unstamped"),
    ),
    Case(
        "a full tie of priority, value and stamps goes to the greater id",
        campaigns=(
            campaign("x", value=0.0, id=UUID(int=1)),
            campaign("y", value=0.0, id=UUID(int=2)),
        ),
        chosen="y",
        suppressed=suppressed("outranked", "x"),
    ),
    Case(
        "a suppressed higher priority lets a lower one through",
        campaigns=(campaign("low", priority=1), campaign("high", priority=5, caps=COOLDOWN_2H)),
        policy=LOOSE,
        history=(push(ago(60), of="high"),),
        chosen="low",
        suppressed=suppressed("cooldown", "high"),
    ),
]


def names(case: Case) -> dict[UUID, str]:
    return {c.id: c.name for c in case.campaigns}


def outcome(case: Case, decision: Decision) -> tuple[str | None, dict[str, str]]:
    name = names(case)
    chosen = None if decision.chosen is None else decision.chosen.name
    return chosen, {name[s.campaign_id]: s.reason for s in decision.suppressions}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide_chooses_and_explains(case: Case) -> None:
    assert outcome(case, case.run()) == (case.chosen, dict(case.suppressed))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_matched_campaign_is_chosen_or_suppressed_exactly_once(case: Case) -> None:
    decision = case.run()
    accounted = [s.campaign_id for s in decision.suppressions]
    if decision.chosen is not None:
        accounted.append(decision.chosen.id)
    assert sorted(accounted) == sorted(decision.matched)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_choice_does_not_depend_on_the_campaigns_order(case: Case) -> None:
    forward, backward = case.run(), case.run(case.campaigns[::-1])
    assert outcome(case, forward) == outcome(case, backward)


MATCH_CASES = [
    ("a fence-listed trigger matches a moment at that fence",
     Trigger(kind="enter", geofence_ids=[FENCE]), moment(), True),
    ("a fence-listed trigger ignores another fence",
     Trigger(kind="enter", geofence_ids=[OTHER_FENCE]), moment(), False),
    ("a store-listed trigger matches any fence of that store",
     Trigger(kind="enter", store_ids=[STORE]), moment(fence=OTHER_FENCE), True),
    ("a store-listed trigger ignores another store",
     Trigger(kind="enter", store_ids=[OTHER_STORE]), moment(), False),
    ("a tag trigger matches a fence carrying one of its tags",
     Trigger(kind="enter", tags=["bakery", "coffee"]), moment(), True),
    ("a tag trigger ignores a fence without its tags",
     Trigger(kind="enter", tags=["bakery"]), moment(), False),
    ("a trigger naming fences, stores and tags matches on any one of them",
     Trigger(kind="enter", geofence_ids=[OTHER_FENCE], store_ids=[OTHER_STORE], tags=["coffee"]),
     moment(), True),
    ("a trigger naming nothing matches every fence",
     Trigger(kind="enter"), moment(fence=OTHER_FENCE, store=OTHER_STORE, tags=()), True),
    ("a trigger of another kind does not match",
     Trigger(kind="exit"), moment(), False),
    ("a prediction matches its store without a fence",
     PREDICTS_STORE, prediction(0.9), True),
    ("a prediction for another store does not match",
     Trigger(kind="predicted_next", store_ids=[OTHER_STORE]), prediction(0.9), False),
    ("a fence-listed trigger ignores a prediction that has no fence",
     Trigger(kind="predicted_next", geofence_ids=[FENCE]), prediction(0.9), False),
    ("an exit after a two-minute stay matches an exit trigger",
     Trigger(kind="exit"), exit_after(120.0), True),
    ("an exit after a 50 s stay is no visit being left, by default",
     Trigger(kind="exit"), exit_after(50.0), False),
    ("an exit trigger may ask for a longer stay",
     Trigger(kind="exit", min_stay_seconds=600), exit_after(300.0), False),
    ("an exit trigger may accept any stay",
     Trigger(kind="exit", min_stay_seconds=0), exit_after(50.0), True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("trigger", "the_moment", "expected"),
    [case[1:] for case in MATCH_CASES],
    ids=[case[0] for case in MATCH_CASES],
)
def test_matches(trigger: Trigger, the_moment: Moment, expected: bool) -> None:
    assert matches(trigger, the_moment) is expected


def test_the_offer_expires_its_ttl_after_the_moment() -> None:
    decision = Case("", moment=moment(at=ago(600))).run()
    assert decision.expires_at == NOW - timedelta(seconds=600) + timedelta(seconds=3600)


def test_nothing_chosen_means_no_expiry() -> None:
    assert Case("", device=device(consent=False)).run().expires_at is None


DETAIL_CASES = [
    ("a device without consent is told so", device(consent=False), "consented"),
    ("a device without a push address is told so", device(address=False), "push address"),
]


@pytest.mark.parametrize(
    ("the_device", "fragment"),
    [case[1:] for case in DETAIL_CASES],
    ids=[case[0] for case in DETAIL_CASES],
)
def test_the_consent_detail_says_what_is_missing(the_device: DeviceContext, fragment: str) -> None:
    (suppression,) = Case("", device=the_device).run().suppressions
    assert fragment in suppression.detail


def test_holdout_gives_the_same_answer_every_time() -> None:
    first = [in_holdout(d, cid("base"), 20.0) for d in DEVICES[:200]]
    again = [in_holdout(UUID(str(d)), cid("base"), 20.0) for d in DEVICES[:200]]
    assert first == again


def test_holdout_holds_out_about_the_requested_share() -> None:
    share = sum(in_holdout(d, cid("base"), 20.0) for d in DEVICES) / len(DEVICES)
    assert 0.17 <= share <= 0.23


def test_holdout_groups_differ_between_campaigns() -> None:
    both = sum(in_holdout(d, cid("a"), 20.0) and in_holdout(d, cid("b"), 20.0) for d in DEVICES)
    assert 0.02 <= both / len(DEVICES) <= 0.06  # independent groups overlap about 4 %


def test_a_zero_holdout_holds_out_nobody() -> None:
    assert not any(in_holdout(d, cid("base"), 0.0) for d in DEVICES)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        Case("", now=NOW.replace(tzinfo=None)).run()
