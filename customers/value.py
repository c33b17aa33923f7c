"""The customer value matrix: what a customer has spent (historical value) crossed with what they
are expected to spend in the next 90 days (potential value, from a buy-till-you-die model).

One rule: a tier is a pure function of the two amounts and of thresholds fitted on the
population, so the same purchases always give the same tiers:

    historical, potential  each `high` at or above the population's upper quintile (its top
                           fifth), `medium` at or above its lower quintile, else `low`. The
                           population is the customers with at least one purchase (a customer
                           with none is `low` history; an empty population puts everyone `low`).
    tier                   high when the potential is high and the history at least medium;
                           low when the two levels, scoring low 0, medium 1, high 2, add to 0
                           or 1 (low×low, low×medium); else medium (the crossings high×low and
                           low×high, medium×medium, and high history × medium potential: a big
                           past spender whose potential has faded).

Potential value = expected purchases in the horizon (Pareto/NBD, Schmittlein, Morrison &
Colombo 1987) ×
expected spend per purchase (Gamma-Gamma, Fader & Hardie 2013), both on purchase days. The
parameters are fitted elsewhere (`customers.value_fit`, by MAP); here they are only evaluated
with their closed forms. A customer with no purchase gets the population's expectation (the
model's prior for a newcomer). Pure: no clock, no database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta

import msgspec
import numpy as np
from scipy.special import hyp2f1

from customers.model import ValueTier as Level

LEVELS: tuple[Level, ...] = ("low", "medium", "high")
HORIZON_DAYS = 90
# The levels' cuts, as quantiles of the population's amounts: the top fifth is `high`, the bottom
# fifth `low`. Terciles made a `high` tier of ~40 % of CDNOW's customers that held fewer of the
# next period's top 20 % spenders than an RFM group of its size (README, "Offline evaluation").
LOW_CUT, HIGH_CUT = 0.2, 0.8
DAY = timedelta(days=1)


class Purchase(msgspec.Struct, frozen=True, array_like=True):
    customer_id: str
    at: datetime
    amount: float


class History(msgspec.Struct, frozen=True):
    """A customer's purchases as the BTYD models see them, in days, purchases grouped by day."""

    frequency: int  # repeat purchase days (purchase days − 1)
    recency: float  # days from the first purchase day to the last
    age: float  # days from the first purchase day to the instant of the fit ("T")
    # Mean spend of all purchase days, the first included: Gamma-Gamma's classic form uses
    # repeats only, which leaves every one-time buyer at the population mean; on CDNOW that
    # ranked the next period's spend worse than an RFM score (see README).
    monetary: float
    total: float  # everything spent (the historical value)


class Params(msgspec.Struct, frozen=True):
    """Fitted Pareto/NBD (r, alpha: purchase rates; s, beta: dropout rates) and Gamma-Gamma
    (p, q, v: spend) parameters."""

    r: float
    alpha: float
    s: float
    beta: float
    p: float
    q: float
    v: float
    source: str  # "prior" or "fitted on N customers"


# Fitted on all of CDNOW (23,570 customers, Jan 1997–Jun 1998) with pymc-marketing 0.19.2 by MAP
# (`customers.value_fit.fit`): what a shop's value model answers before it has enough repeat
# purchases of its own to fit.
PRIOR = Params(r=0.588, alpha=89.431, s=0.286, beta=35.175, p=7.669, q=3.63, v=11.437,
               source="prior")


class Value(msgspec.Struct, frozen=True):
    """The contract's `value` object."""

    historical: Level
    potential: Level
    tier: Level
    historical_amount: float
    expected_amount_90d: float


class Scored(msgspec.Struct, frozen=True):
    customer_id: str
    historical_amount: float
    expected_purchases: float
    expected_amount: float


def histories(purchases: Iterable[Purchase], until: datetime) -> dict[str, History]:
    """Each customer's history from their purchases up to `until` (later ones are ignored)."""
    days: dict[str, dict[date, float]] = {}
    for p in purchases:
        if p.at <= until:
            by_day = days.setdefault(p.customer_id, {})
            by_day[p.at.date()] = by_day.get(p.at.date(), 0.0) + p.amount
    return {customer: history_of(by_day, until) for customer, by_day in days.items()}


def history_of(by_day: Mapping[date, float], until: datetime) -> History:
    """One customer's history from their spend per purchase day (at least one day)."""
    ordered = sorted(by_day)
    first, last = ordered[0], ordered[-1]
    start = datetime(first.year, first.month, first.day, tzinfo=until.tzinfo)
    repeats = [by_day[d] for d in ordered[1:]]
    return History(
        frequency=len(repeats), recency=float((last - first).days),
        age=max((until - start) / DAY, float((last - first).days)),
        monetary=sum(by_day.values()) / len(ordered),
        total=sum(by_day.values()),
    )


def expected_purchases(params: Params, h: History | None, days: float) -> float:
    """Pareto/NBD: expected purchase days in the next `days` given the history (None: a
    newcomer, the population's expectation for someone just arrived) — Fader, Hardie & Lee,
    "A note on deriving the Pareto/NBD model" (2005), eq. 18 and 22, in logs so that a long
    history does not overflow."""
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    x, tx, age = (h.frequency, h.recency, h.age) if h is not None else (0, 0.0, 0.0)
    alive = alive_probability(params, x, tx, age)
    scale = (r + x) * (beta + age) / ((alpha + age) * (s - 1))
    return float(max(scale * (1 - ((beta + age) / (beta + age + days)) ** (s - 1)) * alive, 0.0))


def alive_probability(params: Params, x: int, tx: float, age: float) -> float:
    """P(the customer has not dropped out by `age` | x repeat days, the last at `tx`)."""
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    rsx = r + s + x
    if alpha >= beta:
        big, first, second = alpha, s + 1, beta
    else:
        big, first, second = beta, r + x, alpha

    def term(t: float) -> float:
        value = float(hyp2f1(rsx, first, rsx + 1, (big - second) / (big + t)))
        return math.log(value) - rsx * math.log(big + t)

    early, late = term(tx), term(age)
    if late >= early:  # bought at the very end: nothing says they left
        return 1.0
    log_a0 = early + math.log1p(-math.exp(late - early))
    log_odds = (math.log(s / rsx) + (r + x) * math.log(alpha + age) + s * math.log(beta + age)
                + log_a0)
    return 1.0 / (1.0 + math.exp(min(log_odds, 700.0)))


def expected_spend(params: Params, h: History | None) -> float:
    """Gamma-Gamma: the expected spend of one purchase day, the population mean shrunk toward the
    customer's own mean as their purchase days grow."""
    p, q, v = params.p, params.q, params.v
    population = p * v / (q - 1)
    if h is None or h.monetary <= 0:
        return population
    days = h.frequency + 1
    weight = p * days / (p * days + q - 1)
    return (1 - weight) * population + weight * h.monetary


def score(params: Params, customers: Mapping[str, History],
          days: float = HORIZON_DAYS) -> list[Scored]:
    """Every customer's historical amount and expectations over `days`."""
    out = []
    for customer, h in customers.items():
        n = expected_purchases(params, h, days)
        out.append(Scored(customer, h.total, n, n * expected_spend(params, h)))
    return out


class Thresholds(msgspec.Struct, frozen=True):
    """The lower and upper quintiles of each amount over the customers with purchases."""

    historical: tuple[float, float] | None
    potential: tuple[float, float] | None


def thresholds(scored: Iterable[Scored]) -> Thresholds:
    rows = [s for s in scored if s.historical_amount > 0]
    if not rows:
        return Thresholds(None, None)

    def quintiles(values: list[float]) -> tuple[float, float]:
        low, high = np.quantile(np.asarray(values), [LOW_CUT, HIGH_CUT])
        return float(low), float(high)

    return Thresholds(quintiles([s.historical_amount for s in rows]),
                      quintiles([s.expected_amount for s in rows]))


def level(amount: float, cut: tuple[float, float] | None) -> Level:
    if cut is None or amount <= 0:
        return "low"
    return "high" if amount >= cut[1] else "medium" if amount >= cut[0] else "low"


def matrix(historical: Level, potential: Level) -> Level:
    """The value matrix (see the module's rule)."""
    if potential == "high" and historical != "low":
        return "high"
    points = LEVELS.index(historical) + LEVELS.index(potential)
    return "low" if points <= 1 else "medium"


def value_of(scored: Scored, cuts: Thresholds) -> Value:
    historical = level(scored.historical_amount, cuts.historical)
    potential = level(scored.expected_amount, cuts.potential)
    return Value(historical, potential, matrix(historical, potential),
                 round(scored.historical_amount, 2), round(scored.expected_amount, 2))


class ValueMatrix(msgspec.Struct, frozen=True):
    """Every known customer's value, and what a customer without purchases gets."""

    params: Params
    cuts: Thresholds
    values: dict[str, Value]
    newcomer: Value

    def of(self, customer: str) -> Value:
        return self.values.get(customer, self.newcomer)


def value_matrix(params: Params, customers: Mapping[str, History]) -> ValueMatrix:
    """The matrix of a population under fitted parameters."""
    scored = score(params, customers)
    cuts = thresholds(scored)
    newcomer_amount = (expected_purchases(params, None, HORIZON_DAYS)
                       * expected_spend(params, None))
    newcomer = value_of(Scored("", 0.0, 0.0, newcomer_amount), cuts)
    return ValueMatrix(params, cuts, {s.customer_id: value_of(s, cuts) for s in scored},
                       newcomer)


def finite_params(params: Params) -> bool:
    numbers = (params.r, params.alpha, params.s, params.beta, params.p, params.q, params.v)
    return all(math.isfinite(n) and n > 0 for n in numbers) and params.q > 1 and params.s != 1


if __name__ == "__main__":
    import sys

    from customers.value_eval import main

    sys.exit(main())
