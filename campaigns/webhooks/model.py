"""The webhook API's shapes: a subscription as given, as listed and as created (with its secret,
shown once); an attempt of the delivery log; a replay's period.

One rule: a body is checked here, at the edge; what is wrong names its field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args
from uuid import UUID

import msgspec
from msgspec import Meta

EventType = Literal["moment", "delivery.sent", "delivery.failed", "delivery.opened",
                    "delivery.redeemed", "conversion"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

# A secret a receiver chose: long enough to resist guessing, short enough to be a secret.
Secret = Annotated[str, Meta(min_length=16, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class WebhookIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    url: Annotated[str, Meta(min_length=1, max_length=2000)]
    events: Annotated[list[EventType], Meta(min_length=1, max_length=len(EVENT_TYPES))]
    secret: Secret | None = None

    def __post_init__(self) -> None:
        if len(set(self.events)) != len(self.events):
            raise ValueError("events: each event type may be listed once")


class Webhook(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    url: str
    events: list[str]
    created_at: datetime


class CreatedWebhook(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    url: str
    events: list[str]
    created_at: datetime
    secret: str  # shown in this response only


class Attempt(msgspec.Struct, kw_only=True, frozen=True):
    """One HTTP POST of one event to the subscription's URL."""

    id: UUID
    delivery_id: UUID
    event_id: UUID
    event_type: str
    attempt: int  # 1 for the first POST of this delivery
    at: datetime
    status: Literal["delivered", "retry", "dead"]  # this attempt's outcome
    latency_ms: float
    response_code: int | None
    error: str | None
    delivery_status: Literal["queued", "sending", "delivered", "dead"]


class ReplayIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    from_: datetime = msgspec.field(name="from")
    to: datetime

    def __post_init__(self) -> None:
        if self.from_.tzinfo is None:
            raise ValueError("from: needs an offset, e.g. Z or +02:00")
        if self.to.tzinfo is None:
            raise ValueError("to: needs an offset, e.g. Z or +02:00")
        if self.from_ >= self.to:
            raise ValueError("from: must be before `to`")


class Replayed(msgspec.Struct, kw_only=True, frozen=True):
    queued: int  # the events of the period queued again for this subscription
