"""Micromoments: which kind of moment this is for the customer (Google's I want to know, to go,
to do, to buy), from their recent signals, their motion, the place and their predicted next place.

One rule: the first kind in `PRECEDENCE` with any evidence decides; its evidence is every fact
that supports it, and `since` is the earliest of those facts. Nothing after the moment counts:
a signal, a fix or a prediction later than the moment is never read.

Pure: no clock (the moment's instant `at` is a parameter), no I/O. The shell gathers the
customer's signals, the fixes of the batch and the store's centre (`motion_toward`), the
predicted next place, and calls `classify`; `customers.context.moment_context` then gives the
decision rules their view. Without a place (the context endpoint, the offline evaluation) only
the signals speak, and directions to any store are a `go`.

    kind  evidence, within its window before the moment                          applies at
    buy   a cart_add or checkout within BUY_WINDOW that no purchase since has      every moment
          closed (a purchase of the same category, or when either has none)
    go    directions or store_locator naming this store within GO_WINDOW;         enter,
          motion toward the store: fresh (MOTION_MAX_AGE), at walking to driving   predicted_next,
          speed (APPROACH_SPEED_M_S), heading within APPROACH_MAX_OFF_DEG of its    no place
          bearing, APPROACH_DISTANCE_M away (nearer is arriving, not on the way:
          everybody entering heads for the door);
          the predicted next place is this store, p ≥ NEXT_PLACE_MIN_PROBABILITY
    do    a how-to search (`HOW_TO`: "how to …", "diy", "recipe" …) within          every moment;
          DO_WINDOW; a stay at the store of DO_MIN_STAY or longer (someone busy     the stay: dwell,
          there: a meal, a class, a repair, not a purchase, which is buy's)        exit
    know  a search (not how-to) or a product_view within KNOW_WINDOW               every moment

Precedence buy > go > do > know: buying is the last step of the funnel and the one an offer can
act on at once; going commits the customer to this place, doing may happen anywhere; knowing is
research with no commitment yet. Windows are half-open: a signal exactly a window old no longer
counts, one at the moment's instant does.

Which signals speak of the place: one that names another store (`store_id`) does not, and when
the place's categories are known, one whose category is unrelated to all of them does not (a
category is related to another when one is the other or lies under it along the dots; case is
ignored). A signal naming no store or no category always speaks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final, Literal, NamedTuple
from uuid import UUID

import msgspec

from customers.model import (
    CART_ADD,
    CHECKOUT,
    DIRECTIONS,
    PRODUCT_VIEW,
    PURCHASE,
    SEARCH,
    STORE_LOCATOR,
    Micromoment,
    MicromomentKind,
    Signal,
)
from geo.fences import haversine_m
from geo.presence import Fix

# A basket built on the sofa, then a trip to the shop: two hours still reads as "ready to buy".
BUY_WINDOW: Final = timedelta(hours=2)
# Directions are asked for a trip about to start; an hour covers a long drive.
GO_WINDOW: Final = timedelta(hours=1)
# A project ("how to tile a bathroom") takes the afternoon's planning and shopping.
DO_WINDOW: Final = timedelta(hours=2)
# Research is a moment only while it is going on.
KNOW_WINDOW: Final = timedelta(hours=1)
# Ten minutes inside is more than picking something up: the customer is doing something there.
DO_MIN_STAY: Final = timedelta(minutes=10)
# The motion must describe the moment, not the walk before the last stop.
MOTION_MAX_AGE: Final = timedelta(minutes=2)
# From a slow walk (0.5 m/s; standing and browsing is slower) to a fast road (144 km/h).
APPROACH_SPEED_M_S: Final = (0.5, 40.0)
# Streets bend: 45° either side of the straight line is still heading there.
APPROACH_MAX_OFF_DEG: Final = 45.0
# Under 100 m is the door or the car park (arriving); past 2 km a heading points at many places.
APPROACH_DISTANCE_M: Final = (100.0, 2_000.0)
# As the decision rules' default for predictions: more likely than not.
NEXT_PLACE_MIN_PROBABILITY: Final = 0.5
# Motion is measured over the last minute of fixes, over at least 10 s.
MOTION_WINDOW: Final = timedelta(seconds=60)
MOTION_MIN_SPAN: Final = timedelta(seconds=10)
# The evidence lists the most recent facts; `since` still counts every one.
MAX_EVIDENCE: Final = 5

PRECEDENCE: Final[tuple[MicromomentKind, ...]] = ("buy", "go", "do", "know")
# English how-to phrasing; searches in other words count as research (know).
HOW_TO: Final = re.compile(
    r"\b(how (to|do|can|does|should)|diy|tutorial|step by step|recipes?|guide to|ideas for)\b")

PlaceMoment = Literal["enter", "dwell", "exit", "predicted_next"]


class Place(msgspec.Struct, kw_only=True, frozen=True):
    """Where and how the moment happens: at a store, by a presence event or a prediction."""

    store_id: UUID
    moment: PlaceMoment
    stay_seconds: float | None = None  # dwell: since entering; exit: from entry to exit
    categories: tuple[str, ...] = ()  # category paths the place sells; () when unknown


class NextPlace(msgspec.Struct, kw_only=True, frozen=True):
    """The customer's predicted next place; `at`: when it was predicted (None: at the moment)."""

    store_id: UUID
    probability: float
    at: datetime | None = None


class Motion(msgspec.Struct, kw_only=True, frozen=True):
    """How the device moves relative to a store, from its last fixes (`motion_toward`)."""

    since: datetime  # the first fix used
    at: datetime  # the last fix used
    speed_mps: float
    heading_deg: float | None  # None when the fixes moved less than their own error
    bearing_deg: float  # from the last fix to the store's centre, 0 = north, clockwise
    distance_m: float  # from the last fix to the store's centre


class _Fact(NamedTuple):
    first: datetime  # the earliest signal or fix behind it
    last: datetime  # the latest: the most recent facts are listed first
    text: str


def classify(
    signals: Sequence[Signal],
    at: datetime,
    *,
    place: Place | None = None,
    motion: Motion | None = None,
    next_place: NextPlace | None = None,
) -> Micromoment:
    """The micromoment of the moment at `at` (with its place, when there is one)."""
    if at.tzinfo is None:
        raise ValueError("at needs a UTC offset")
    if place is None and (motion is not None or next_place is not None):
        raise ValueError("motion and a next place are relative to a place; give the place")
    told = _Told(place, at)
    past = [s for s in signals if s.at <= at]
    speaking = [s for s in past if told.speaks(s)]
    rules: dict[MicromomentKind, Callable[[], list[_Fact]]] = {
        "buy": lambda: _buy(speaking, past, told),
        "go": lambda: _go(speaking, motion, next_place, told),
        "do": lambda: _do(speaking, told),
        "know": lambda: _know(speaking, told),
    }
    for kind in PRECEDENCE:
        facts = rules[kind]()
        if facts:
            shown = sorted(facts, key=lambda f: f.last, reverse=True)[:MAX_EVIDENCE]
            return Micromoment(kind=kind, evidence=[f.text for f in shown],
                               since=min(f.first for f in facts))
    return Micromoment(kind=None, evidence=[])


def motion_toward(fixes: Iterable[Fix], lat: float, lng: float, *,
                  until: datetime) -> Motion | None:
    """The device's motion relative to the point (a store's centre), from its fixes up to
    `until`: speed and heading over the last MOTION_WINDOW of fixes (at least MOTION_MIN_SPAN),
    bearing and distance from the last fix. None without two fixes far enough apart in time."""
    usable = sorted((f for f in fixes if f.at <= until), key=lambda f: f.at)
    if not usable:
        return None
    last = usable[-1]
    first = next((f for f in usable if f.at >= last.at - MOTION_WINDOW), last)
    span = (last.at - first.at).total_seconds()
    if span < MOTION_MIN_SPAN.total_seconds():
        return None
    moved = haversine_m(first.lat, first.lng, last.lat, last.lng)
    # Two fixes closer than their error radii say nothing about the direction.
    heading = (bearing_deg(first.lat, first.lng, last.lat, last.lng)
               if moved > first.accuracy_m + last.accuracy_m else None)
    return Motion(since=first.at, at=last.at, speed_mps=moved / span, heading_deg=heading,
                  bearing_deg=bearing_deg(last.lat, last.lng, lat, lng),
                  distance_m=haversine_m(last.lat, last.lng, lat, lng))


def bearing_deg(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """The initial great-circle bearing from the first point to the second, 0..360 from north."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lng2 - lng1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def related(a: str, b: str) -> bool:
    """One category is the other or lies under it along the dots, ignoring case."""
    a, b = a.casefold(), b.casefold()
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


class _Told:
    """The moment's place and instant, and how a fact's time is told relative to them."""

    _BEFORE: Final = {"enter": "before entering", "dwell": "before the dwell",
                      "exit": "before leaving", "predicted_next": "ago"}

    def __init__(self, place: Place | None, at: datetime) -> None:
        self.place = place
        self.at = at
        self.before = "ago" if place is None else self._BEFORE[place.moment]

    def speaks(self, signal: Signal) -> bool:
        place = self.place
        if place is None:
            return True
        if signal.store_id is not None and signal.store_id != place.store_id:
            return False
        if signal.category is None or not place.categories:
            return True
        return any(related(signal.category, c) for c in place.categories)

    def within(self, signal: Signal, window: timedelta) -> bool:
        return signal.at > self.at - window

    def when(self, instant: datetime) -> str:
        return f"{_duration(self.at - instant)} {self.before}"


def _buy(speaking: list[Signal], past: list[Signal], told: _Told) -> list[_Fact]:
    purchases = [s for s in past if s.kind == PURCHASE]
    ready = [s for s in speaking
             if s.kind in (CART_ADD, CHECKOUT) and told.within(s, BUY_WINDOW)
             and not any(_closes(p, s) for p in purchases)]
    return _grouped(ready, told, _label)


def _closes(purchase: Signal, ready: Signal) -> bool:
    if purchase.at < ready.at:
        return False
    if purchase.category is None or ready.category is None:
        return True
    return related(purchase.category, ready.category)


def _go(speaking: list[Signal], motion: Motion | None, next_place: NextPlace | None,
        told: _Told) -> list[_Fact]:
    place = told.place
    if place is not None and place.moment not in ("enter", "predicted_next"):
        return []
    asked = [s for s in speaking if s.kind in (DIRECTIONS, STORE_LOCATOR)
             and told.within(s, GO_WINDOW)
             and (place is None or s.store_id == place.store_id)]
    where = "a store" if place is None else "this store"
    facts = _grouped(asked, told, lambda s: (f"directions to {where}" if s.kind == DIRECTIONS
                                             else f"{s.kind} for {where}"))
    if motion is not None and _approaching(motion, told.at):
        facts.append(_Fact(motion.since, motion.at,
                           f"heading toward the store at {motion.speed_mps:.1f} m/s, "
                           f"{motion.distance_m:.0f} m away"))
    if (next_place is not None and place is not None and next_place.store_id == place.store_id
            and next_place.probability >= NEXT_PLACE_MIN_PROBABILITY
            and (next_place.at is None or next_place.at <= told.at)):
        predicted = next_place.at or told.at
        facts.append(_Fact(predicted, predicted, "the predicted next place is this store "
                                                 f"(p = {next_place.probability:.2f})"))
    return facts


def _approaching(motion: Motion, at: datetime) -> bool:
    if motion.at > at or at - motion.at > MOTION_MAX_AGE or motion.heading_deg is None:
        return False
    slowest, fastest = APPROACH_SPEED_M_S
    nearest, farthest = APPROACH_DISTANCE_M
    off = abs((motion.heading_deg - motion.bearing_deg + 180.0) % 360.0 - 180.0)
    return (slowest <= motion.speed_mps <= fastest and nearest <= motion.distance_m <= farthest
            and off <= APPROACH_MAX_OFF_DEG)


def _do(speaking: list[Signal], told: _Told) -> list[_Fact]:
    how_to = [s for s in speaking if s.kind == SEARCH and _is_how_to(s)
              and told.within(s, DO_WINDOW)]
    facts = [_Fact(s.at, s.at, f'searched "{s.query}" {told.when(s.at)}') for s in how_to]
    place = told.place
    if (place is not None and place.moment in ("dwell", "exit") and place.stay_seconds is not None
            and place.stay_seconds >= DO_MIN_STAY.total_seconds()):
        stay = timedelta(seconds=place.stay_seconds)
        entered = told.at - stay
        facts.append(_Fact(entered, told.at, f"at the store for {_duration(stay)}"))
    return facts


def _know(speaking: list[Signal], told: _Told) -> list[_Fact]:
    research = [s for s in speaking if told.within(s, KNOW_WINDOW) and (
        s.kind == PRODUCT_VIEW or (s.kind == SEARCH and not _is_how_to(s)))]
    return _grouped(research, told, _label)


def _is_how_to(signal: Signal) -> bool:
    return signal.query is not None and HOW_TO.search(signal.query.casefold()) is not None


def _label(signal: Signal) -> str:
    """What a group of signals is: their kind, the search's words, the category."""
    query = f' "{signal.query}"' if signal.kind == SEARCH and signal.query else ""
    category = f" in {signal.category}" if signal.category else ""
    return f"{signal.kind}{query}{category}"


def _grouped(signals: list[Signal], told: _Told, label: Callable[[Signal], str]) -> list[_Fact]:
    """One fact per kind and category, told by its latest signal (and its count when several)."""
    groups: dict[tuple[str, str | None], list[Signal]] = {}
    for s in sorted(signals, key=lambda s: s.at):
        groups.setdefault((s.kind, s.category), []).append(s)
    facts = []
    for group in groups.values():
        latest = group[-1]
        if len(group) == 1:
            text = f"{label(latest)} {told.when(latest.at)}"
        else:
            text = f"{len(group)} × {label(latest)}, the latest {told.when(latest.at)}"
        facts.append(_Fact(group[0].at, latest.at, text))
    return facts


def _duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
