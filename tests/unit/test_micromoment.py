"""The micromoment classifier, driven as tables: a customer's signals, the place and kind of the
moment, the motion and the predicted next place in; know / go / do / buy (or none), the evidence
that decided it and since when, out.

The moment is at AT, Friday 2026-11-20 11:00 UTC, at STORE unless a case says otherwise. Signals
are placed by how many minutes before the moment they happened.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
import pytest

from customers.micromoment import (
    MAX_EVIDENCE,
    Motion,
    NextPlace,
    Place,
    PlaceMoment,
    bearing_deg,
    classify,
    motion_toward,
)
from customers.model import Micromoment, MicromomentKind, Signal
from geo.presence import Fix

NS = uuid5(NAMESPACE_URL, "https://contexto.test/micromoment")
AT = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
STORE = uuid5(NS, "store")
OTHER_STORE = uuid5(NS, "other-store")
PHONES = "electronics.smartphone"


def before(minutes: float) -> datetime:
    return AT - timedelta(minutes=minutes)


def sig(kind: str, minutes: float, *, category: str | None = None, store: UUID | None = None,
        query: str | None = None) -> Signal:
    return Signal(at=before(minutes), kind=kind, category=category, store_id=store, query=query)


def place(moment: PlaceMoment = "enter", *, stay_minutes: float | None = None,
          categories: tuple[str, ...] = ()) -> Place:
    stay = None if stay_minutes is None else stay_minutes * 60
    return Place(store_id=STORE, moment=moment, stay_seconds=stay, categories=categories)


def motion(*, speed: float = 1.4, heading: float | None = 180.0, bearing: float = 180.0,
           distance: float = 180.0, age_s: float = 5.0, span_s: float = 30.0) -> Motion:
    last = AT - timedelta(seconds=age_s)
    return Motion(since=last - timedelta(seconds=span_s), at=last, speed_mps=speed,
                  heading_deg=heading, bearing_deg=bearing, distance_m=distance)


def next_place(probability: float, *, store: UUID = STORE,
               minutes: float | None = None) -> NextPlace:
    return NextPlace(store_id=store, probability=probability,
                     at=None if minutes is None else before(minutes))


@dataclass(frozen=True)
class Case:
    id: str
    signals: tuple[Signal, ...] = ()
    place: Place | None = field(default_factory=place)
    motion: Motion | None = None
    next_place: NextPlace | None = None
    kind: MicromomentKind | None = None
    evidence: tuple[str, ...] = ()
    since: datetime | None = None

    def run(self, signals: tuple[Signal, ...] | None = None) -> Micromoment:
        return classify(self.signals if signals is None else signals, AT, place=self.place,
                        motion=self.motion, next_place=self.next_place)


CART_12 = sig("cart_add", 12, category=PHONES)
DIRECTIONS_8 = sig("directions", 8, store=STORE)
HOW_TO_20 = sig("search", 20, query="how to fix a bike chain")
VIEW_5 = sig("product_view", 5, category="electronics.tv")

CASES = [
    # buy
    Case("a cart add 12 minutes before entering is a buy moment", (CART_12,), kind="buy",
         evidence=("cart_add in electronics.smartphone 12 min before entering",),
         since=before(12)),
    Case("a checkout an hour before the dwell is a buy moment",
         (sig("checkout", 60),), place("dwell", stay_minutes=2), kind="buy",
         evidence=("checkout 60 min before the dwell",), since=before(60)),
    Case("a cart add before leaving the store is still a buy moment",
         (CART_12,), place("exit", stay_minutes=3), kind="buy",
         evidence=("cart_add in electronics.smartphone 12 min before leaving",), since=before(12)),
    Case("a cart add exactly two hours old no longer counts", (sig("cart_add", 120),)),
    Case("a cart add a second less than two hours old still counts",
         (sig("cart_add", 120 - 1 / 60),), kind="buy",
         evidence=("cart_add 119 min before entering",), since=before(120 - 1 / 60)),
    Case("a cart add at the moment's very instant counts", (sig("cart_add", 0),), kind="buy",
         evidence=("cart_add 0 s before entering",), since=AT),
    Case("a cart add after the moment is never read", (sig("cart_add", -1),)),
    Case("a purchase since the cart add closes it",
         (CART_12, sig("purchase", 5, category=PHONES))),
    Case("a purchase without a category closes any cart add", (CART_12, sig("purchase", 5))),
    Case("a purchase in an unrelated category leaves the cart add open",
         (CART_12, sig("purchase", 5, category="grocery")), kind="buy",
         evidence=("cart_add in electronics.smartphone 12 min before entering",),
         since=before(12)),
    Case("a purchase before the cart add does not close it",
         (sig("purchase", 30), CART_12), kind="buy",
         evidence=("cart_add in electronics.smartphone 12 min before entering",),
         since=before(12)),
    Case("a cart add naming another store does not speak for this one",
         (sig("cart_add", 12, store=OTHER_STORE),)),
    Case("a cart add naming this store speaks for it",
         (sig("cart_add", 12, store=STORE),), kind="buy",
         evidence=("cart_add 12 min before entering",), since=before(12)),
    Case("a cart add in a category the place does not sell does not count",
         (CART_12,), place(categories=("grocery",))),
    Case("a cart add under a category the place sells counts",
         (CART_12,), place(categories=("Electronics",)), kind="buy",
         evidence=("cart_add in electronics.smartphone 12 min before entering",),
         since=before(12)),
    Case("a cart add in a broader category than the place's counts",
         (sig("cart_add", 12, category="electronics"),), place(categories=(PHONES,)),
         kind="buy", evidence=("cart_add in electronics 12 min before entering",),
         since=before(12)),
    Case("a category that only shares letters with the place's is unrelated",
         (sig("cart_add", 12, category="electronicsx"),), place(categories=("electronics",))),
    Case("a cart add without a category counts wherever the place's categories are known",
         (sig("cart_add", 12),), place(categories=("grocery",)), kind="buy",
         evidence=("cart_add 12 min before entering",), since=before(12)),
    Case("three cart adds in one category are one piece of evidence with their count",
         (sig("cart_add", 30, category=PHONES), sig("cart_add", 2, category=PHONES),
          sig("cart_add", 9, category=PHONES)), kind="buy",
         evidence=("3 × cart_add in electronics.smartphone, the latest 2 min before entering",),
         since=before(30)),
    Case("a cart add outranks directions to this store", (DIRECTIONS_8, CART_12), kind="buy",
         evidence=("cart_add in electronics.smartphone 12 min before entering",),
         since=before(12)),
    # go: signals
    Case("directions to this store, then entering, are a go moment", (DIRECTIONS_8,),
         kind="go", evidence=("directions to this store 8 min before entering",),
         since=before(8)),
    Case("directions to this store make a predicted arrival a go moment", (DIRECTIONS_8,),
         place("predicted_next"), kind="go", evidence=("directions to this store 8 min ago",),
         since=before(8)),
    Case("the store locator on this store is a go moment", (sig("store_locator", 20, store=STORE),),
         kind="go", evidence=("store_locator for this store 20 min before entering",),
         since=before(20)),
    Case("directions to another store are no go here", (sig("directions", 8, store=OTHER_STORE),)),
    Case("directions naming no store are no go at a place", (sig("directions", 8),)),
    Case("directions an hour old no longer count", (sig("directions", 60, store=STORE),)),
    Case("directions are no go once the customer dwells: they have arrived", (DIRECTIONS_8,),
         place("dwell", stay_minutes=3)),
    Case("directions are no go when the customer leaves", (DIRECTIONS_8,),
         place("exit", stay_minutes=3)),
    # go: motion
    Case("walking toward the store 180 m away is a go moment", motion=motion(), kind="go",
         evidence=("heading toward the store at 1.4 m/s, 180 m away",),
         since=AT - timedelta(seconds=35)),
    Case("driving toward the store 1.5 km away is a go moment",
         motion=motion(speed=13.9, distance=1500.0), kind="go",
         evidence=("heading toward the store at 13.9 m/s, 1500 m away",),
         since=AT - timedelta(seconds=35)),
    Case("heading 40° off the store's bearing is still toward it",
         motion=motion(heading=220.0), kind="go",
         evidence=("heading toward the store at 1.4 m/s, 180 m away",),
         since=AT - timedelta(seconds=35)),
    Case("the bearing wraps around north: 350° is 30° off 20°",
         motion=motion(heading=350.0, bearing=20.0), kind="go",
         evidence=("heading toward the store at 1.4 m/s, 180 m away",),
         since=AT - timedelta(seconds=35)),
    Case("heading 90° off the store's bearing is passing by", motion=motion(heading=270.0)),
    Case("heading away from the store is no go", motion=motion(heading=0.0)),
    Case("60 m from the store is arriving, not on the way", motion=motion(distance=60.0)),
    Case("3 km from the store is too far for a heading to mean it", motion=motion(distance=3000.0)),
    Case("0.3 m/s is standing, not going", motion=motion(speed=0.3)),
    Case("50 m/s is not a shopper on the way", motion=motion(speed=50.0)),
    Case("a motion three minutes old says nothing of the moment", motion=motion(age_s=180.0)),
    Case("a motion measured after the moment is never read", motion=motion(age_s=-10.0)),
    Case("a motion without a heading is no go", motion=motion(heading=None)),
    Case("approaching is no go at a dwell", place=place("dwell", stay_minutes=2),
         motion=motion()),
    # go: the predicted next place
    Case("a predicted next place of this store is a go moment",
         place=place("predicted_next"), next_place=next_place(0.72, minutes=3), kind="go",
         evidence=("the predicted next place is this store (p = 0.72)",), since=before(3)),
    Case("a prediction without its own instant dates from the moment",
         place=place("predicted_next"), next_place=next_place(0.5), kind="go",
         evidence=("the predicted next place is this store (p = 0.50)",), since=AT),
    Case("a prediction under even odds is no go", place=place("predicted_next"),
         next_place=next_place(0.49)),
    Case("a prediction of another store is no go here", next_place=next_place(0.9,
                                                                              store=OTHER_STORE)),
    Case("a prediction made after the moment is never read",
         next_place=next_place(0.9, minutes=-1)),
    Case("every go fact is evidence, the most recent first",
         (DIRECTIONS_8,), motion=motion(), next_place=next_place(0.8, minutes=30), kind="go",
         evidence=("heading toward the store at 1.4 m/s, 180 m away",
                   "directions to this store 8 min before entering",
                   "the predicted next place is this store (p = 0.80)"),
         since=before(30)),
    Case("going outranks doing", (HOW_TO_20, DIRECTIONS_8), kind="go",
         evidence=("directions to this store 8 min before entering",), since=before(8)),
    # do
    Case("a how-to search 20 minutes before entering is a do moment", (HOW_TO_20,), kind="do",
         evidence=('searched "how to fix a bike chain" 20 min before entering',),
         since=before(20)),
    Case("how-to phrasing is found in any case",
         (sig("search", 5, query="DIY Shelves"), sig("search", 90, query="Recipes with leek")),
         kind="do", evidence=('searched "DIY Shelves" 5 min before entering',
                              'searched "Recipes with leek" 90 min before entering'),
         since=before(90)),
    Case("a how-to search two hours old no longer counts",
         (sig("search", 120, query="how to tile a bathroom"),)),
    Case("a question that is not how-to is research", (sig("search", 5, query="how tall is it"),),
         kind="know", evidence=('search "how tall is it" 5 min before entering',),
         since=before(5)),
    Case("a dwell of 14 minutes is a do moment", place=place("dwell", stay_minutes=14),
         kind="do", evidence=("at the store for 14 min",), since=before(14)),
    Case("a dwell a second short of ten minutes is not", place=place("dwell",
                                                                     stay_minutes=10 - 1 / 60)),
    Case("leaving after a 25-minute stay is a do moment", place=place("exit", stay_minutes=25),
         kind="do", evidence=("at the store for 25 min",), since=before(25)),
    Case("a long stay outranks research", (VIEW_5,), place("dwell", stay_minutes=30), kind="do",
         evidence=("at the store for 30 min",), since=before(30)),
    Case("a cart add outranks a long stay", (CART_12,), place("dwell", stay_minutes=30),
         kind="buy", evidence=("cart_add in electronics.smartphone 12 min before the dwell",),
         since=before(12)),
    # know
    Case("a product view 5 minutes before entering is a know moment", (VIEW_5,), kind="know",
         evidence=("product_view in electronics.tv 5 min before entering",), since=before(5)),
    Case("a search is a know moment", (sig("search", 40, query="running shoes", category="sport"),),
         kind="know", evidence=('search "running shoes" in sport 40 min before entering',),
         since=before(40)),
    Case("a product view an hour old no longer counts", (sig("product_view", 60),)),
    Case("research in two categories is two pieces of evidence, the most recent first",
         (VIEW_5, sig("product_view", 50, category="home"), sig("product_view", 7,
                                                                 category="electronics.tv")),
         kind="know", evidence=("2 × product_view in electronics.tv, the latest 5 min before "
                                "entering", "product_view in home 50 min before entering"),
         since=before(50)),
    # nothing
    Case("no signals are no micromoment"),
    Case("a purchase alone is no micromoment", (sig("purchase", 3),)),
    Case("a kind the contract does not name carries no micromoment", (sig("app_open", 1),)),
    # without a place: the context endpoint and the offline evaluation
    Case("without a place a cart add is told relative to now", (CART_12,), None, kind="buy",
         evidence=("cart_add in electronics.smartphone 12 min ago",), since=before(12)),
    Case("without a place directions to any store are a go moment",
         (sig("directions", 8, store=OTHER_STORE),), None, kind="go",
         evidence=("directions to a store 8 min ago",), since=before(8)),
    Case("without a place, signals naming any store speak",
         (sig("product_view", 3, store=OTHER_STORE),), None, kind="know",
         evidence=("product_view 3 min ago",), since=before(3)),
]  # fmt: skip


def expected(case: Case) -> Micromoment:
    return Micromoment(kind=case.kind, evidence=list(case.evidence), since=case.since)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_classify_names_the_micromoment_its_evidence_and_since_when(case: Case) -> None:
    assert case.run() == expected(case)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_order_of_the_signals_does_not_matter(case: Case) -> None:
    assert case.run(case.signals[::-1]) == case.run()


LATER_KINDS = ("cart_add", "checkout", "purchase", "directions", "store_locator", "search",
               "product_view")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_signals_after_the_moment_change_nothing(case: Case) -> None:
    rng = random.Random(case.id)
    later = tuple(
        Signal(at=AT + timedelta(seconds=rng.randint(1, 7200)), kind=rng.choice(LATER_KINDS),
               category=rng.choice([None, PHONES, "electronics", "grocery"]),
               store_id=rng.choice([None, STORE, OTHER_STORE]),
               query=rng.choice([None, "how to cook rice", "phone case"]))
        for _ in range(20))
    assert case.run(case.signals + later) == case.run()


def test_the_evidence_lists_the_most_recent_facts_and_since_counts_them_all() -> None:
    views = tuple(sig("product_view", 2 + i, category=f"aisle{i}") for i in range(MAX_EVIDENCE + 2))
    result = classify(views, AT, place=place())
    assert (result.evidence, result.since) == (
        [f"product_view in aisle{i} {2 + i} min before entering" for i in range(MAX_EVIDENCE)],
        before(2 + MAX_EVIDENCE + 1))


@pytest.mark.parametrize(("call", "message"), [
    pytest.param(lambda: classify((), AT.replace(tzinfo=None), place=place()), "UTC offset",
                 id="a naive instant is refused"),
    pytest.param(lambda: classify((), AT, motion=motion()), "give the place",
                 id="a motion without a place is refused"),
    pytest.param(lambda: classify((), AT, next_place=next_place(0.9)), "give the place",
                 id="a next place without a place is refused"),
])
def test_a_call_that_cannot_be_answered_is_refused(call: Callable[[], Micromoment],
                                                  message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------- motion

STORE_LAT, STORE_LNG = 48.8606, 2.3376
M_PER_DEG = 111_195.0


def point(north_m: float, east_m: float) -> tuple[float, float]:
    """The point `north_m` and `east_m` from the store's centre."""
    lat = STORE_LAT + north_m / M_PER_DEG
    return lat, STORE_LNG + east_m / (M_PER_DEG * math.cos(math.radians(STORE_LAT)))


def fix(seconds_before: float, north_m: float, east_m: float, accuracy: float = 10.0) -> Fix:
    lat, lng = point(north_m, east_m)
    return Fix(at=AT - timedelta(seconds=seconds_before), lat=lat, lng=lng, accuracy_m=accuracy)


# Walking north at 1.4 m/s toward the store, from 242 m south to 200 m south of it, in 30 s.
WALK_NORTH = (fix(30, -242, 0), fix(20, -228, 0), fix(10, -214, 0), fix(0, -200, 0))


@dataclass(frozen=True)
class MotionCase:
    id: str
    fixes: tuple[Fix, ...]
    until: datetime = AT
    # speed m/s, heading°, bearing°, distance m, first fix s before AT, last fix s before AT
    expected: tuple[float, float | None, float, float, float, float] | None = None


MOTION_CASES = [
    MotionCase("walking north toward a store to the north", WALK_NORTH,
               expected=(1.4, 0.0, 0.0, 200.0, 30, 0)),
    MotionCase("the fixes may come in any order", WALK_NORTH[::-1],
               expected=(1.4, 0.0, 0.0, 200.0, 30, 0)),
    MotionCase("fixes after the moment are never read", WALK_NORTH,
               until=AT - timedelta(seconds=10), expected=(1.4, 0.0, 0.0, 214.0, 30, 10)),
    MotionCase("walking west, the store lies to the east",
               (fix(20, 0, -300), fix(0, 0, -328)), expected=(1.4, 270.0, 90.0, 328.0, 20, 0)),
    MotionCase("only the last minute of fixes measures the motion",
               (fix(300, -900, 0), fix(50, -270, 0), fix(0, -200, 0)),
               expected=(1.4, 0.0, 0.0, 200.0, 50, 0)),
    MotionCase("fixes closer than their error radii give a speed but no heading",
               (fix(30, -200, 0, accuracy=20.0), fix(0, -170, 0, accuracy=20.0)),
               expected=(1.0, None, 0.0, 170.0, 30, 0)),
    MotionCase("one fix is no motion", (fix(0, -200, 0),)),
    MotionCase("fixes 5 s apart are too close in time to measure", (fix(5, -207, 0),
                                                                    fix(0, -200, 0))),
    MotionCase("no fix before the moment is no motion", WALK_NORTH,
               until=AT - timedelta(seconds=31)),
]  # fmt: skip


@pytest.mark.parametrize("case", MOTION_CASES, ids=[c.id for c in MOTION_CASES])
def test_motion_toward_measures_speed_heading_bearing_and_distance(case: MotionCase) -> None:
    got = motion_toward(case.fixes, STORE_LAT, STORE_LNG, until=case.until)
    if case.expected is None:
        assert got is None
        return
    assert got is not None
    speed, heading, bearing, distance, first_s, last_s = case.expected
    assert (round(got.speed_mps, 1), got.heading_deg is None, round(got.bearing_deg) % 360,
            round(got.distance_m), got.since, got.at) == (
        speed, heading is None, bearing, distance, AT - timedelta(seconds=first_s),
        AT - timedelta(seconds=last_s))
    if heading is not None:
        assert got.heading_deg is not None
        assert abs((got.heading_deg - heading + 180) % 360 - 180) < 0.5


@pytest.mark.parametrize(("to", "bearing"), [
    pytest.param((100.0, 0.0), 0.0, id="due north is 0°"),
    pytest.param((0.0, 100.0), 90.0, id="due east is 90°"),
    pytest.param((-100.0, 0.0), 180.0, id="due south is 180°"),
    pytest.param((0.0, -100.0), 270.0, id="due west is 270°"),
    pytest.param((100.0, 100.0), 45.0, id="north-east is 45°"),
])
def test_bearing_deg_reads_clockwise_from_north(to: tuple[float, float], bearing: float) -> None:
    got = bearing_deg(STORE_LAT, STORE_LNG, *point(*to))
    assert abs((got - bearing + 180) % 360 - 180) < 0.5


def test_a_walk_toward_the_store_then_entering_is_go_with_the_motion_as_evidence() -> None:
    moving = motion_toward(WALK_NORTH, STORE_LAT, STORE_LNG, until=AT)
    result = classify((), AT, place=place(), motion=moving)
    assert result == Micromoment(kind="go", since=AT - timedelta(seconds=30), evidence=[
        "heading toward the store at 1.4 m/s, 200 m away"])


def test_a_micromoment_serialises_as_the_contract_shows_it() -> None:
    result = Case("", (DIRECTIONS_8,)).run()
    assert msgspec.json.decode(msgspec.json.encode(result)) == {
        "kind": "go", "evidence": ["directions to this store 8 min before entering"],
        "since": "2026-11-20T10:52:00Z"}
