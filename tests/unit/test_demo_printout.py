"""`make demo`'s printout, as tables: a push with the context its delivery kept prints the
micromoment on its line and the evidence, p_buy and value tier below; a shopper's signals print as
one line; a customer's context names its strongest, most specific category; an audience reads in
words; the customers' value prints as a table.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fixtures.printout import (
    INDENT,
    Push,
    audience_text,
    context_lines,
    intent_line,
    push_lines,
    tiers_line,
    top_category,
    value_lines,
)
from fixtures.shoppers import Shopper, ShopperSignal

AT = datetime(2026, 6, 17, 10, 0, tzinfo=UTC)
CHEESE_SHOP = "paris7-fromagerie-cler"
STORE_NAMES = {CHEESE_SHOP: "Fromagerie de la Rue Cler"}


def push(context: dict[str, Any] | None) -> Push:
    return Push(received_at=AT, shopper="chloe", store="Fromagerie de la Rue Cler",
                trigger="enter", title="Your basket is ready: skip the queue", ttl_seconds=1750,
                moment_at=AT - timedelta(seconds=50), campaign_id="c-1", context=context)


def shopper(*signals: tuple[str, float, dict[str, str], str | None]) -> Shopper:
    """A shopper with (kind, minutes into the walk, attributes, store) signals."""
    return Shopper(name="chloe", persona="walker", platform="android", push="fcm_token",
                   marketing=True, pings=[], signals=[
                       ShopperSignal(at=AT + timedelta(minutes=m), kind=kind, attributes=attrs,
                                     store=store, minutes_into_walk=m)
                       for kind, m, attrs, store in signals])


BUY = {"micromoment": "buy", "evidence": ["cart_add in cheese.soft 33 min before entering"],
       "p_buy": 0.2134, "intent_model": "prior"}
NONE = {"micromoment": None, "evidence": [], "p_buy": 0.0041, "intent_model": "fitted"}
LONG = {"micromoment": "know", "p_buy": 0.02, "intent_model": "prior",
        "evidence": [f"product_view in pharmacy.skincare.suncare.spf{i} {i} min before the dwell"
                     for i in range(5)]}


@pytest.mark.parametrize(("context", "micro", "below"), [
    pytest.param(BUY, "buy", ["↳ buy: cart_add in cheese.soft 33 min before entering · "
                              "p_buy 0.213 (prior model)"],
                 id="a buy push names its micromoment and gives the evidence and p_buy below"),
    pytest.param(NONE, "-", ["↳ no micromoment · p_buy 0.004 (fitted model)"],
                 id="a push in no micromoment says so, still with p_buy and its model"),
    pytest.param(None, "-", ["↳ no context kept with this delivery"],
                 id="a delivery that kept no context is shown as such, not as no micromoment"),
])
def test_a_push_line_and_its_context(context: dict[str, Any] | None, micro: str,
                                     below: list[str]) -> None:
    first, *rest = push_lines(push(context), None)
    shown = re.search(r" enter -0:50 +(\S+) +Your basket is ready", first)
    assert shown is not None and shown.group(1) == micro, first
    assert [line.removeprefix(INDENT) for line in rest] == below


def test_long_evidence_wraps_under_the_push_and_keeps_every_fact() -> None:
    _, *rest = push_lines(push(LONG), None)
    assert len(rest) > 1 and all(line.startswith(INDENT) and len(line) <= 132 for line in rest)
    told = " ".join(line.strip() for line in rest)
    assert all(fact in told for fact in LONG["evidence"])


@pytest.mark.parametrize(("signals", "line"), [
    pytest.param([("cart_add", -31, {"category": "cheese.soft"}, CHEESE_SHOP)],
                 "cart_add cheese.soft at Fromagerie de la Rue Cler (-31)",
                 id="a signal naming a store says which, with its minute before setting off"),
    pytest.param([("product_view", -26, {"category": "a.b"}, None),
                  ("product_view", -24, {"category": "a.b"}, None)],
                 "2 × product_view a.b (-26, -24)",
                 id="repeated signals are grouped with each one's minute"),
    pytest.param([("search", -22, {"query": "how to make a quiche"}, None),
                  ("directions", 7, {}, CHEESE_SHOP),
                  ("purchase", 9, {"amount": "18.50"}, CHEESE_SHOP)],
                 'search "how to make a quiche" (-22), directions to Fromagerie de la Rue Cler '
                 "(+7), purchase €18.50 at Fromagerie de la Rue Cler (+9)",
                 id="a query is quoted, directions lead to a store, an amount is in euros"),
])
def test_a_shopper_s_intent_line(signals: list[tuple[str, float, dict[str, str], str | None]],
                                 line: str) -> None:
    assert intent_line(shopper(*signals), STORE_NAMES) == f"  {'chloe':10} {line}"


@pytest.mark.parametrize(("by_category", "top"), [
    pytest.param([], None, id="no intent has no top category"),
    pytest.param([{"category": "cheese", "score": 0.73},
                  {"category": "cheese.soft", "score": 0.73}], "cheese.soft",
                 id="of equal scores the more specific category is the top"),
    pytest.param([{"category": "wine", "score": 0.8}, {"category": "cheese.soft", "score": 0.5}],
                 "wine", id="a higher score wins whatever its depth"),
])
def test_the_top_category(by_category: list[dict[str, Any]], top: str | None) -> None:
    found = top_category(by_category)
    assert (found["category"] if found else None) == top


def test_a_context_line_gives_micromoment_p_buy_model_and_strongest_category() -> None:
    context = {"intent": {"p_buy": 0.2134, "model": "prior", "by_category": [
        {"category": "cheese", "score": 0.73}, {"category": "cheese.soft", "score": 0.73}]},
        "micromoment": {"kind": "buy", "evidence": ["cart_add in cheese.soft 49 min ago"]}}
    head, evidence = context_lines("chloe", context)
    assert head.split() == ["chloe", "buy", "p_buy", "0.213", "(prior", "model)",
                            "strongest", "intent:", "cheese.soft", "(0.73)"]
    assert evidence == f"{INDENT}↳ cart_add in cheese.soft 49 min ago"


@pytest.mark.parametrize(("audience", "text"), [
    pytest.param(None, "-", id="no audience is everybody"),
    pytest.param({"micromoments": ["go"]}, "go", id="a micromoment alone"),
    pytest.param({"micromoments": ["buy"], "categories": ["cheese"], "min_intent": 0.3},
                 "buy in cheese ≥ 0.30", id="a micromoment, a category and a minimum intent"),
    pytest.param({"categories": ["wine", "cheese"]}, "any moment in wine or cheese",
                 id="categories without micromoments are any moment's"),
    pytest.param({"value_tiers": ["high"]}, "tier high", id="a value tier alone"),
    pytest.param({"micromoments": ["buy"], "value_tiers": ["medium", "high"]},
                 "buy tier medium/high", id="a micromoment and value tiers"),
])
def test_an_audience_in_words(audience: dict[str, Any] | None, text: str) -> None:
    assert audience_text(audience) == text


DRAWN = {"chosen": {"campaign_id": "c-1", "rule": "expected value draw", "seed": 7},
         "candidates": [
             {"campaign_id": "c-1", "eligible": True, "p_conversion": 0.5, "value": 2.0,
              "score": 0.9},
             {"campaign_id": "c-2", "eligible": True, "reason": "outranked",
              "p_conversion": 0.1, "value": 1.0, "score": 0.12},
             {"campaign_id": "c-3", "eligible": False, "reason": "cap"}],
         "moment": {}, "context": {}}
ONLY = {"chosen": {"campaign_id": "c-1", "rule": "only candidate", "seed": 7},
        "candidates": [{"campaign_id": "c-1", "eligible": True, "p_conversion": 0.5,
                        "value": 1.0}], "moment": {}, "context": {}}


@pytest.mark.parametrize(("why", "line"), [
    pytest.param(DRAWN, "↳ won by expected value draw (drawn score 0.900; mean p 0.500, value "
                        "2) over basket: score 0.120; coffee: cap",
                 id="a drawn push shows its score and each rival's score or the rule it failed"),
    pytest.param(ONLY, "↳ won by only candidate",
                 id="a push with no rival says it was the only candidate"),
])
def test_a_push_says_how_it_won_its_moment(why: dict[str, Any], line: str) -> None:
    shown = dataclasses.replace(push(BUY), why=why,
                                campaign_names={"c-2": "basket", "c-3": "coffee"})
    assert push_lines(shown, None)[-1].strip() == line


def test_a_push_without_why_prints_no_line_for_it() -> None:
    assert len(push_lines(push(BUY), None)) == 2


HIGH = {"historical": "high", "potential": "medium", "tier": "high",
        "historical_amount": 1633.92, "expected_amount_90d": 532.6}
NEWCOMER = {"historical": "low", "potential": "medium", "tier": "low",
            "historical_amount": 0.0, "expected_amount_90d": 15.94}


def valued(value: dict[str, Any] | None) -> Shopper:
    return dataclasses.replace(shopper(), value=value)


def with_tier(tier: str) -> Push:
    return dataclasses.replace(push(NONE), why={**ONLY, "context": {"tier": tier}})


@pytest.mark.parametrize(("shown", "who", "tail"), [
    pytest.param(with_tier("high"), valued(HIGH), " · tier high (historical high × potential "
                 "medium)", id="the tier the decision read, with the shopper's two levels"),
    pytest.param(with_tier("unknown"), valued(HIGH), " · tier unknown",
                 id="a tier other than the shopper's is printed as the decision read it"),
    pytest.param(with_tier("low"), None, " · tier low",
                 id="a push to an unknown device prints the tier alone"),
    pytest.param(push(NONE), valued(HIGH), "",
                 id="a delivery without why prints no tier"),
])
def test_a_push_prints_the_value_tier_after_its_context(shown: Push, who: Shopper | None,
                                                        tail: str) -> None:
    assert push_lines(shown, who)[1].removeprefix(INDENT) == \
        f"↳ no micromoment · p_buy 0.004 (fitted model){tail}"


def test_a_tier_that_does_not_fit_the_line_goes_whole_to_the_next() -> None:
    rest = push_lines(dataclasses.replace(push(LONG), why={**ONLY, "context": {"tier": "high"}}),
                      valued(HIGH))[1:-1]
    assert rest[-1] == f"{INDENT}  · tier high (historical high × potential medium)"
    assert all(len(line) <= 132 for line in rest)


def test_a_rival_held_back_by_an_audience_says_which_part() -> None:
    why = {**DRAWN, "candidates": [*DRAWN["candidates"][:1], {
        "campaign_id": "c-3", "eligible": False, "reason": "audience",
        "detail": "tier low not in [high]"}]}
    shown = dataclasses.replace(push(BUY), why=why, campaign_names={"c-3": "club"})
    assert push_lines(shown, None)[-1].strip().endswith(
        "over club: audience (tier low not in [high])")


def test_the_tiers_line_names_the_buyers_and_counts_the_newcomers() -> None:
    shoppers = [dataclasses.replace(valued(HIGH), name="david"), valued(NEWCOMER),
                dataclasses.replace(valued(NEWCOMER), name="lea")]
    assert tiers_line(shoppers).endswith(": david high, the 2 without purchases low")


def test_the_value_table_gives_tier_levels_and_amounts_and_a_newcomer_stands_for_all() -> None:
    _, header, david, chloe = value_lines({"david": HIGH, "chloe": NEWCOMER}, newcomers=5)
    assert header.split() == ["customer", "tier", "historical", "potential",
                              "historical_amount", "expected_amount_90d"]
    assert david.split() == ["david", "high", "high", "medium", "1633.92", "532.60"]
    assert chloe.split()[:6] == ["chloe", "low", "low", "medium", "0.00", "15.94"]
    assert chloe.endswith("(a newcomer, like the 4 other shoppers without purchases)")
