"""The live feed: moments and pushes as this process handles them, fanned out to the staff who
watch them (`GET /v1/live`, server-sent events; the console's live panel).

One rule: publishing never waits. Each subscriber has a bounded queue; an event that finds it
full is dropped for that subscriber and counted (the subscriber is told how many it missed), so
a slow browser can never slow the ping path or the dispatcher. With nobody subscribed, nothing
is even built.

Only what this process handled is published: with several service processes each streams its
own pings and its own dispatcher's sends (see the README's "Live feed").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from app.auth import Principal
from app.catalog import CatalogView
from campaigns.decide import Decision, Moment
from campaigns.dispatch import PushRecorded
from geo.presence import Dwelled, Entered, GeoEvent

log = logging.getLogger("contexto.live")

DEFAULT_QUEUE_EVENTS = 500
SHORT_DEVICE = 8  # hex digits of the device id shown: enough to tell test phones apart

MomentKind = Literal["enter", "dwell", "exit", "predicted_next"]
PushStatus = Literal["queued", "suppressed", "sent", "failed", "expired", "retrying"]


class LiveMoment(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, tag="moment",
                 tag_field="type"):
    kind: MomentKind
    store_id: UUID
    fence_id: UUID | None
    device: str
    at: datetime
    timezone: str
    probability: float | None = None


class LivePush(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, tag="push",
               tag_field="type"):
    status: PushStatus
    campaign_id: UUID
    campaign_name: str | None
    store_id: UUID
    fence_id: UUID | None
    device: str | None
    at: datetime
    timezone: str
    trigger: str | None = None
    reason: str | None = None  # why it was suppressed, or FCM's error code
    delivery_id: UUID | None = None


LiveEvent = LiveMoment | LivePush


def short_device(device_id: UUID | None) -> str | None:
    return None if device_id is None else device_id.hex[:SHORT_DEVICE]


class Subscription:
    """One watcher's queue and what it may see."""

    def __init__(self, principal: Principal, size: int) -> None:
        self.principal = principal
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=size)
        self.dropped = 0  # since the watcher was last told

    def sees(self, event: LiveEvent) -> bool:
        return self.principal.may_see_store(event.store_id)

    def offer(self, event: LiveEvent) -> bool:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


class LiveFeed:
    """The process's fan-out of live events (one per app, on `app.state.live`)."""

    def __init__(self, queue_events: int = DEFAULT_QUEUE_EVENTS,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self.queue_events = queue_events
        self.on_drop = on_drop
        self.subscriptions: set[Subscription] = set()

    @property
    def watched(self) -> bool:
        return bool(self.subscriptions)

    def subscribe(self, principal: Principal) -> Subscription:
        subscription = Subscription(principal, self.queue_events)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def publish(self, events: Iterable[LiveEvent]) -> None:
        dropped = 0
        for event in events:
            for subscription in self.subscriptions:
                if subscription.sees(event) and not subscription.offer(event):
                    dropped += 1
        if dropped and self.on_drop is not None:
            self.on_drop(dropped)

    def batch(self, view: Callable[[], CatalogView], device_id: UUID,
              events: Sequence[GeoEvent], decisions: Sequence[Decision]) -> None:
        """A ping batch's presence events, predicted moments, queued and suppressed pushes
        (`view`: the catalog's current view, read only when someone watches)."""
        if self.subscriptions and (events or decisions):
            try:
                self.publish(batch_events(view(), device_id, events, decisions))
            except Exception:  # the batch is committed and answered whatever the feed does
                log.exception("the live feed could not show a ping batch")

    def recorded(self, view: Callable[[], CatalogView],
                 outcomes: Sequence[PushRecorded]) -> None:
        """What the dispatcher heard from FCM and recorded."""
        if self.subscriptions and outcomes:
            try:
                self.publish(push_events(view(), outcomes))
            except Exception:  # the dispatcher goes on sending whatever the feed does
                log.exception("the live feed could not show the dispatcher's outcomes")


KIND_OF_EVENT: dict[type, MomentKind] = {Entered: "enter", Dwelled: "dwell"}


def batch_events(view: CatalogView, device_id: UUID, events: Sequence[GeoEvent],
                 decisions: Sequence[Decision]) -> list[LiveEvent]:
    fences = view.index.fences
    zones = view.store_timezones
    device = short_device(device_id) or ""
    out: list[LiveEvent] = []
    for e in sorted(events, key=lambda e: e.at):
        fence = fences.get(e.fence_id)
        if fence is None:  # deleted while the batch ran
            continue
        out.append(LiveMoment(kind=KIND_OF_EVENT.get(type(e), "exit"), store_id=fence.store_id,
                              fence_id=e.fence_id, device=device, at=e.at,
                              timezone=zones.get(fence.store_id, "UTC")))
    names = {c.id: c.name for c in view.campaigns}
    for d in decisions:
        m = d.moment
        if m.kind == "predicted_next":
            out.append(_predicted(m, device))
        if d.chosen is not None:
            out.append(_push(m, device, "queued", d.chosen.id, names))
        for s in d.suppressions:
            out.append(_push(m, device, "suppressed", s.campaign_id, names, reason=s.reason))
    return out


def _predicted(m: Moment, device: str) -> LiveMoment:
    return LiveMoment(kind="predicted_next", store_id=m.store_id, fence_id=None, device=device,
                      at=m.occurred_at, timezone=m.store_timezone, probability=m.probability)


def _push(m: Moment, device: str, status: PushStatus, campaign_id: UUID,
          names: dict[UUID, str], reason: str | None = None) -> LivePush:
    return LivePush(status=status, campaign_id=campaign_id, campaign_name=names.get(campaign_id),
                    store_id=m.store_id, fence_id=m.fence_id, device=device, at=m.occurred_at,
                    timezone=m.store_timezone, trigger=m.kind, reason=reason)


def push_events(view: CatalogView, outcomes: Sequence[PushRecorded]) -> list[LiveEvent]:
    names = {c.id: c.name for c in view.campaigns}
    return [LivePush(status=o.status, campaign_id=o.campaign_id,
                     campaign_name=names.get(o.campaign_id), store_id=o.store_id,
                     fence_id=o.fence_id, device=short_device(o.device_id), at=o.at,
                     timezone=view.store_timezones.get(o.store_id, "UTC"),
                     trigger=o.trigger_kind, reason=o.error_code, delivery_id=o.delivery_id)
            for o in outcomes]
