"""Campaigns, their triggers, schedules, offers and caps, and the global push policy.

One rule: a campaign that exists is valid. Every cross-field check happens here, at decode time,
so the decision rules and the store can trust what they are given.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import Meta

from customers.model import MicromomentKind, ValueTier

TriggerKind = Literal["enter", "dwell", "exit", "predicted_next"]
CampaignStatus = Literal["draft", "active", "paused"]

Weekday = Annotated[int, Meta(ge=1, le=7, description="ISO weekday: 1 = Monday … 7 = Sunday")]
ClockTime = Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, 24 h")]
NonEmptyText = Annotated[str, Meta(min_length=1, max_length=1000)]
Tag = Annotated[str, Meta(min_length=1, max_length=64)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
OfferTtl = Annotated[int, Meta(ge=60, le=86_400)]
HoldoutPercent = Annotated[float, Meta(ge=0.0, le=50.0)]
GlobalHoldoutPercent = Annotated[float, Meta(
    ge=0.0, le=20.0,
    description="0..20: the share of devices that never get a push from any campaign, kept as "
                "the global control group (a stable hash of the device id)")]
PositiveSeconds = Annotated[int, Meta(ge=1, le=31_536_000)]
CapCount = Annotated[int, Meta(ge=1, le=10_000)]
# What one conversion of the offer is worth, in the retailer's own unit (money, margin, points):
# arbitration multiplies it by the learned P(conversion). Finite and ≥ 0 (JSON has no NaN or
# infinity, and the upper bound refuses an overflowing 1e400).
ConversionValue = Annotated[float, Meta(
    ge=0.0, le=1e9, description="what one conversion is worth, for arbitration (default 1.0)")]
DEFAULT_VALUE = 1.0

FCM_PAYLOAD_LIMIT_BYTES = 4096
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")


def minutes_of(clock: str) -> int:
    """Minutes since midnight of an `HH:MM` string already validated by `ClockTime`."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class Trigger(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    kind: TriggerKind
    geofence_ids: list[UUID] = msgspec.field(default_factory=list)
    store_ids: list[UUID] = msgspec.field(default_factory=list)
    tags: list[Tag] = msgspec.field(default_factory=list)
    min_probability: Probability | None = None
    # exit only: the shortest stay (entry to confirmed exit) that counts as a visit being left
    min_stay_seconds: Annotated[int, Meta(ge=0, le=86_400)] | None = None

    def __post_init__(self) -> None:
        if self.min_stay_seconds is not None and self.kind != "exit":
            raise ValueError("min_stay_seconds: applies only to the exit trigger")
        if self.min_probability is not None and self.kind != "predicted_next":
            raise ValueError("min_probability: applies only to the predicted_next trigger")
        if self.kind == "predicted_next" and not (self.store_ids or self.geofence_ids or self.tags):
            raise ValueError("store_ids: a predicted_next trigger must name the stores it predicts")


class Daypart(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A weekly window in the store's local time; `to` before `from` wraps past midnight."""

    days: Annotated[list[Weekday], Meta(min_length=1, max_length=7)]
    from_: ClockTime = msgspec.field(name="from")
    to: ClockTime

    def __post_init__(self) -> None:
        if len(set(self.days)) != len(self.days):
            raise ValueError("days: must not repeat")
        if self.from_ == self.to:
            raise ValueError("to: must differ from `from`")


class Schedule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    starts_at: datetime
    ends_at: datetime
    dayparts: list[Daypart] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("starts_at: starts_at and ends_at need a UTC offset")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must be after starts_at")


class Offer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    title: NonEmptyText
    body: NonEmptyText
    deep_link: Annotated[str, Meta(max_length=2000)] | None = None
    image_url: Annotated[str, Meta(max_length=2000)] | None = None
    data: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ValueError("title: must not be blank")
        if not self.body.strip():
            raise ValueError("body: must not be blank")
        if self.image_url is not None and not self.image_url.startswith("https://"):
            raise ValueError("image_url: must be an https URL")
        if self.deep_link is not None and not _URL.match(self.deep_link):
            raise ValueError("deep_link: must be a URL with a scheme")
        reserved = RESERVED_DATA_KEYS.intersection(self.data)
        if reserved:
            raise ValueError(f"data: keys {sorted(reserved)} are reserved")
        if any(k.startswith(("google.", "gcm.")) or k in {"from", "notification", "message_type"}
               for k in self.data):
            raise ValueError("data: keys must not use FCM's reserved names (from, google.*, gcm.*)")
        if payload_size(self) > FCM_PAYLOAD_LIMIT_BYTES:
            raise ValueError(f"the push payload exceeds FCM's {FCM_PAYLOAD_LIMIT_BYTES} bytes")


RESERVED_DATA_KEYS = frozenset({"delivery_id", "campaign_id", "expires_at", "deep_link"})


def payload_size(offer: Offer) -> int:
    """Bytes of the FCM payload this offer produces, with the fields the dispatcher adds."""
    data = dict(offer.data)
    data.update(
        delivery_id="00000000-0000-0000-0000-000000000000",
        campaign_id="00000000-0000-0000-0000-000000000000",
        expires_at="2026-01-01T00:00:00+00:00",
    )
    if offer.deep_link:
        data["deep_link"] = offer.deep_link
    notification = {"title": offer.title, "body": offer.body}
    if offer.image_url:
        notification["image"] = offer.image_url
    return len(msgspec.json.encode({"notification": notification, "data": data}))


class PerDeviceCap(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    count: CapCount
    period_seconds: PositiveSeconds


class Caps(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    per_device: PerDeviceCap | None = None
    cooldown_seconds: Annotated[int, Meta(ge=0, le=31_536_000)] | None = None


# A category prefix is the retailer's own path or a leading part of it ("electronics" covers
# "electronics.smartphone"); free text like the signals' categories.
CategoryPrefix = Annotated[str, Meta(min_length=1, max_length=200)]


class Audience(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Whom a campaign is for, by the context of the moment (see `campaigns/audience.py`).

    Each given part must hold: the moment's micromoment is one of `micromoments`; the customer's
    value tier is one of `value_tiers`; the customer has intent in one of `categories`; and that
    intent (the strongest matching category's score, or `p_buy` when no categories are given) is
    at least `min_intent`.
    """

    micromoments: Annotated[list[MicromomentKind], Meta(
        min_length=1, max_length=4,
        description="only moments classified as one of these micromoments")] | None = None
    categories: Annotated[list[CategoryPrefix], Meta(
        min_length=1, max_length=100,
        description="only customers with intent in a category under one of these prefixes "
                    "(`electronics` covers `electronics.smartphone`; case is ignored)",
    )] | None = None
    min_intent: Annotated[float, Meta(
        ge=0.0, le=1.0,
        description="0..1: the strongest matching category's intent score must reach it; "
                    "without `categories`, p_buy must")] | None = None
    value_tiers: Annotated[list[ValueTier], Meta(
        min_length=1, max_length=3,
        description="only customers whose tier in the value matrix is one of these")] | None = None

    def __post_init__(self) -> None:
        if (self.micromoments is None and self.categories is None and self.min_intent is None
                and self.value_tiers is None):
            raise ValueError("an audience names at least one of micromoments, value_tiers, "
                             "categories and min_intent (null removes the audience)")
        if self.micromoments is not None and len(set(self.micromoments)) != len(self.micromoments):
            raise ValueError("micromoments: must not repeat")
        if self.value_tiers is not None and len(set(self.value_tiers)) != len(self.value_tiers):
            raise ValueError("value_tiers: must not repeat")
        for i, prefix in enumerate(self.categories or ()):
            if not prefix.strip():
                raise ValueError(f"categories: item {i} is blank")
            if prefix != prefix.strip() or prefix.startswith(".") or prefix.endswith("."):
                raise ValueError(f"categories: item {i} ({prefix!r}) must not start or end "
                                 "with a dot or a space")
        if self.categories is not None:
            folded = [prefix.casefold() for prefix in self.categories]
            if len(set(folded)) != len(folded):
                raise ValueError("categories: must not repeat (they are compared ignoring case)")


class CampaignSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """What campaign staff write: the body of POST /v1/campaigns."""

    name: Annotated[str, Meta(min_length=1, max_length=200)]
    trigger: Trigger
    schedule: Schedule
    offer: Offer
    offer_ttl_seconds: OfferTtl
    priority: Annotated[int, Meta(ge=-1000, le=1000)] = 0
    caps: Caps = msgspec.field(default_factory=Caps)
    holdout_percent: HoldoutPercent = 0.0
    status: CampaignStatus = "draft"
    audience: Audience | None = None
    value: ConversionValue = DEFAULT_VALUE


class Campaign(msgspec.Struct, kw_only=True, frozen=True):
    """A stored campaign: its spec plus identity and lifecycle."""

    id: UUID
    name: str
    trigger: Trigger
    schedule: Schedule
    offer: Offer
    offer_ttl_seconds: int
    priority: int
    caps: Caps
    holdout_percent: float
    status: CampaignStatus
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None = None
    audience: Audience | None = None
    value: float = DEFAULT_VALUE


class QuietHours(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A daily window in the device's local time; `to` before `from` wraps past midnight."""

    from_: ClockTime = msgspec.field(name="from")
    to: ClockTime

    def __post_init__(self) -> None:
        if self.from_ == self.to:
            raise ValueError("to: must differ from `from`")


class Policy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Global pressure limits, applied in the device's local time."""

    max_per_device_per_day: Annotated[int, Meta(ge=0, le=100)] = 3
    min_seconds_between_pushes: Annotated[int, Meta(ge=0, le=604_800)] = 3600
    quiet_hours: QuietHours | None = msgspec.field(
        default_factory=lambda: QuietHours(from_="21:00", to="09:00")
    )
    global_holdout_percent: GlobalHoldoutPercent = 0.0
