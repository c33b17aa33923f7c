"""Location pings and app signals as the device sends them, and the rules one must pass.

One rule: a bad ping is rejected alone with its reason; the batch around it goes on. Only a
malformed body (not JSON, wrong types, 0 or more than 500 items) is refused whole, by decoding.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

import msgspec
import numpy as np
from msgspec import Meta

MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(hours=24)
MAX_ACCURACY_M = 5000.0
MAX_SPEED_MPS = 300.0  # faster than any vehicle a shopper is in; above it the fix is garbage
BATCH_MAX = 500


# Device bodies ignore fields this version does not know (the contract): an app released
# after this server may send more, and must not be refused for it. Staff bodies refuse them.
class PingIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
             frozen=True):
    lat: float
    lng: float
    ts: datetime
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None


class PingBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
                frozen=True):
    pings: Annotated[list[PingIn], Meta(min_length=1, max_length=BATCH_MAX)]


SignalKind = Annotated[str, Meta(
    pattern=r"^[a-z][a-z0-9_]{0,63}$",
    description="search, product_view, store_locator, directions, cart_add, checkout, purchase, "
                "or another snake_case kind",
)]


class SignalIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
               frozen=True):
    kind: SignalKind
    ts: datetime
    attributes: Annotated[dict[Annotated[str, Meta(max_length=64)],
                               Annotated[str, Meta(max_length=1000)]],
                          Meta(max_length=32)] = msgspec.field(default_factory=dict)


class SignalBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=False,
                  frozen=True):
    signals: Annotated[list[SignalIn], Meta(min_length=1, max_length=BATCH_MAX)]


class Rejected(msgspec.Struct, frozen=True):
    index: int
    reason: str


class Accepted(msgspec.Struct, frozen=True):
    accepted: int
    rejected: list[Rejected]


def check_time(ts: datetime, now: datetime) -> str | None:
    if ts.tzinfo is None:
        return "ts needs a UTC offset (RFC 3339)"
    if ts > now + MAX_FUTURE:
        return "ts is more than 5 minutes in the future"
    if ts < now - MAX_AGE:
        return "ts is more than 24 hours old"
    return None


def _finite_in(value: float | None, low: float, high: float) -> bool:
    return value is None or (math.isfinite(value) and low <= value <= high)


def check_ping(ping: PingIn, now: datetime) -> str | None:
    """The reason this ping is rejected, or None when it is usable."""
    if not (math.isfinite(ping.lat) and -90.0 <= ping.lat <= 90.0):
        return "lat must be a number within -90..90"
    if not (math.isfinite(ping.lng) and -180.0 <= ping.lng <= 180.0):
        return "lng must be a number within -180..180"
    if not _finite_in(ping.accuracy_m, 0.0, MAX_ACCURACY_M):
        return f"accuracy_m must be within 0..{MAX_ACCURACY_M:g} m"
    if not _finite_in(ping.speed_mps, 0.0, MAX_SPEED_MPS):
        return f"speed_mps must be within 0..{MAX_SPEED_MPS:g}"
    if not _finite_in(ping.heading_deg, 0.0, 360.0):
        return "heading_deg must be within 0..360"
    return check_time(ping.ts, now)


def _column(pings: list[PingIn], name: str, absent: float) -> np.ndarray:
    values = (getattr(p, name) for p in pings)
    return np.fromiter((absent if v is None else v for v in values), np.float64, len(pings))


def split_pings(pings: list[PingIn], now: datetime) -> tuple[list[PingIn], list[Rejected]]:
    """The usable pings, and each other one's index and reason. The whole batch is screened
    with array comparisons; `check_ping` only runs on the few that fail, for their reason."""
    lat, lng = _column(pings, "lat", 0.0), _column(pings, "lng", 0.0)
    accuracy = _column(pings, "accuracy_m", 0.0)
    speed, heading = _column(pings, "speed_mps", 0.0), _column(pings, "heading_deg", 0.0)
    low, high = (now - MAX_AGE).timestamp(), (now + MAX_FUTURE).timestamp()
    ts = np.fromiter((p.ts.timestamp() if p.ts.tzinfo is not None else np.nan for p in pings),
                     np.float64, len(pings))
    with np.errstate(invalid="ignore"):
        good = (
            (np.abs(lat) <= 90.0) & (np.abs(lng) <= 180.0)
            & (accuracy >= 0.0) & (accuracy <= MAX_ACCURACY_M)
            & (speed >= 0.0) & (speed <= MAX_SPEED_MPS)
            & (heading >= 0.0) & (heading <= 360.0)
            & (ts >= low) & (ts <= high)
        )
    if good.all():
        return list(pings), []
    accepted: list[PingIn] = []
    rejected: list[Rejected] = []
    for i, (ping, ok) in enumerate(zip(pings, good.tolist(), strict=True)):
        reason = None if ok else check_ping(ping, now)
        if reason is None:
            accepted.append(ping)
        else:
            rejected.append(Rejected(i, reason))
    return accepted, rejected


# A decimal amount as shops write it: digits, an optional fraction; no sign, exponent or separator.
_AMOUNT = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,6})?$")


def check_attributes(signal: SignalIn) -> str | None:
    """The reason a signal's known attributes make it unusable, or None. `amount` is a
    non-negative decimal (required on a purchase) and `store_id` a uuid; other attributes,
    `category` included, are free text."""
    attributes = signal.attributes
    amount = attributes.get("amount")
    if amount is None:
        if signal.kind == "purchase":
            return "attributes.amount is required on a purchase (what was spent, e.g. \"24.90\")"
    elif not _AMOUNT.match(amount):
        return "attributes.amount must be a non-negative decimal such as \"24.90\""
    store_id = attributes.get("store_id")
    if store_id is not None:
        try:
            UUID(store_id)
        except ValueError:
            return "attributes.store_id must be a store's id (a uuid)"
    return None


def split_signals(signals: list[SignalIn],
                  now: datetime) -> tuple[list[SignalIn], list[Rejected]]:
    accepted: list[SignalIn] = []
    rejected: list[Rejected] = []
    for i, signal in enumerate(signals):
        reason = check_time(signal.ts, now) or check_attributes(signal)
        if reason is None:
            accepted.append(signal)
        else:
            rejected.append(Rejected(i, reason))
    return accepted, rejected
