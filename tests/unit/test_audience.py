"""The `audience` decision rule, driven as tables: a campaign aimed at micromoments, categories or
a minimum intent, and the moment's context (micromoment, p_buy, per-category scores) in; the
campaign chosen or suppressed as `audience` with a detail saying which part failed.

Every case starts from test_decide's situation in which the campaign "base" goes out (Friday
2026-11-20 11:00 UTC, a consenting device in Paris, an entry at the store's fence) and gives the
campaign an audience and the moment a context.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import msgspec
import pytest

from campaigns.decide import Decision, Moment, SuppressionReason, decide
from campaigns.model import Audience, Campaign, Policy
from campaigns.reports import _REASON_KEY, SUPPRESSION_KEYS
from customers.context import MomentContext, moment_context
from customers.model import CategoryIntent, Intent, Micromoment, MicromomentKind, Spike
from tests.unit.test_decide import NOW, PREDICTS_STORE, campaign, device, moment, prediction


def context(micromoment: MicromomentKind | None = "buy", p_buy: float = 0.5,
            **categories: float) -> MomentContext:
    """A context; categories are keyword arguments with `__` for the dots of their path."""
    return MomentContext(micromoment=micromoment, p_buy=p_buy,
                         categories={k.replace("__", "."): v for k, v in categories.items()})


def aimed(audience: Audience, name: str = "base", *, priority: int = 0,
          base: Campaign | None = None) -> Campaign:
    return msgspec.structs.replace(base or campaign(name, priority=priority), audience=audience)


def at(ctx: MomentContext | None, the_moment: Moment | None = None) -> Moment:
    return msgspec.structs.replace(the_moment or moment(), context=ctx)


def run(campaigns: tuple[Campaign, ...], the_moment: Moment, *, consent: bool = True) -> Decision:
    return decide(the_moment, device(consent=consent), campaigns, Policy(), (), NOW)


BUYERS = Audience(micromoments=["buy"])
GOERS_OR_BUYERS = Audience(micromoments=["buy", "go"])
ELECTRONICS = Audience(categories=["electronics"])
SMARTPHONES = Audience(categories=["electronics.smartphone"])
ELECTRONICS_FROM_0_3 = Audience(categories=["electronics"], min_intent=0.3)
LIKELY_BUYERS = Audience(min_intent=0.3)
BUYERS_OF_ELECTRONICS = Audience(micromoments=["buy"], categories=["electronics"])

# (sentence, audience, context, detail of the `audience` suppression or None when chosen)
ONE_CAMPAIGN = [
    ("a moment whose context is unknown is outside every audience",
     BUYERS, None, "the customer's context is unknown"),
    ("a buy moment is inside an audience of buyers",
     BUYERS, context("buy"), None),
    ("a know moment is outside an audience of buyers",
     BUYERS, context("know"), "micromoment know not in [buy]"),
    ("a go moment is inside an audience of goers or buyers",
     GOERS_OR_BUYERS, context("go"), None),
    ("a moment of no micromoment is outside any micromoment audience",
     GOERS_OR_BUYERS, context(None), "micromoment none not in [buy, go]"),
    ("intent in a category under the prefix is inside it",
     ELECTRONICS, context(electronics__smartphone=0.4), None),
    ("intent in the prefix's own category is inside it",
     ELECTRONICS, context(electronics=0.1), None),
    ("intent only in other categories is outside a category audience",
     ELECTRONICS, context(home__garden=0.9), "no intent in electronics"),
    ("a customer with no category intent at all is outside a category audience",
     ELECTRONICS, context(), "no intent in electronics"),
    ("a category that merely starts with the prefix's letters is not under it",
     ELECTRONICS, context(electronicsx=0.9), "no intent in electronics"),
    ("intent in a broader category says nothing about a narrower prefix",
     SMARTPHONES, context(electronics=0.9), "no intent in electronics.smartphone"),
    ("categories are compared ignoring case",
     Audience(categories=["Electronics"]), context(electronics__TV=0.2), None),
    ("a category whose score decayed to zero is no intent",
     ELECTRONICS, context(electronics__tv=0.0), "no intent in electronics"),
    ("any one of several prefixes is enough",
     Audience(categories=["home", "electronics"]), context(electronics__tv=0.2), None),
    ("several prefixes are all named when none has intent",
     Audience(categories=["home", "garden"]), context(toys=0.5), "no intent in home or garden"),
    ("with categories, the strongest matching category must reach min_intent",
     ELECTRONICS_FROM_0_3, context(electronics__tv=0.12, electronics__phone=0.31), None),
    ("with categories, a weaker matching category is told with its score",
     ELECTRONICS_FROM_0_3, context(electronics__tv=0.12, home=0.9),
     "intent 0.12 in electronics.tv below 0.30"),
    ("with categories, a high p_buy does not make up for weak category intent",
     ELECTRONICS_FROM_0_3, context(p_buy=0.95, electronics__tv=0.12),
     "intent 0.12 in electronics.tv below 0.30"),
    ("a category score exactly at min_intent reaches it",
     ELECTRONICS_FROM_0_3, context(electronics__tv=0.3), None),
    ("without categories, p_buy must reach min_intent",
     LIKELY_BUYERS, context(p_buy=0.12), "p_buy 0.12 below 0.30"),
    ("without categories, strong category intent does not make up for a low p_buy",
     LIKELY_BUYERS, context(p_buy=0.12, electronics=0.9), "p_buy 0.12 below 0.30"),
    ("a p_buy exactly at min_intent reaches it",
     LIKELY_BUYERS, context(p_buy=0.3), None),
    ("a min_intent of zero admits any known context",
     Audience(min_intent=0.0), context(None, p_buy=0.0), None),
    ("a p_buy just under min_intent is shown with the digits that tell them apart",
     LIKELY_BUYERS, context(p_buy=0.2999), "p_buy 0.2999 below 0.3000"),
    ("the micromoment is checked before the categories",
     BUYERS_OF_ELECTRONICS, context("know", home=0.5), "micromoment know not in [buy]"),
    ("the categories are checked once the micromoment passes",
     BUYERS_OF_ELECTRONICS, context("buy", home=0.5), "no intent in electronics"),
    ("an audience of every part is inside it when each part holds",
     Audience(micromoments=["buy"], categories=["electronics"], min_intent=0.2),
     context("buy", p_buy=0.01, electronics__tv=0.25), None),
]  # fmt: skip


@pytest.mark.parametrize(("audience", "ctx", "detail"), [c[1:] for c in ONE_CAMPAIGN],
                         ids=[c[0] for c in ONE_CAMPAIGN])
def test_an_audience_admits_or_suppresses_the_moment(
    audience: Audience, ctx: MomentContext | None, detail: str | None,
) -> None:
    decision = run((aimed(audience),), at(ctx))
    got = (None if decision.chosen is None else decision.chosen.name,
           [(s.reason, s.detail) for s in decision.suppressions])
    assert got == (("base", []) if detail is None else (None, [("audience", detail)]))


# (sentence, campaigns, moment, device consent, chosen, {campaign: reason})
SEVERAL = [
    ("a campaign without an audience goes out whatever the context, even an unknown one",
     (campaign(),), at(None), True, "base", {}),
    ("an out-of-audience higher priority lets an in-audience lower one through",
     (aimed(BUYERS, "high", priority=5), aimed(ELECTRONICS, "low", priority=1)),
     at(context("know", electronics=0.4)), True, "low", {"high": "audience"}),
    ("an in-audience higher priority outranks a campaign without an audience",
     (aimed(BUYERS, "high", priority=5), campaign("plain")),
     at(context("buy")), True, "high", {"plain": "outranked"}),
    ("a moment outside the audience counts as audience, not consent",
     (aimed(BUYERS),), at(context("know")), False, None, {"base": "audience"}),
    ("a moment inside the audience still needs consent",
     (aimed(BUYERS),), at(context("buy")), False, None, {"base": "consent"}),
    ("a weak prediction counts as probability before its audience is looked at",
     (aimed(BUYERS, base=campaign(trigger=PREDICTS_STORE)),),
     at(context("know"), prediction(0.1)), True, None, {"base": "probability"}),
    ("a likely prediction outside the audience counts as audience",
     (aimed(BUYERS, base=campaign(trigger=PREDICTS_STORE)),),
     at(context("know"), prediction(0.9)), True, None, {"base": "audience"}),
]  # fmt: skip


@pytest.mark.parametrize(("campaigns", "the_moment", "consent", "chosen", "reasons"),
                         [c[1:] for c in SEVERAL], ids=[c[0] for c in SEVERAL])
def test_the_audience_rule_sits_after_probability_and_before_every_pressure_rule(
    campaigns: tuple[Campaign, ...], the_moment: Moment, consent: bool, chosen: str | None,
    reasons: dict[str, str],
) -> None:
    decision = run(campaigns, the_moment, consent=consent)
    names = {c.id: c.name for c in campaigns}
    got = (None if decision.chosen is None else decision.chosen.name,
           {names[s.campaign_id]: s.reason for s in decision.suppressions})
    assert got == (chosen, reasons)


def test_every_suppression_reason_has_a_key_in_the_campaign_stats() -> None:
    reasons = set(typing.get_args(SuppressionReason))
    assert {_REASON_KEY.get(r, r) for r in reasons} - set(SUPPRESSION_KEYS) == set()


INTENT = Intent(
    p_buy=0.42, intent_horizon_hours=24,
    by_category=[CategoryIntent("electronics.smartphone", 0.8, 5), CategoryIntent("home", 0.1, 1)],
    spike=Spike(active=False), model="prior",
)
SINCE = datetime(2026, 11, 20, 10, 48, tzinfo=UTC)


@pytest.mark.parametrize(("micromoment", "expected"), [
    pytest.param(Micromoment("buy", ["cart_add in electronics.smartphone 12 min before entering"],
                             SINCE),
                 MomentContext(micromoment="buy", p_buy=0.42,
                               categories={"electronics.smartphone": 0.8, "home": 0.1}),
                 id="the context carries the micromoment's kind, p_buy and every category score"),
    pytest.param(Micromoment(None, []),
                 MomentContext(micromoment=None, p_buy=0.42,
                               categories={"electronics.smartphone": 0.8, "home": 0.1}),
                 id="a moment of no micromoment keeps the customer's intent"),
])
def test_the_moment_context_is_built_from_intent_and_micromoment(
    micromoment: Micromoment, expected: MomentContext,
) -> None:
    assert moment_context(INTENT, micromoment) == expected
