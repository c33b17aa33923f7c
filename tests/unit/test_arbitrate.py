"""The next best action: priority first, then the drawn expected value, learned from outcomes,
exploring without starving anyone and never past a rule."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from uuid import UUID

import msgspec
import pytest

from campaigns.arbitrate import (
    Evidence,
    Outcomes,
    arbitrate,
    bucket_of,
    intent_band,
    mean_rate,
)
from campaigns.decide import Decision, PastPush, decide
from campaigns.model import Audience, Campaign, Caps, PerDeviceCap, Policy, QuietHours
from customers.context import MomentContext
from tests.unit.test_decide import LOOSE, NOW, campaign, device, moment, push

BUY = MomentContext(micromoment="buy", p_buy=0.5, categories={"coffee.beans": 0.8})


def rank(c: Campaign) -> tuple[int, object, object, UUID]:
    return (c.priority, c.activated_at, c.created_at, c.id)


def evidence(**rates: tuple[int, int]) -> Evidence:
    """Outcomes per campaign name, all in BUY's bucket: name=(conversions, trials)."""
    cells = {}
    for name, (wins, trials) in rates.items():
        c = campaign(name)
        cells[(c.id, bucket_of(c, BUY))] = Outcomes(trials=trials, conversions=wins)
    return Evidence.of(cells)


def wins(campaigns: list[Campaign], learned: Evidence, seeds: range) -> Counter[str]:
    return Counter(
        getattr(arbitrate(campaigns, BUY, learned, seed, rank).chosen, "name", None)
        for seed in seeds
    )


CASES = [
    pytest.param([campaign("good", priority=1), campaign("great", priority=0, value=100.0)],
                 evidence(good=(1, 100), great=(90, 100)), "good", 1.0,
                 id="a higher priority wins outright whatever the other's expected value"),
    pytest.param([campaign("good"), campaign("poor")],
                 evidence(good=(60, 100), poor=(10, 100)), "good", 0.99,
                 id="within a priority the higher learned conversion rate wins"),
    pytest.param([campaign("cheap"), campaign("dear", value=10.0)],
                 evidence(cheap=(60, 100), dear=(20, 100)), "dear", 0.99,
                 id="within a priority a rarer conversion worth ten times more wins"),
    pytest.param([campaign("tried"), campaign("new")],
                 evidence(tried=(60, 100)), "tried", 0.5,
                 id="a campaign with no evidence yet is explored but does not take over"),
]


@pytest.mark.parametrize(("campaigns", "learned", "winner", "share"), CASES)
def test_arbitration_ranks_by_priority_then_drawn_expected_value(
    campaigns: list[Campaign], learned: Evidence, winner: str, share: float,
) -> None:
    counts = wins(campaigns, learned, range(400))
    assert counts[winner] / 400 >= share, counts


def test_a_campaign_without_evidence_still_wins_some_moments() -> None:
    counts = wins([campaign("tried"), campaign("new")], evidence(tried=(60, 100)), range(400))
    assert counts["new"] >= 20, counts


def test_the_rule_that_decided_is_named() -> None:
    one, two, low = campaign("one"), campaign("two"), campaign("low", priority=-1)
    empty = Evidence()
    assert [arbitrate(cs, BUY, empty, 7, rank).rule for cs in ([one], [one, low], [one, two])] \
        == ["only candidate", "priority", "expected value draw"]


def test_the_same_seed_replays_the_same_draw_and_others_differ() -> None:
    pair = [campaign("a"), campaign("b")]
    first = arbitrate(pair, BUY, Evidence(), 42, rank)
    assert arbitrate(pair, BUY, Evidence(), 42, rank) == first
    assert len({arbitrate(pair, BUY, Evidence(), s, rank).scored[pair[0].id].score
                for s in range(20)}) == 20


def test_a_bucket_without_evidence_borrows_the_campaigns_overall_rate() -> None:
    c = campaign("a")
    learned = Evidence.of({(c.id, "go|unknown|low"): Outcomes(trials=98, conversions=49)})
    assert mean_rate(learned, c.id, "buy|high|high") == pytest.approx(0.5)
    assert mean_rate(Evidence(), c.id, "buy|high|high") == pytest.approx(0.5)


@pytest.mark.parametrize(("score", "band"), [
    pytest.param(None, "unknown", id="no intent known is its own band"),
    pytest.param(0.0, "low", id="no intent is low"),
    pytest.param(1 / 3, "medium", id="a third is medium"),
    pytest.param(0.9, "high", id="0.9 is high"),
])
def test_intent_is_banded(score: float | None, band: str) -> None:
    assert intent_band(score) == band


@pytest.mark.parametrize(("target", "context", "bucket"), [
    pytest.param(campaign("any"), BUY, "buy|unknown|medium",
                 id="without categories the campaign's intent is p_buy; no tier is unknown"),
    pytest.param(msgspec.structs.replace(
        campaign("beans"), audience=Audience(categories=["coffee"])), BUY, "buy|unknown|high",
        id="with categories it is the strongest intent under them"),
    pytest.param(campaign("any"), None, "unknown|unknown|unknown",
                 id="a moment without a context has its own bucket"),
])
def test_the_learning_bucket(target: Campaign, context: MomentContext | None,
                             bucket: str) -> None:
    assert bucket_of(target, context) == bucket


def test_learning_online_the_better_campaign_takes_over_and_the_other_is_still_explored() -> None:
    better, worse = campaign("better"), campaign("worse")
    truth = {better.id: 0.6, worse.id: 0.1}
    cells: dict[tuple[UUID, str], Outcomes] = {}
    outcomes = random.Random(11)
    chosen: list[str] = []
    for seed in range(600):
        pick = arbitrate([better, worse], BUY, Evidence.of(cells), seed, rank).chosen
        assert pick is not None
        chosen.append(pick.name)
        key = (pick.id, bucket_of(pick, BUY))
        converted = outcomes.random() < truth[pick.id]
        cells[key] = cells.get(key, Outcomes()) + Outcomes(1.0, float(converted))
    late = Counter(chosen[300:])
    assert late["better"] / 300 >= 0.85, late
    assert Counter(chosen)["worse"] >= 5, Counter(chosen)


def decided(campaigns: list[Campaign], learned: Evidence, policy: Policy,
            history: tuple[PastPush, ...] = ()) -> list[Decision]:
    return [decide(msgspec.structs.replace(moment(at=NOW - timedelta(seconds=s)), context=BUY),
                   device(), campaigns, policy, history, NOW, learned)
            for s in range(300)]


CAPPED = Caps(per_device=PerDeviceCap(count=1, period_seconds=86_400))


def test_a_capped_campaign_never_wins_by_exploration_however_good_it_looks() -> None:
    star, plain = campaign("star", caps=CAPPED, value=50.0), campaign("plain")
    learned = evidence(star=(95, 100), plain=(1, 100))
    results = decided([star, plain], learned, LOOSE, (push(NOW - timedelta(hours=1), of="star"),))
    assert {d.chosen.name for d in results if d.chosen} == {"plain"}
    assert all(s.reason == "cap" for d in results for s in d.suppressions)


def test_quiet_hours_are_never_broken_to_explore() -> None:
    quiet = msgspec.structs.replace(LOOSE, quiet_hours=QuietHours(from_="00:00", to="23:59"))
    results = decided([campaign("a"), campaign("b")], Evidence(), quiet)
    assert [d.chosen for d in results] == [None] * 300
    assert {s.reason for d in results for s in d.suppressions} == {"quiet_hours"}


def test_why_lists_every_matched_campaign_with_its_numbers_or_its_reason() -> None:
    star, plain, low = campaign("star", caps=CAPPED), campaign("plain"), \
        campaign("low", priority=-1)
    decision = decide(msgspec.structs.replace(moment(), context=BUY), device(),
                      [star, plain, low], LOOSE, [push(NOW - timedelta(hours=1), of="star")],
                      NOW, Evidence())
    assert decision.why is not None
    shown = {c.campaign_id: (c.eligible, c.reason) for c in decision.why.candidates}
    assert shown == {star.id: (False, "cap"), plain.id: (True, None),
                     low.id: (True, "outranked")}
    assert (decision.why.chosen.campaign_id, decision.why.chosen.rule,
            decision.why.context.bucket) == (plain.id, "priority", "buy|unknown|medium")
