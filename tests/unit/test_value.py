"""The value matrix's pure core as tables: histories from purchases, the BG/NBD and Gamma-Gamma
expectations under fixed parameters, quintile levels, the matrix's crossings, and the tier in the
`audience` rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from campaigns.audience import audience_failure
from campaigns.model import Audience
from customers.context import MomentContext
from customers.model import ValueTier
from customers.value import (
    PRIOR,
    History,
    Purchase,
    Thresholds,
    expected_purchases,
    expected_spend,
    histories,
    level,
    matrix,
    value_matrix,
)

UNTIL = datetime(2026, 6, 30, tzinfo=UTC)


def day(n: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, 1, hour, tzinfo=UTC) + timedelta(days=n)


@pytest.mark.parametrize(("name", "purchases", "expected"), [
    ("one purchase is no repeat and its amount is the history",
     [(day(0), 10.0)], History(0, 0.0, (UNTIL - day(0, 0)) / timedelta(days=1), 10.0, 10.0)),
    ("two purchases on one day count as one purchase day of their sum",
     [(day(0, 9), 10.0), (day(0, 18), 5.0)],
     History(0, 0.0, (UNTIL - day(0, 0)) / timedelta(days=1), 15.0, 15.0)),
    ("repeat days count from the first, recency is first to last day",
     [(day(0), 10.0), (day(10), 20.0), (day(30), 30.0)],
     History(2, 30.0, (UNTIL - day(0, 0)) / timedelta(days=1), 20.0, 60.0)),
    ("purchases after the instant are ignored",
     [(day(0), 10.0), (UNTIL + timedelta(days=1), 99.0)],
     History(0, 0.0, (UNTIL - day(0, 0)) / timedelta(days=1), 10.0, 10.0)),
])
def test_histories(name: str, purchases: list[tuple[datetime, float]],
                   expected: History) -> None:
    got = histories([Purchase("c", at, amount) for at, amount in purchases], UNTIL)
    assert got == {"c": expected}, name


def test_only_purchases_after_the_instant_make_no_history() -> None:
    assert histories([Purchase("c", UNTIL + timedelta(hours=1), 5.0)], UNTIL) == {}


def h(frequency: int, recency: float, age: float, monetary: float = 20.0) -> History:
    return History(frequency, recency, age, monetary, monetary * (frequency + 1))


@pytest.mark.parametrize(("name", "more", "less"), [
    ("a frequent buyer is expected to buy more than a one-time buyer",
     h(10, 170, 180), h(0, 0, 180)),
    ("a recent repeat buyer is expected to buy more than one silent for months",
     h(5, 175, 180), h(5, 20, 180)),
    ("a newcomer is expected to buy more than a one-time buyer silent for a year",
     None, h(0, 0, 365)),
])
def test_expected_purchases_order(name: str, more: History | None, less: History) -> None:
    assert expected_purchases(PRIOR, more, 90) > expected_purchases(PRIOR, less, 90), name


def test_expected_purchases_grow_with_the_horizon() -> None:
    history = h(3, 100, 180)
    assert 0 < expected_purchases(PRIOR, history, 30) < expected_purchases(PRIOR, history, 90)


@pytest.mark.parametrize(("name", "history", "low", "high"), [
    ("no history gives the population mean", None, 33.3, 33.4),
    ("one small purchase pulls the spend below the population mean", h(0, 0, 10, 5.0), 5.0, 33.3),
    ("many big purchase days pull it toward the customer's own mean", h(20, 170, 180, 100.0),
     90.0, 100.0),
])
def test_expected_spend(name: str, history: History | None, low: float, high: float) -> None:
    assert low < expected_spend(PRIOR, history) < high, name


CUTS = (10.0, 100.0)


@pytest.mark.parametrize(("name", "amount", "cut", "expected"), [
    ("nothing spent is low whatever the thresholds", 0.0, CUTS, "low"),
    ("below the lower cut is low", 9.99, CUTS, "low"),
    ("at the lower cut is medium", 10.0, CUTS, "medium"),
    ("at the upper cut is high", 100.0, CUTS, "high"),
    ("without a population everyone is low", 1e9, None, "low"),
])
def test_levels(name: str, amount: float, cut: tuple[float, float] | None,
                expected: ValueTier) -> None:
    assert level(amount, cut) == expected, name


@pytest.mark.parametrize(("historical", "potential", "tier"), [
    ("high", "high", "high"),
    ("high", "medium", "medium"),  # a big past spender whose potential has faded
    ("medium", "high", "high"),
    ("high", "low", "medium"),
    ("low", "high", "medium"),
    ("medium", "medium", "medium"),
    ("medium", "low", "low"),
    ("low", "medium", "low"),
    ("low", "low", "low"),
])
def test_the_matrix_crossings(historical: ValueTier, potential: ValueTier,
                              tier: ValueTier) -> None:
    assert matrix(historical, potential) == tier


def test_a_population_splits_into_fifths_and_a_newcomer_has_low_history() -> None:
    population = {f"c{i}": h(i % 6, 170.0 + 2 * (i % 6), 180, 10.0 + i) for i in range(30)}
    got = value_matrix(PRIOR, population)
    assert isinstance(got.cuts, Thresholds) and got.cuts.historical is not None
    historical = [v.historical for v in got.values.values()]
    # The top fifth (6 of 30) high, the bottom fifth low but for the 6th-smallest total (34),
    # which ties with the 7th at the lower cut and so is medium.
    assert {t: historical.count(t) for t in ("low", "medium", "high")} == {
        "low": 5, "medium": 19, "high": 6}
    assert got.of("nobody").historical == "low"
    assert got.of("nobody").historical_amount == 0.0
    assert got.of("nobody").expected_amount_90d > 0
    assert got.of("c29").tier == "high"  # the biggest, most frequent, most recent spender


def tiered(tier: ValueTier | None) -> MomentContext:
    return MomentContext(micromoment="buy", p_buy=0.5, categories={}, value_tier=tier)


@pytest.mark.parametrize(("name", "tiers", "tier", "failure"), [
    ("a high customer is inside a high audience", ["high"], "high", None),
    ("a low customer is outside a high audience", ["high"], "low", "tier low not in [high]"),
    ("a customer of unknown tier is outside", ["high", "medium"], None,
     "tier unknown not in [high, medium]"),
])
def test_value_tiers_audience(name: str, tiers: list[ValueTier], tier: ValueTier | None,
                              failure: str | None) -> None:
    assert audience_failure(Audience(value_tiers=tiers), tiered(tier)) == failure, name


@pytest.mark.parametrize(("name", "body", "error"), [
    ("an unknown tier is refused", {"value_tiers": ["gold"]}, "value_tiers[0]"),
    ("an empty list is refused", {"value_tiers": []}, "value_tiers"),
    ("a repeated tier is refused", {"value_tiers": ["high", "high"]}, "must not repeat"),
])
def test_value_tiers_are_validated(name: str, body: dict[str, object], error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=error.replace("[", r"\[")):
        msgspec.convert(body, Audience)
