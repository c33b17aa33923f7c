"""The context of one moment as the decision rules see it: the kind of micromoment and the
customer's intent, overall and per category.

One rule: built only from what the intent model and the micromoment classifier already said
and the value matrix already said (`moment_context`), so the shell calls one function and the
rules never recompute a model.
Pure: no clock, no database.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from customers.model import Intent, Micromoment, MicromomentKind, ValueTier


class MomentContext(msgspec.Struct, kw_only=True, frozen=True):
    """Who the moment's customer is, as far as targeting goes."""

    micromoment: MicromomentKind | None
    p_buy: float  # P(a purchase within the intent horizon), calibrated
    categories: dict[str, float]  # category path → intent score 0..1, as the intent model named it
    value_tier: ValueTier | None = None  # the value matrix's tier (None: not known for this moment)

    def strongest_under(self, prefixes: Iterable[str]) -> tuple[str, float] | None:
        """The category with the highest score (above zero) under any of `prefixes`.

        A prefix covers the category itself and its descendants along the dots
        (`electronics` covers `electronics.smartphone`, not `electronicsx`); case is ignored,
        since categories are the retailer's free text. A broader category does not count for a
        narrower prefix: intent in `electronics` says nothing about smartphones.
        """
        folded = [prefix.casefold() for prefix in prefixes]
        best: tuple[str, float] | None = None
        for category, score in self.categories.items():
            if score <= 0.0 or (best is not None and score <= best[1]):
                continue
            name = category.casefold()
            if any(name == p or name.startswith(p + ".") for p in folded):
                best = (category, score)
        return best


def moment_context(intent: Intent, micromoment: Micromoment,
                   value_tier: ValueTier | None = None) -> MomentContext:
    """The decision rules' view of a moment, from the customer's intent, its micromoment and
    the customer's tier in the value matrix."""
    return MomentContext(
        micromoment=micromoment.kind,
        p_buy=intent.p_buy,
        categories={c.category: c.score for c in intent.by_category},
        value_tier=value_tier,
    )


class MomentEvidence(msgspec.Struct, kw_only=True, frozen=True):
    """What a delivery keeps of its moment's context: the micromoment it answered, the evidence
    that decided it, and the customer's p_buy with the model that gave it."""

    micromoment: MicromomentKind | None
    evidence: list[str]
    p_buy: float
    intent_model: str
