"""p_buy: P(this customer purchases within the next 24 hours, strictly after `now`).

One rule: a model is data — feature names, standardisation, logistic coefficients and a
calibration map, all plain numbers that save as JSON — and predicting is a few numpy operations on
the customer's own signals up to `now`; nothing here reads a clock, a file or a database (the
shipped prior is read by `load_prior`, once, from the package). Fitting lives in
`customers/intent_fit.py` and is the only place that needs scikit-learn.

Features describe the customer's history as of `now`, and only signals at or before `now` count:
counts over recent windows (log1p, so the tenth view adds less than the first), hours since the
last event, cart and purchase (log1p, capped at 30 days, which is also what "never" means), an open
cart (a cart after the last purchase, under a week old), the active days in 30, and how well the
category of the latest signal sells (`category_rate`: the logit of a per-category purchase rate
the model learned, so what sells is shop knowledge that a refit relearns). A checkout
counts as a cart add too: nobody checks out without a cart, and the logs the prior was fitted on
have no checkout event, so it must borrow the cart's learned weight. A search counts as a view
(browsing). `feature_matrix` evaluates many (time, prefix) queries of one history at once, which
is what fitting and the offline evaluation need; `features` is the single query the service asks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from customers.model import (
    CART_ADD,
    CHECKOUT,
    DIRECTIONS,
    PRODUCT_VIEW,
    PURCHASE,
    SEARCH,
    STORE_LOCATOR,
    IntentModelName,
    Signal,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HORIZON_HOURS = 24
HOUR = 3600.0
DAY = 86_400.0
CAP_HOURS = 30 * 24.0  # "hours since" stops here: a month ago and never look alike

# Kind groups the features count; a kind may feed more than one (a checkout is also a cart).
VIEWS, CARTS, CHECKOUTS, PLACE, PURCHASES = range(5)
N_GROUPS = 5
KIND_GROUPS: dict[str, tuple[int, ...]] = {
    PRODUCT_VIEW: (VIEWS,),
    SEARCH: (VIEWS,),
    CART_ADD: (CARTS,),
    CHECKOUT: (CARTS, CHECKOUTS),
    STORE_LOCATOR: (PLACE,),
    DIRECTIONS: (PLACE,),
    PURCHASE: (PURCHASES,),
}

# Each kind's row of group memberships, the last entry the "any event" row.
_MEMBERSHIP: dict[str, tuple[int, ...]] = {
    kind: (*(int(g in groups) for g in range(N_GROUPS)), 1)
    for kind, groups in KIND_GROUPS.items()
}
_NO_GROUP = (0,) * (N_GROUPS + 1)

FEATURES = (
    "views_1h", "views_24h", "views_30d", "checkouts_24h", "place_24h",
    "purchases_24h", "purchases_30d", "hours_since_event", "hours_since_cart",
    "hours_since_purchase", "open_cart", "active_days_30d", "category_rate",
)
N_FEATURES = len(FEATURES)


class History:
    """One customer's signals as time-sorted arrays (ties keep their given order)."""

    __slots__ = ("cats", "cum", "cum_new_day", "last_cat", "last_idx", "n", "new_day",
                 "next_counted", "ts")

    def __init__(self, times: Sequence[float], kinds: Sequence[str],
                 categories: Sequence[str | None] | None = None) -> None:
        order = np.argsort(np.asarray(times, dtype=np.float64), kind="stable")
        self.ts: FloatArray = np.asarray(times, dtype=np.float64)[order]
        self.n = len(self.ts)
        # Unknown kinds are stored but carry no intent and no event (a row of zeros).
        rows = [_MEMBERSHIP.get(kinds[i], _NO_GROUP) for i in order.tolist()]
        member = np.array(rows, dtype=np.int64).T if rows else \
            np.zeros((N_GROUPS + 1, 0), dtype=np.int64)
        any_event = [row[N_GROUPS] == 1 for row in rows]
        # cum[g, k]: events of group g among the first k; a window count is a difference of two.
        self.cum: IntArray = np.zeros((N_GROUPS + 1, self.n + 1), dtype=np.int64)
        np.cumsum(member, axis=1, out=self.cum[:, 1:])
        # last_idx[g, k]: index of the last group-g event among the first k (-1: none).
        idx = np.where(member == 1, np.arange(self.n), -1)
        self.last_idx: IntArray = np.full((N_GROUPS + 1, self.n + 1), -1, dtype=np.int64)
        self.last_idx[:, 1:] = np.maximum.accumulate(idx, axis=1) if self.n else idx
        # Distinct UTC days with an event: along the sorted times days never decrease, so a day
        # is new where it differs from the previous counted event's day.
        counted = member[N_GROUPS] == 1
        day = np.floor(self.ts / DAY)
        cday = day[counted]
        first_of_day = np.ones(len(cday), dtype=bool)
        first_of_day[1:] = cday[1:] != cday[:-1]
        self.new_day = np.zeros(self.n, dtype=bool)
        self.new_day[np.flatnonzero(counted)] = first_of_day
        self.cum_new_day: IntArray = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(self.new_day, out=self.cum_new_day[1:])
        # next_counted[k]: the first counted event at index >= k (n: none).
        nxt = np.where(counted, np.arange(self.n), self.n)
        self.next_counted: IntArray = np.full(self.n + 1, self.n, dtype=np.int64)
        if self.n:
            self.next_counted[:-1] = np.minimum.accumulate(nxt[::-1])[::-1]
        # The latest categorised intent signal among the first k: what the customer is after.
        cats = [None] * self.n if categories is None else [categories[i] for i in order.tolist()]
        self.cats: list[str | None] = cats
        has = np.array([c is not None and e for c, e in zip(cats, any_event, strict=True)],
                       dtype=bool)
        self.last_cat: IntArray = np.full(self.n + 1, -1, dtype=np.int64)
        if self.n:
            self.last_cat[1:] = np.maximum.accumulate(np.where(has, np.arange(self.n), -1))

    @classmethod
    def of(cls, signals: Sequence[Signal]) -> History:
        return cls([epoch(s.at) for s in signals], [s.kind for s in signals],
                   [s.category for s in signals])


def epoch(dt: datetime) -> float:
    """Seconds since 1970 UTC; a naive datetime is read as UTC, never as the machine's zone."""
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def latest_categories(h: History, q: FloatArray, end: IntArray) -> list[str | None]:
    """Per query, the category of the latest categorised signal of the last 24 h (or None)."""
    out: list[str | None] = []
    for j, i in enumerate(h.last_cat[end]):
        out.append(h.cats[i] if i >= 0 and q[j] - h.ts[i] <= DAY else None)
    return out


def feature_matrix(h: History, q: FloatArray, end: IntArray) -> FloatArray:
    """Features at query times `q`, query j seeing only the first `end[j]` events of `h`; all
    but the last (`category_rate`, which needs a model's table: `PBuyModel.predict_matrix`).

    The caller makes sure those events are at or before `q[j]`; nothing beyond `end[j]` is read,
    so later events cannot leak into a query.
    """
    out = np.empty((len(q), N_FEATURES - 1), dtype=np.float64)

    def count(group: int, window_s: float) -> FloatArray:
        start = np.minimum(np.searchsorted(h.ts, q - window_s, side="right"), end)
        counted: FloatArray = np.log1p((h.cum[group, end] - h.cum[group, start]).astype(float))
        return counted

    def hours_since(group: int) -> FloatArray:
        last = h.last_idx[group, end]
        last_t = np.where(last >= 0, h.ts[np.maximum(last, 0)] if h.n else 0.0, -np.inf)
        hours = np.minimum((q - last_t) / HOUR, CAP_HOURS)
        return np.log1p(np.maximum(hours, 0.0))

    out[:, 0] = count(VIEWS, HOUR)
    out[:, 1] = count(VIEWS, DAY)
    out[:, 2] = count(VIEWS, 30 * DAY)
    out[:, 3] = count(CHECKOUTS, DAY)
    out[:, 4] = count(PLACE, DAY)
    out[:, 5] = count(PURCHASES, DAY)
    out[:, 6] = count(PURCHASES, 30 * DAY)
    out[:, 7] = hours_since(N_GROUPS)
    out[:, 8] = hours_since(CARTS)
    out[:, 9] = hours_since(PURCHASES)
    last_cart, last_buy = h.last_idx[CARTS, end], h.last_idx[PURCHASES, end]
    cart_t = np.where(last_cart >= 0, h.ts[np.maximum(last_cart, 0)] if h.n else 0.0, -np.inf)
    out[:, 10] = ((last_cart > last_buy) & (q - cart_t < 7 * DAY)).astype(np.float64)
    start30 = np.minimum(np.searchsorted(h.ts, q - 30 * DAY, side="right"), end)
    # Days with an event among [start30, end): the new-day flags there, plus one when the first
    # counted event of the window shares its day with an event before the window.
    days = h.cum_new_day[end] - h.cum_new_day[start30]
    first = h.next_counted[start30]
    inside = first < end
    days = days + (inside & ~h.new_day[np.minimum(first, max(h.n - 1, 0))] if h.n else 0)
    out[:, 11] = np.log1p(days)
    return out


def features(signals: Sequence[Signal], now: datetime) -> tuple[FloatArray, str | None]:
    """The feature row of one customer at `now`, from their signals at or before `now`, and the
    category `category_rate` looks up."""
    return features_at(signals, [epoch(s.at) for s in signals], epoch(now))


def features_at(signals: Sequence[Signal], times: Sequence[float],
                t: float) -> tuple[FloatArray, str | None]:
    """`features` with each signal's `epoch` (`times`) and now's (`t`) given."""
    picked = [i for i in range(len(signals)) if times[i] <= t]
    h = History([times[i] for i in picked], [signals[i].kind for i in picked],
                [signals[i].category for i in picked])
    q, end = np.array([t]), np.array([h.n], dtype=np.int64)
    return feature_matrix(h, q, end)[0], latest_categories(h, q, end)[0]


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """Maps the logistic score z to a probability: sigmoid(a*z + b) (Platt), fitted on
    out-of-fold scores so it corrects what the coefficients learned too confidently."""

    method: Literal["sigmoid"] = "sigmoid"
    a: float
    b: float


class PBuyModel(msgspec.Struct, frozen=True, kw_only=True):
    name: IntentModelName  # "prior" (shipped) or "fitted" (on this shop's own signals)
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    calibration: Calibration
    # category path -> smoothed P(purchase within the horizon) of examples whose latest category
    # it was (only paths with enough examples); others fall back to their nearest listed ancestor
    # and then to base_rate. What sells is shop knowledge, so a refit relearns it.
    category_rates: dict[str, float] = msgspec.field(default_factory=dict)
    base_rate: float = 0.05
    horizon_hours: int = HORIZON_HOURS
    source: str = ""  # what it was fitted on
    licence: str = ""
    fitted_on: str = ""  # when, and how many examples / purchases
    notes: str = ""

    def __post_init__(self) -> None:
        if self.features != list(FEATURES):
            raise ValueError(f"model features {self.features} differ from {list(FEATURES)}")
        for field in ("mean", "scale", "coef"):
            values = getattr(self, field)
            if len(values) != N_FEATURES or not all(math.isfinite(v) for v in values):
                raise ValueError(f"model {field} must be {N_FEATURES} finite numbers")
        if any(v <= 0 for v in self.scale):
            raise ValueError("model scale must be positive")
        rates = [self.base_rate, *self.category_rates.values()]
        if not all(0.0 < r < 1.0 for r in rates):
            raise ValueError("model base_rate and category_rates must be in (0, 1)")
        if not (math.isfinite(self.intercept) and math.isfinite(self.calibration.a)
                and math.isfinite(self.calibration.b)):
            raise ValueError("model intercept and calibration must be finite")

    def category_logit(self, category: str | None) -> float:
        rate = self.base_rate
        if category:
            parts = [p for p in category.split(".") if p]
            for k in range(len(parts), 0, -1):
                found = self.category_rates.get(".".join(parts[:k]))
                if found is not None:
                    rate = found
                    break
        return math.log(rate / (1.0 - rate))

    def predict_matrix(self, x: FloatArray, categories: Sequence[str | None]) -> FloatArray:
        """Probabilities for rows of `feature_matrix` and their `latest_categories`."""
        cat = np.array([self.category_logit(c) for c in categories], dtype=np.float64)
        x = np.column_stack([x, cat])
        # Arrays are rebuilt per call from the lists (a few µs): the struct stays plain data.
        # Row by row (multiply, then sum along the row), never a matrix product: BLAS rounds a
        # row differently depending on the rows batched with it, and a row's p_buy must not
        # depend on which other rows were scored with it.
        xz = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        z = (xz * np.asarray(self.coef)).sum(axis=1) + self.intercept
        p: FloatArray = 1.0 / (1.0 + np.exp(-(self.calibration.a * z + self.calibration.b)))
        return np.clip(p, 1e-6, 1.0 - 1e-6)

    def predict(self, signals: Sequence[Signal], now: datetime) -> float:
        """P(a purchase in (now, now + 24 h]) from the customer's signals up to `now`."""
        return self.predict_at(signals, [epoch(s.at) for s in signals], epoch(now))

    def predict_at(self, signals: Sequence[Signal], times: Sequence[float], t: float) -> float:
        """`predict` with each signal's `epoch` (`times`) and now's (`t`) given."""
        x, category = features_at(signals, times, t)
        return float(self.predict_matrix(x[None, :], [category])[0])

    def to_bytes(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> PBuyModel:
        """Raises `msgspec.ValidationError` (a `ValueError`) for anything that is not a model."""
        return _DECODER.decode(data)


_DECODER = msgspec.json.Decoder(PBuyModel)


def load_prior() -> PBuyModel:
    """The shipped prior (`customers/prior.json`): the model until a shop has enough purchases."""
    return PBuyModel.from_bytes(resources.files("customers").joinpath("prior.json").read_bytes())
