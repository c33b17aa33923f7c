"""Whether a moment is inside a campaign's audience: the `audience` decision rule.

One rule: each part the audience gives must hold, checked in this order, and the first that
fails is the reason (the suppression's detail):

    micromoments  the moment's micromoment is one of them     "micromoment know not in [buy]"
    value_tiers   the customer's value tier is one of them    "tier low not in [high]"
    categories    the customer has intent (a score above 0)   "no intent in electronics"
                  in a category under one of the prefixes
    min_intent    with categories: the strongest matching     "intent 0.12 in electronics.tv
                  category's score reaches it;                 below 0.30"
                  without: p_buy reaches it                   "p_buy 0.12 below 0.30"

A moment whose context is unknown (None: no context was loaded) is outside every audience: a
campaign aimed at someone is never sent to whoever happens to pass. Pure: no clock, no I/O.
"""

from __future__ import annotations

from campaigns.model import Audience
from customers.context import MomentContext


def audience_failure(audience: Audience, context: MomentContext | None) -> str | None:
    """Why the moment is outside the audience, or None when it is inside."""
    if context is None:
        return "the customer's context is unknown"
    if audience.micromoments is not None and context.micromoment not in audience.micromoments:
        return (f"micromoment {context.micromoment or 'none'} not in "
                f"[{', '.join(audience.micromoments)}]")
    if audience.value_tiers is not None and context.value_tier not in audience.value_tiers:
        return (f"tier {context.value_tier or 'unknown'} not in "
                f"[{', '.join(audience.value_tiers)}]")
    if audience.categories is not None:
        strongest = context.strongest_under(audience.categories)
        if strongest is None:
            return f"no intent in {' or '.join(audience.categories)}"
        category, score = strongest
        if audience.min_intent is not None and score < audience.min_intent:
            shown, floor = _compared(score, audience.min_intent)
            return f"intent {shown} in {category} below {floor}"
    elif audience.min_intent is not None and context.p_buy < audience.min_intent:
        shown, floor = _compared(context.p_buy, audience.min_intent)
        return f"p_buy {shown} below {floor}"
    return None


def _compared(value: float, threshold: float) -> tuple[str, str]:
    """Both numbers with two decimals, or more when two would show them equal (0.299 vs 0.3)."""
    for digits in (2, 4, 6):
        shown, floor = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if shown != floor:
            return shown, floor
    return f"{value!r}", f"{threshold!r}"
