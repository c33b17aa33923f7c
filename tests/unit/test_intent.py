"""Intent core: decay by kind and half-life, categories and prefixes, spikes, and `intent`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from customers.intent import (
    BASELINE_FLOOR,
    KINDS,
    SQUASH,
    ancestors,
    category_intent,
    category_score,
    intent,
    spike,
)
from customers.model import CategoryIntent, Signal
from customers.pbuy import load_prior

T0 = datetime(2024, 3, 4, 12, tzinfo=UTC)
PHONE = "electronics.smartphone"


def sig(kind: str, hours_ago: float, category: str | None = PHONE) -> Signal:
    return Signal(at=T0 - timedelta(hours=hours_ago), kind=kind, category=category)


def score_of(intensity: float) -> float:
    return round(1 - math.exp(-intensity / SQUASH), 4)


# --- decay by kind and half-life ---------------------------------------------------------------


@dataclass(frozen=True)
class DecayCase:
    name: str
    signals: list[Signal]
    expected_intensity: float


DECAY_CASES = [
    DecayCase("a fresh view weighs its full weight", [sig("product_view", 0)],
              KINDS["product_view"][0]),
    DecayCase("a view one half-life old weighs half", [sig("product_view", 48)],
              KINDS["product_view"][0] / 2),
    DecayCase("a cart add two half-lives old weighs a quarter", [sig("cart_add", 144)],
              KINDS["cart_add"][0] / 4),
    DecayCase("a checkout fades fast: six hours halve it", [sig("checkout", 6)],
              KINDS["checkout"][0] / 2),
    DecayCase("directions fade within hours", [sig("directions", 12)], KINDS["directions"][0] / 4),
    DecayCase("signals add up", [sig("product_view", 0), sig("cart_add", 0)],
              KINDS["product_view"][0] + KINDS["cart_add"][0]),
    DecayCase("a signal after now does not exist yet", [sig("cart_add", -1)], 0.0),
    DecayCase("an unknown kind carries no intent", [sig("app_open", 0)], 0.0),
]


@pytest.mark.parametrize("case", DECAY_CASES, ids=lambda c: c.name)
def test_intensity_decays_by_kind_and_half_life(case: DecayCase) -> None:
    got = {c.category: c.score for c in category_intent(case.signals, T0)}
    assert got.get(PHONE, 0.0) == pytest.approx(score_of(case.expected_intensity), abs=1e-4)


def test_a_cart_add_outweighs_a_view_which_outweighs_a_search() -> None:
    scores = [category_intent([sig(k, 0)], T0)[0].score
              for k in ("cart_add", "product_view", "search")]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3


@dataclass(frozen=True)
class CountCase:
    name: str
    signals: list[Signal]
    expected: dict[str, int]


COUNT_CASES = [
    CountCase("a view four half-lives old no longer counts", [sig("product_view", 4 * 48 + 1)],
              {}),
    CountCase("a view just under four half-lives still counts", [sig("product_view", 4 * 48 - 1)],
              {"electronics": 1, PHONE: 1}),
    CountCase("an old search is gone while an older cart add still counts",
              [sig("search", 30), sig("cart_add", 100)], {"electronics": 1, PHONE: 1}),
]


@pytest.mark.parametrize("case", COUNT_CASES, ids=lambda c: c.name)
def test_signals_still_counting(case: CountCase) -> None:
    assert {c.category: c.signals for c in category_intent(case.signals, T0)} == case.expected


# --- categories and prefixes -------------------------------------------------------------------


@dataclass(frozen=True)
class AncestorCase:
    name: str
    category: str
    expected: list[str]


ANCESTOR_CASES = [
    AncestorCase("a dotted path yields every ancestor, root first", "a.b.c", ["a", "a.b", "a.b.c"]),
    AncestorCase("a single segment is its own only ancestor", "shoes", ["shoes"]),
    AncestorCase("empty segments and spaces are dropped", " a..b. ", ["a", "a.b"]),
    AncestorCase("an id-like category is one segment", "2103807459595387724",
                 ["2103807459595387724"]),
]


@pytest.mark.parametrize("case", ANCESTOR_CASES, ids=lambda c: c.name)
def test_ancestors(case: AncestorCase) -> None:
    assert ancestors(case.category) == case.expected


def test_a_signal_feeds_its_category_and_every_parent() -> None:
    got = category_intent([sig("cart_add", 0), sig("product_view", 0, "electronics.audio")], T0)
    by = {c.category: c for c in got}
    assert set(by) == {"electronics", PHONE, "electronics.audio"}
    assert by["electronics"].signals == 2
    assert by["electronics"].score == pytest.approx(score_of(6.0 + 2.0), abs=1e-4)


def test_categories_come_strongest_first() -> None:
    got = category_intent([sig("product_view", 0, "home"), sig("cart_add", 0, "toys.lego")], T0)
    assert [c.category for c in got] == ["toys", "toys.lego", "home"]
    assert [c.score for c in got] == sorted((c.score for c in got), reverse=True)


def test_a_signal_without_category_feeds_no_category() -> None:
    assert category_intent([sig("cart_add", 0, None)], T0) == []


@dataclass(frozen=True)
class PrefixCase:
    name: str
    prefix: str
    expected: float


BY_CATEGORY = [CategoryIntent("electronics", 0.7, 2), CategoryIntent(PHONE, 0.6, 1)]
PREFIX_CASES = [
    PrefixCase("a parent prefix finds the parent's score", "electronics", 0.7),
    PrefixCase("a full path finds its own score", PHONE, 0.6),
    PrefixCase("a partial segment is not a prefix", "electro", 0.0),
    PrefixCase("a longer path than any known scores nothing", PHONE + ".iphone", 0.0),
    PrefixCase("a trailing dot is the same prefix", "electronics.", 0.7),
]


@pytest.mark.parametrize("case", PREFIX_CASES, ids=lambda c: c.name)
def test_category_score_matches_whole_segments(case: PrefixCase) -> None:
    assert category_score(BY_CATEGORY, case.prefix) == case.expected


# --- spikes -------------------------------------------------------------------------------------


def routine(days: int = 14) -> list[Signal]:
    """One view a day, every day: this customer's normal."""
    return [sig("product_view", 24 * d + 30) for d in range(days)]


BURST = [sig("product_view", 0.9), sig("product_view", 0.6), sig("cart_add", 0.5),
         sig("checkout", 0.2)]


def test_a_burst_above_the_routine_is_a_spike_since_its_crossing() -> None:
    s = spike(routine() + BURST, T0)
    assert s.active and s.ratio is not None and s.ratio >= 3
    # the two views alone stay under three times the floored baseline; the cart add crosses it
    assert s.since == T0 - timedelta(hours=0.5)


def test_the_same_burst_decays_away_within_days() -> None:
    assert spike(routine() + BURST, T0 + timedelta(days=4)).active is False


def test_the_routine_alone_is_no_spike() -> None:
    s = spike(routine(), T0)
    assert s.active is False and s.since is None


def test_a_first_ever_burst_counts_against_the_floor() -> None:
    s = spike(BURST, T0)
    assert s.active and s.ratio is not None
    assert s.ratio == pytest.approx(sum(
        KINDS[x.kind][0] * 0.5 ** ((T0 - x.at).total_seconds() / 3600 / KINDS[x.kind][1])
        for x in BURST) / BASELINE_FLOOR, rel=1e-3)


def test_a_single_view_of_a_new_customer_is_no_spike() -> None:
    assert spike([sig("product_view", 0)], T0).active is False


def test_a_heavy_routine_raises_the_bar() -> None:
    heavy = [sig("cart_add", 24 * d + 30) for d in range(14)] * 3
    assert spike(heavy + BURST, T0).active is False


def test_no_signals_no_spike_and_no_ratio() -> None:
    assert spike([], T0).ratio is None


def test_a_burst_older_than_the_lookback_is_no_spike_even_well_above_the_baseline() -> None:
    # Twenty cart adds 3.5 days ago still weigh three times their own trailing average, but
    # nothing happened within the lookback: the customer's new normal (this crashed the ping
    # path with an IndexError before).
    old_burst = [sig("cart_add", 84 + k / 60) for k in range(20)]
    s = spike(old_burst, T0)
    assert (s.active, s.since, s.ratio is not None and s.ratio >= 3) == (False, None, True)


# --- intent --------------------------------------------------------------------------------------


def test_intent_puts_everything_together_with_the_model_name() -> None:
    prior = load_prior()
    signals = routine() + BURST
    got = intent(signals, T0, prior)
    assert got.model == "prior" and got.intent_horizon_hours == 24
    assert got.p_buy == round(prior.predict(signals, T0), 4)
    assert got.by_category == category_intent(signals, T0)
    assert got.spike == spike(signals, T0)


@pytest.mark.parametrize("hours", [0.0, 1.5, 30.0, 24 * 400.0])
def test_without_signals_intent_is_what_the_model_says_at_any_instant(hours: float) -> None:
    """The answer for a customer without signals is computed once per model and reused: it
    must be what the whole computation gives at every instant."""
    prior = load_prior()
    at = T0 + timedelta(hours=hours)
    got = intent([], at, prior)
    assert got == intent([], T0 - timedelta(days=9), prior)
    assert got.p_buy == round(prior.predict([], at), 4)
    assert got.by_category == category_intent([], at) == []
    assert got.spike == spike([], at)
    # Another model's answer is its own.
    other = msgspec.structs.replace(prior, name="fitted", intercept=prior.intercept + 1.0)
    assert intent([], at, other).p_buy == round(other.predict([], at), 4) != got.p_buy
    assert intent([], at, prior) == got
