"""Intent: how strongly a customer is after each category right now, whether that is a spike above
their own normal, and how likely they are to buy within a day.

One rule: pure functions of (signals, now[, model]); nothing here reads a clock, a file or a
database. Signals after `now` do not exist yet and are ignored.

Intensity. Every signal kind carries a weight that halves every `half_life` (the table below);
a category's intensity is the sum of its signals' decayed weights, squashed to 0..1 as
`1 - exp(-intensity / SQUASH)`: one fresh cart add scores 0.63, one fresh view 0.28, and no pile of
views ever reaches 1. A signal also feeds every ancestor of its dotted category
(`electronics.smartphone` feeds `electronics`), so a campaign's category prefix, matched on whole
segments, finds its score in one entry (`category_score`); an ancestor is the sum of its children.
A signal "still counts" for four half-lives (its weight above 1/16 of what it was).

Spike. The total intensity now against the customer's own trailing baseline: the average
intensity over the 14 days before the last day (the burst itself must not raise its own bar),
floored at BASELINE_FLOOR so a first-ever burst is measured against a modest "nobody" rather than
zero. Active while intensity >= SPIKE_RATIO x baseline; `since` is when it last crossed upwards.

p_buy comes from a `PBuyModel` (`customers/pbuy.py`); `python -m customers.intent` evaluates it
offline and regenerates the shipped prior.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from customers.model import (
    CART_ADD,
    CHECKOUT,
    DIRECTIONS,
    PRODUCT_VIEW,
    PURCHASE,
    SEARCH,
    STORE_LOCATOR,
    CategoryIntent,
    Intent,
    Signal,
    Spike,
)
from customers.pbuy import HORIZON_HOURS, PBuyModel, epoch

HOUR = 3600.0
DAY = 86_400.0

# kind: (weight, half-life in hours). Weights say how much one signal tells about wanting the
# category; half-lives say how long that stays true.
KINDS: dict[str, tuple[float, float]] = {
    # Light and short: a search is curiosity ("I want to know"), often answered within the hour.
    SEARCH: (1.0, 6.0),
    # A product page is interest in that very thing; it holds for a couple of days.
    PRODUCT_VIEW: (2.0, 48.0),
    # Place intent: finding a store, then asking the way there, means going soon ("I want to go").
    STORE_LOCATOR: (3.0, 12.0),
    DIRECTIONS: (4.0, 6.0),
    # Heavy and long: a cart is a decision nearly made, and carts wait for days.
    CART_ADD: (6.0, 72.0),
    # Heaviest and shortest: a checkout ends in a purchase or is abandoned within hours.
    CHECKOUT: (10.0, 6.0),
    # A purchase closes the search it belonged to but says the customer buys in this category
    # (accessories, refills): a moderate weight for a day.
    PURCHASE: (3.0, 24.0),
}
_HALF_LIFE_S = {kind: half_life * HOUR for kind, (_, half_life) in KINDS.items()}
SQUASH = 6.0  # the intensity that scores 1 - 1/e; one fresh cart add
COUNTS_FOR_HALF_LIVES = 4.0
BASELINE_DAYS = 14.0
BASELINE_GAP_DAYS = 1.0  # the last day is left out of the baseline
BASELINE_FLOOR = 2.5  # a first burst must reach 7.5: e.g. a cart add and a view, or four views
SPIKE_RATIO = 3.0
SPIKE_LOOKBACK_S = 3 * DAY  # a burst older than this is the customer's new normal, not a spike


# Times, weights and half-lives of the signals that carry intent, and those signals.
Known = tuple[np.ndarray, np.ndarray, np.ndarray, list[Signal]]


def _known(signals: Sequence[Signal], times: Sequence[float], t: float) -> Known:
    """Times, weights and half-lives (s) of the intent-carrying signals at or before t
    (`times`: each signal's `epoch`)."""
    picked = [i for i, s in enumerate(signals) if s.kind in KINDS and times[i] <= t]
    kept = [signals[i] for i in picked]
    ts = np.array([times[i] for i in picked], dtype=np.float64)
    w = np.array([KINDS[s.kind][0] for s in kept], dtype=np.float64)
    hl = np.array([_HALF_LIFE_S[s.kind] for s in kept], dtype=np.float64)
    return ts, w, hl, kept


def ancestors(category: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`, `a.b.c`]; empty segments (`a..b`, a trailing dot) are dropped."""
    return list(_ancestors(category))


@functools.lru_cache(maxsize=4096)
def _ancestors(category: str) -> tuple[str, ...]:
    # A shop has a bounded catalogue of categories, and every intent walks them again.
    parts = [p.strip() for p in category.split(".") if p.strip()]
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def category_intent(signals: Sequence[Signal], now: datetime) -> list[CategoryIntent]:
    """Per-category intent at `now`, strongest first (ties by name), decayed-away ones left out."""
    t = epoch(now)
    return _category_intent(_known(signals, [epoch(s.at) for s in signals], t), t)


def _category_intent(known: Known, t: float) -> list[CategoryIntent]:
    ts, w, hl, kept = known
    if not kept:
        return []
    decay = np.exp2(-(t - ts) / hl)
    contribution = (w * decay).tolist()
    counts = ((t - ts) < COUNTS_FOR_HALF_LIVES * hl).tolist()
    intensity: dict[str, float] = {}
    n: dict[str, int] = {}
    for i, s in enumerate(kept):
        if not counts[i] or not s.category:
            continue
        for c in _ancestors(s.category):
            intensity[c] = intensity.get(c, 0.0) + contribution[i]
            n[c] = n.get(c, 0) + 1
    out = [CategoryIntent(c, round(1.0 - math.exp(-v / SQUASH), 4), n[c])
           for c, v in intensity.items()]
    out.sort(key=lambda ci: (-ci.score, ci.category))
    return out


def category_score(by_category: Sequence[CategoryIntent], prefix: str) -> float:
    """The score of a campaign's category prefix (whole segments: `electronics` covers
    `electronics.smartphone`, not `electronicsx`); 0 when the customer shows none."""
    path = ancestors(prefix)
    if not path:
        return 0.0
    return next((ci.score for ci in by_category if ci.category == path[-1]), 0.0)


def _intensity_at(q: np.ndarray, ts: np.ndarray, w: np.ndarray, hl: np.ndarray,
                  *, strictly_before: bool = False) -> np.ndarray:
    """Total intensity at each query time from the signals at (or strictly before) it."""
    age = q[:, None] - ts[None, :]
    seen = age > 0 if strictly_before else age >= 0
    out: np.ndarray = np.where(seen, w * np.exp2(-np.maximum(age, 0.0) / hl), 0.0).sum(axis=1)
    return out


def _baseline_at(q: np.ndarray, ts: np.ndarray, w: np.ndarray, hl: np.ndarray) -> np.ndarray:
    """Average intensity over [q - 15d, q - 1d], in closed form: a signal at ti contributes
    w*h/ln2 * (2^-(max(a,ti)-ti)/h - 2^-(b-ti)/h) to the integral over [a, b] when ti < b."""
    a = (q - (BASELINE_DAYS + BASELINE_GAP_DAYS) * DAY)[:, None]
    b = (q - BASELINE_GAP_DAYS * DAY)[:, None]
    start = np.maximum(a, ts[None, :])
    area = np.where(ts[None, :] < b,
                    w * hl / math.log(2) * (np.exp2(-(start - ts) / hl) - np.exp2(-(b - ts) / hl)),
                    0.0)
    avg = area.sum(axis=1) / (BASELINE_DAYS * DAY)
    floored: np.ndarray = np.maximum(avg, BASELINE_FLOOR)
    return floored


def spike(signals: Sequence[Signal], now: datetime) -> Spike:
    """Whether total intensity is a spike above the customer's own baseline, since when, and the
    ratio (reported whenever the customer has any intensity at all)."""
    t = epoch(now)
    return _spike(_known(signals, [epoch(s.at) for s in signals], t), t)


def _spike(known: Known, t: float) -> Spike:
    ts, w, hl, kept = known
    if not kept:
        return Spike(active=False)
    now_q = np.array([t])
    level = float(_intensity_at(now_q, ts, w, hl)[0])
    ratio = level / float(_baseline_at(now_q, ts, w, hl)[0])
    if ratio < SPIKE_RATIO:
        return Spike(active=False, ratio=round(ratio, 3))
    # Intensity only jumps up at signals and decays in between, so the burst began at the last
    # signal time, walking back, just before which the customer was below their threshold.
    times = np.unique(ts[ts > t - SPIKE_LOOKBACK_S])
    if not len(times):  # above its baseline, but nothing within the lookback: the new normal
        return Spike(active=False, ratio=round(ratio, 3))
    before = _intensity_at(times, ts, w, hl, strictly_before=True)
    below = before < SPIKE_RATIO * _baseline_at(times, ts, w, hl)
    crossings = times[below]
    started = float(crossings[-1]) if len(crossings) else float(times[0])
    return Spike(active=True, since=datetime.fromtimestamp(started, UTC), ratio=round(ratio, 3))


def intent(signals: Sequence[Signal], now: datetime, model: PBuyModel) -> Intent:
    """Everything the context says about intent, with the name of the model that gave p_buy."""
    if not signals:
        # Without signals nothing depends on `now` (no counts, every "hours since" capped, no
        # category): the answer is the model's own, computed once per model.
        known = _WITHOUT_SIGNALS.get(id(model))
        if known is not None and known[0] is model:
            return known[1]
        made = _intent(signals, [], epoch(now), model)
        _WITHOUT_SIGNALS.clear()  # one model at a time is in use: the latest
        _WITHOUT_SIGNALS[id(model)] = (model, made)
        return made
    return _intent(signals, [epoch(s.at) for s in signals], epoch(now), model)


_WITHOUT_SIGNALS: dict[int, tuple[PBuyModel, Intent]] = {}


def _intent(signals: Sequence[Signal], times: Sequence[float], t: float,
            model: PBuyModel) -> Intent:
    """`intent` with each signal's `epoch` and now's given (each computed once)."""
    known = _known(signals, times, t)
    return Intent(
        p_buy=round(model.predict_at(signals, times, t), 4),
        intent_horizon_hours=HORIZON_HOURS,
        by_category=_category_intent(known, t),
        spike=_spike(known, t),
        model=model.name,
    )


if __name__ == "__main__":
    from customers.intent_eval import main

    sys.exit(main())
