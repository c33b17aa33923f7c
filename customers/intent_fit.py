"""Fitting p_buy: training examples from stored signals, a logistic regression and its calibration.

One rule: a label is only ever read from a horizon that has fully passed by `now`, and the features
of an example only from signals at or before it, so a fitted model never learned from the future.

Examples. For each customer, one at each signal (features from the signals up to and including
it) and, because the service also asks about customers who have gone quiet, one at each of
GAP_OFFSETS after a signal while no other signal has come yet (the silence the customer was in).
Label: a purchase in (t, t + 24 h]. Only examples with t + 24 h <= now are used.

Model. scikit-learn's LogisticRegression (L2) on standardised features, then Platt calibration
(a 1-D logistic of the score) fitted on out-of-fold scores from a GroupKFold by customer: the
coefficients never see the scores they are calibrated on, and one customer's examples are never
on both sides. The final coefficients are refitted on all examples. Both are stored as numbers.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold, cross_val_predict

from customers.model import PURCHASE, Signal
from customers.pbuy import (
    FEATURES,
    HORIZON_HOURS,
    HOUR,
    Calibration,
    FloatArray,
    History,
    IntArray,
    PBuyModel,
    epoch,
    feature_matrix,
    latest_categories,
)

GAP_OFFSETS_H = (1.0, 6.0, 24.0, 72.0, 7 * 24.0, 14 * 24.0)
MIN_POSITIVE = 30
MIN_NEGATIVE = 30
C = 1.0  # L2 strength: the default, enough to keep rare-kind coefficients modest
FOLDS = 4
CATEGORY_SMOOTHING = 50.0  # a category's rate borrows this many examples' worth of its parent's
MIN_CATEGORY_EXAMPLES = 50  # rarer categories are not listed: they use their parent's rate


class CannotFit(Exception):
    """The stored signals cannot give a model; the caller keeps the one it has (the prior)."""


class TooFewPurchases(CannotFit):
    """Not enough labelled examples of each kind to fit."""

    def __init__(self, positive: int, negative: int) -> None:
        super().__init__(f"{positive} positive and {negative} negative examples; fitting needs at "
                         f"least {MIN_POSITIVE} and {MIN_NEGATIVE}")
        self.positive = positive
        self.negative = negative


class NoSignal(CannotFit):
    """On held-out customers the calibrated scores predict no better than the base rate (by more
    than the one parameter the slope costs, as AIC counts): a model from this data is noise."""

    def __init__(self, model_loss: float, base_loss: float) -> None:
        super().__init__(f"held-out log loss {model_loss:.4f} does not beat the base rate's "
                         f"{base_loss:.4f}: the features do not predict purchases here")
        self.model_loss = model_loss
        self.base_loss = base_loss


def history_examples(h: History, kinds_sorted: Sequence[str], now_s: float, *,
                     gaps: bool = True) -> tuple[FloatArray, IntArray, IntArray]:
    """Query times, prefix lengths and labels of one customer's examples (see module doc)."""
    horizon = HORIZON_HOURS * HOUR
    buy_ts = h.ts[np.array([k == PURCHASE for k in kinds_sorted], dtype=bool)]
    q: list[float] = []
    end: list[int] = []
    for i in range(h.n):
        t = float(h.ts[i])
        q.append(t)
        end.append(i + 1)
        if not gaps:
            continue
        nxt = float(h.ts[i + 1]) if i + 1 < h.n else np.inf
        if nxt == t:
            continue  # not the last signal of its instant: no silence follows it
        for off in GAP_OFFSETS_H:
            g = t + off * HOUR
            if g >= nxt:
                break
            q.append(g)
            end.append(i + 1)
    qa = np.array(q, dtype=np.float64)
    ea = np.array(end, dtype=np.int64)
    keep = qa + horizon <= now_s
    qa, ea = qa[keep], ea[keep]
    # label: any purchase with q < t_buy <= q + horizon, from this customer's whole history
    lo = np.searchsorted(buy_ts, qa, side="right")
    hi = np.searchsorted(buy_ts, qa + horizon, side="right")
    return qa, ea, (hi > lo).astype(np.int64)


def sorted_history(signals: Sequence[Signal]) -> tuple[History, list[str]]:
    times = [epoch(s.at) for s in signals]
    order = np.argsort(np.asarray(times, dtype=np.float64), kind="stable")
    kinds = [signals[i].kind for i in order]
    return History(times, [s.kind for s in signals], [s.category for s in signals]), kinds


class TrainingSet(NamedTuple):
    x: FloatArray  # feature_matrix rows (all features but category_rate)
    y: IntArray
    groups: IntArray  # a stable hash of the customer id
    categories: list[str | None]


def training_set(histories: Mapping[str, Sequence[Signal]], now: datetime, *,
                 gaps: bool = True) -> TrainingSet:
    now_s = epoch(now)
    xs: list[FloatArray] = []
    ys: list[IntArray] = []
    gs: list[IntArray] = []
    cats: list[str | None] = []
    for customer, signals in histories.items():
        h, kinds = sorted_history(signals)
        q, end, y = history_examples(h, kinds, now_s, gaps=gaps)
        if not len(q):
            continue
        xs.append(feature_matrix(h, q, end))
        cats.extend(latest_categories(h, q, end))
        ys.append(y)
        gs.append(np.full(len(q), zlib.crc32(customer.encode()), dtype=np.int64))
    if not xs:
        return TrainingSet(np.empty((0, len(FEATURES) - 1)), np.empty(0, np.int64),
                           np.empty(0, np.int64), [])
    return TrainingSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), cats)


def category_rates(categories: Sequence[str | None], y: IntArray, w: FloatArray,
                   base: float) -> dict[str, float]:
    """Smoothed purchase rate per category path, each shrunk towards its parent's rate."""
    pos: dict[str, float] = {}
    n: dict[str, float] = {}
    for c, label, weight in zip(categories, y, w, strict=True):
        if not c:
            continue
        parts = [p for p in c.split(".") if p]
        for k in range(1, len(parts) + 1):
            key = ".".join(parts[:k])
            n[key] = n.get(key, 0.0) + weight
            pos[key] = pos.get(key, 0.0) + weight * label
    rates: dict[str, float] = {}
    for key in sorted(n, key=lambda k: k.count(".")):  # parents before children
        parent = rates.get(key.rpartition(".")[0], base)
        rate = (pos[key] + CATEGORY_SMOOTHING * parent) / (n[key] + CATEGORY_SMOOTHING)
        if n[key] >= MIN_CATEGORY_EXAMPLES:
            rates[key] = rate
    return rates


def fit_arrays(data: TrainingSet, *, weights: FloatArray | None = None, name: str = "fitted",
               source: str = "", licence: str = "", fitted_on: str = "",
               notes: str = "") -> PBuyModel:
    """Fit on a training set (see `fit`); `weights` weigh examples (e.g. sources equally)."""
    y, groups = data.y, data.groups
    positive = int(y.sum())
    negative = int(len(y) - positive)
    if positive < MIN_POSITIVE or negative < MIN_NEGATIVE:
        raise TooFewPurchases(positive, negative)
    w = np.ones(len(y)) if weights is None else weights
    base = float(np.clip(np.average(y, weights=w), 1e-4, 1 - 1e-4))
    # The table is learned on the same examples (heavily smoothed, listed only with 50+
    # examples), so its in-sample optimism is small; the held-out folds below see it too.
    rates = {k: float(np.clip(v, 1e-4, 1 - 1e-4))
             for k, v in category_rates(data.categories, y, w, base).items()}
    probe = PBuyModel(name="fitted", features=list(FEATURES), mean=[0.0] * len(FEATURES),
                      scale=[1.0] * len(FEATURES), coef=[0.0] * len(FEATURES), intercept=0.0,
                      calibration=Calibration(a=1.0, b=0.0), category_rates=rates,
                      base_rate=base)
    cat = np.array([probe.category_logit(c) for c in data.categories], dtype=np.float64)
    x = np.column_stack([data.x, cat])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a feature that never varies gets coefficient ~0 and no division
    xz = (x - mean) / scale
    lr = LogisticRegression(C=C, max_iter=2000)
    folds = min(FOLDS, len(np.unique(groups)))
    if folds < 2:
        raise TooFewPurchases(positive, negative)
    scores = cross_val_predict(lr, xz, y, groups=groups, cv=GroupKFold(n_splits=folds),
                               method="decision_function", params={"sample_weight": w})
    platt = LogisticRegression(C=1e6, max_iter=2000)
    platt.fit(scores.reshape(-1, 1), y, sample_weight=w)
    held_out = float(log_loss(y, platt.predict_proba(scores.reshape(-1, 1))[:, 1],
                              sample_weight=w))
    constant = float(log_loss(y, np.full(len(y), base), sample_weight=w))
    if platt.coef_[0][0] <= 0 or held_out > constant - 1.0 / len(y):
        raise NoSignal(held_out, constant)
    lr.fit(xz, y, sample_weight=w)
    return PBuyModel(
        name="prior" if name == "prior" else "fitted",
        features=list(FEATURES),
        mean=[float(v) for v in mean],
        scale=[float(v) for v in scale],
        coef=[float(v) for v in lr.coef_[0]],
        intercept=float(lr.intercept_[0]),
        calibration=Calibration(a=float(platt.coef_[0][0]), b=float(platt.intercept_[0])),
        category_rates=rates,
        base_rate=base,
        source=source,
        licence=licence,
        fitted_on=fitted_on or f"{len(y)} examples, {positive} with a purchase within "
                               f"{HORIZON_HOURS} h",
        notes=notes,
    )


def fit(histories: Mapping[str, Sequence[Signal]], now: datetime) -> PBuyModel:
    """A model fitted on the customers' stored signals as of `now` (named "fitted").

    Raises `TooFewPurchases` unless there are at least MIN_POSITIVE examples followed by a
    purchase and MIN_NEGATIVE not, and `NoSignal` when held-out customers show the fit ranks
    nothing; either way (`CannotFit`) the caller keeps the prior (or its last fitted model).
    """
    data = training_set(histories, now)
    return fit_arrays(data, source="this shop's stored signals",
                      fitted_on=f"as of {now.isoformat()}: {len(data.y)} examples, "
                                f"{int(data.y.sum())} with a purchase within {HORIZON_HOURS} h")
