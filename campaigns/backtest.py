"""A backtest: what a proposed campaign would have done over a past period, counted.

One rule: every (moment, proposed campaign) match the replay decides is counted exactly once,
as `would_send` or as one suppression with its reason (the names `GET /v1/campaigns/{id}/stats`
uses), so `moments` is their sum as `triggered` is in the stats. The replay (`app/backtest.py`)
drives the live pipeline's own functions and hands this tally what its ledger kept.

Pure: no database, no clock. The request, the answer and the tally live here; the time zones of
`by_hour` come with each moment (the store's zone, as dayparts use).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from campaigns.decide import Moment, Suppression
from campaigns.model import Campaign, CampaignSpec
from campaigns.reports import SUPPRESSION_KEYS, suppression_key

MAX_PERIOD = timedelta(days=7)
# What a period may span: nothing was stored before 2000, and the replay looks a year and a
# month before `from` at most (the longest cap period, the context window), which must stay a
# representable instant.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
# The proposed campaign's id is derived from its body, so the same body always draws the same
# holdout group (`campaigns.decide.in_holdout` hashes the device with the campaign's id).
PROPOSED_NAMESPACE = uuid.UUID("6f2c3f0e-5b7a-4c47-9d0e-8f6b1f4a2c19")


class BacktestIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The body of POST /v1/campaigns/backtest."""

    campaign: CampaignSpec
    from_: datetime = msgspec.field(name="from")
    to: datetime

    def __post_init__(self) -> None:
        if self.from_.tzinfo is None:
            raise ValueError("from: needs a UTC offset (RFC 3339)")
        if self.to.tzinfo is None:
            raise ValueError("to: needs a UTC offset (RFC 3339)")
        for name, at in (("from", self.from_), ("to", self.to)):
            if not EARLIEST <= at <= LATEST:
                raise ValueError(f"{name}: must be between {EARLIEST:%Y-%m-%d} and "
                                 f"{LATEST:%Y-%m-%d}")
        if self.to <= self.from_:
            raise ValueError("to: must be after `from`")
        if self.to - self.from_ > MAX_PERIOD:
            raise ValueError(f"to: a backtest covers at most {MAX_PERIOD.days} days; "
                             f"this period is {self.to - self.from_}")


class HourOfWeek(msgspec.Struct, kw_only=True, frozen=True):
    """One hour of the week in the store's time zone, when the moments happened."""

    day: int  # ISO weekday, 1 = Monday … 7 = Sunday (as dayparts count)
    hour: int  # 0..23, local wall-clock hour
    moments: int
    would_send: int


class GeofenceTally(msgspec.Struct, kw_only=True, frozen=True):
    """The moments at one fence (`geofence_id` null: a store's `predicted_next` moments)."""

    geofence_id: UUID | None
    store_id: UUID
    moments: int
    would_send: int
    suppressed: dict[str, int]  # only the reasons that occurred


class Replayed(msgspec.Struct, kw_only=True, frozen=True):
    """What the replay went through: devices with pings in the period, their batches and pings
    (the warm-up before `from` included)."""

    devices: int
    batches: int
    pings: int


class Backtest(msgspec.Struct, kw_only=True, frozen=True):
    """What the proposed campaign would have done over the period."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    campaign_id: UUID  # the id the replay gave the proposal (derived from its body)
    moments: int
    devices: int  # devices with at least one moment
    devices_reached: int  # devices that would have received at least one push
    would_send: int
    suppressed: dict[str, int]
    by_hour: list[HourOfWeek]  # hours with at least one moment, Monday 00 first
    by_geofence: list[GeofenceTally]  # most moments first
    replayed: Replayed


def proposed_campaign(spec: CampaignSpec, now: datetime) -> Campaign:
    """The proposal as a live campaign: active, newest (activated and created `now`), with an
    id derived from its body."""
    fields = {f: getattr(spec, f) for f in spec.__struct_fields__}
    fields["status"] = "active"
    ident = uuid.uuid5(PROPOSED_NAMESPACE, msgspec.json.encode(spec).decode())
    return Campaign(id=ident, created_at=now, updated_at=now, activated_at=now, **fields)


class _Place(msgspec.Struct):
    moments: int = 0
    would_send: int = 0
    suppressed: dict[str, int] = msgspec.field(default_factory=dict)


class Tally:
    """Counts the proposed campaign's outcomes, device after device."""

    def __init__(self, campaign_id: UUID) -> None:
        self.campaign_id = campaign_id
        self.moments = 0
        self.would_send = 0
        self.devices = 0
        self.devices_reached = 0
        self.suppressed = dict.fromkeys(SUPPRESSION_KEYS, 0)
        self._hours: dict[tuple[int, int], list[int]] = {}
        self._places: dict[tuple[UUID | None, UUID], _Place] = {}
        self._device: UUID | None = None
        self._device_moments = 0
        self._device_sent = 0

    def device(self, device_id: UUID) -> None:
        """The moments counted from now on are this device's (the replay goes one device at
        a time, so reach is counted without holding every device id)."""
        self._close_device()
        self._device = device_id

    def count(self, moment: Moment, chosen: UUID | None,
              suppressions: Iterable[Suppression]) -> None:
        """One decision as the ledger kept it: `chosen` the campaign whose delivery it queued
        (None when none, or one already queued for this moment), `suppressions` those it kept."""
        if moment.device_id != self._device:
            self.device(moment.device_id)
        place = self._places.get((moment.fence_id, moment.store_id))
        if chosen == self.campaign_id:
            place = self._at(moment, place)
            place.would_send += 1
            self._hour(moment)[1] += 1
            self.would_send += 1
            self._device_sent += 1
        for s in suppressions:
            if s.campaign_id != self.campaign_id:
                continue
            place = self._at(moment, place)
            key = suppression_key(s.reason)
            place.suppressed[key] = place.suppressed.get(key, 0) + 1
            self.suppressed[key] = self.suppressed.get(key, 0) + 1

    def _at(self, moment: Moment, place: _Place | None) -> _Place:
        """A moment of the proposal: counted once, at its fence and its hour."""
        if place is None:
            place = self._places.setdefault((moment.fence_id, moment.store_id), _Place())
        place.moments += 1
        self._hour(moment)[0] += 1
        self.moments += 1
        self._device_moments += 1
        return place

    def _hour(self, moment: Moment) -> list[int]:
        local = moment.occurred_at.astimezone(ZoneInfo(moment.store_timezone))
        return self._hours.setdefault((local.isoweekday(), local.hour), [0, 0])

    def _close_device(self) -> None:
        self.devices += self._device_moments > 0
        self.devices_reached += self._device_sent > 0
        self._device_moments = self._device_sent = 0

    def result(self, start: datetime, end: datetime, replayed: Replayed) -> Backtest:
        self._close_device()
        self._device = None
        hours = [HourOfWeek(day=d, hour=h, moments=n, would_send=s)
                 for (d, h), (n, s) in sorted(self._hours.items())]
        places = sorted(self._places.items(),
                        key=lambda kv: (-kv[1].moments, str(kv[0][0]), str(kv[0][1])))
        return Backtest(
            from_=start, to=end, campaign_id=self.campaign_id, moments=self.moments,
            devices=self.devices, devices_reached=self.devices_reached,
            would_send=self.would_send, suppressed=dict(self.suppressed), by_hour=hours,
            by_geofence=[GeofenceTally(geofence_id=f, store_id=s, moments=p.moments,
                                       would_send=p.would_send, suppressed=dict(p.suppressed))
                         for (f, s), p in places],
            replayed=replayed,
        )
