"""Next-place prediction: P(next place | the customer's visits, the population's visits, now).

One rule: the model is pure — visits in, ranked (place, probability) pairs out; it never reads a
clock, a file or a database. Reading CSVs, saving models and the evaluation CLI live at the bottom
of this module and only feed the model data.

How it predicts. For a customer at (or just after) place `l` at time `now`, candidates are the
customer's frequent and recent places, their own and the population's usual next steps from `l`,
the most popular places, and popular places around `l`. Each candidate gets feature scores known
to work for next-place prediction: the customer's transitions from `l`, visit frequency and
recency, time-of-day and day-of-week affinity, the population's transitions and popularity (the
fallback for new or sparse customers), and distance from `l` and from the customer's usual area
when coordinates are known. A conditional-logit (softmax) ranker combines them. Its weights are
fitted by Newton's method on a held-out, later slice of the training visits replayed online, so
they match how the model is used. An extra "somewhere else" option takes the probability mass of
places outside the candidates; without it, probabilities would be overconfident.

Coordinates: places learn their position from the first visit that carries lat/lng, or from the
`places` mapping given to `fit` (place_id -> (lat, lng)), which takes precedence.

Time of day and day of week are read from each timestamp in its own UTC offset, so RFC 3339
timestamps with local offsets give local habits; Unix seconds are taken as UTC.

CLI:
    python -m geo.predict evaluate --train T.csv --test S.csv [--out P.csv]
        Fits on T, then replays S in time order: each row is predicted from T and the rows of S
        before it in time (never itself or later rows), then learned. Prints Acc@1/5/10 and MRR
        (a place ranked beyond 100 counts as 0) for the model and for the global-most-popular,
        user-most-frequent and user first-order Markov baselines under the same protocol, and a
        reliability table of the model's probabilities. --out writes `row,p1,...,p10` per row of
        S in S's order.
    python -m geo.predict fit --visits V.csv --model M
        Fits on V and saves the model as msgpack for `load_model`.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from _csv import Reader

FloatArray = npt.NDArray[np.float64]

SHORT_TAU_S = 86_400.0  # one day: "they were here yesterday"
LONG_TAU_S = 21 * 86_400.0  # three weeks: the current routine, forgetting old ones
GAP_TAU_H = 4.0  # a transition habit matters most right after leaving the last place
HOUR_BINS = 8  # three-hour bins, interpolated so 08:55 and 09:05 look alike
GRID_DEG = 0.02  # about 2 km: the neighbourhood of the last place
TOP_USER = 15
TOP_RECENT = 6
TOP_USER_NEXT = 8
TOP_POP_NEXT = 8
TOP_POPULAR = 6
TOP_CELL = 6
TOP_NEIGHBOUR_CELL = 1
VALIDATION_SHARE = 0.2
MAX_VALIDATION_EXAMPLES = 5_000
PRIOR_STRENGTH = 10.0  # the prior below counts as much as about this many examples
HESSIAN_EXAMPLES = 1_500
EARTH_RADIUS_KM = 6371.0088
KM_PER_DEG = math.radians(1.0) * EARTH_RADIUS_KM

FEATURES = (
    "user_next_p", "user_next_log", "user_next_fresh", "user_freq_p", "user_freq_log",
    "user_recency_day", "user_recency_weeks", "user_hour_lift", "user_dow_lift",
    "user_daytype_lift", "pop_next_p", "pop_next_log", "pop_log", "pop_hour_lift",
    "pop_daytype_lift", "log_km_from_last", "log_km_from_home", "km_unknown", "is_last",
    "new_x_novelty", "is_new",
    # The last three describe the "somewhere else" option only; candidates score 0 on them.
    "other_bias", "other_log_visits", "other_novelty",
)
N_FEATURES = len(FEATURES)
# A weak prior for the ranker (habits beat popularity, nearer beats farther). It only matters
# when there are few held-out examples to fit on; with thousands the data decide alone.
PRIOR_WEIGHTS = {
    "user_next_p": 1.5, "user_freq_p": 3.0, "user_recency_weeks": 0.5, "user_hour_lift": 1.0,
    "pop_next_p": 1.0, "pop_log": 0.3, "log_km_from_last": -0.3, "other_bias": 2.0,
}


class Visit(msgspec.Struct, frozen=True):
    user_id: str
    place_id: str
    arrived_at: datetime
    departed_at: datetime | None = None
    lat: float | None = None
    lng: float | None = None


class InvalidVisits(ValueError):
    """Visit CSV input that cannot be read; names the line (1-based) and the column."""

    def __init__(self, line: int, column: str, message: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


# --- model state (msgspec structs so the whole model saves as msgpack, never pickle) -----------


class _UserPlace(msgspec.Struct, array_like=True):
    count: float = 0.0
    recent_day: float = 0.0  # exponentially decayed visit count as of `last`
    recent_weeks: float = 0.0
    last: float = 0.0  # epoch seconds of the latest arrival
    dow: list[float] = msgspec.field(default_factory=lambda: [0.0] * 7)
    hours: list[float] = msgspec.field(default_factory=lambda: [0.0] * HOUR_BINS)


class _User(msgspec.Struct, array_like=True):
    visits: float = 0.0
    places: dict[str, _UserPlace] = msgspec.field(default_factory=dict)
    next: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    next_out: dict[str, float] = msgspec.field(default_factory=dict)
    top: list[str] = msgspec.field(default_factory=list)
    recent: list[str] = msgspec.field(default_factory=list)  # distinct, most recent last
    last_place: str | None = None
    last_time: float = 0.0
    home_lat: float = 0.0  # running mean of visited coordinates
    home_lng: float = 0.0
    home_n: float = 0.0


class _Place(msgspec.Struct, array_like=True):
    count: float = 0.0
    weekend: float = 0.0
    hours: list[float] = msgspec.field(default_factory=lambda: [0.0] * HOUR_BINS)
    lat: float | None = None
    lng: float | None = None
    out: float = 0.0  # transitions leaving this place, all customers
    cell: str | None = None  # grid cell key, cached because update runs for every visit


class _State(msgspec.Struct):
    version: int = 1
    weights: list[float] = msgspec.field(
        default_factory=lambda: [PRIOR_WEIGHTS.get(f, 0.0) for f in FEATURES])
    users: dict[str, _User] = msgspec.field(default_factory=dict)
    places: dict[str, _Place] = msgspec.field(default_factory=dict)
    next: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    next_top: dict[str, list[str]] = msgspec.field(default_factory=dict)
    popular: list[str] = msgspec.field(default_factory=list)
    cells: dict[str, list[str]] = msgspec.field(default_factory=dict)
    total: float = 0.0
    weekend_total: float = 0.0


# Stand-ins for "never visited", read-only: they keep the hot loop free of branches.
_NO_USER_PLACE = _UserPlace()
_NO_PLACE = _Place()


def _epoch(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _hour_pos(dt: datetime) -> tuple[int, float]:
    """Interpolation bin and weight for the local wall-clock hour (the timestamp's own offset)."""
    pos = (dt.hour + dt.minute / 60.0) / (24.0 / HOUR_BINS) - 0.5
    base = math.floor(pos)
    return base % HOUR_BINS, pos - base


def _cell(lat: float, lng: float, di: int = 0, dj: int = 0) -> str:
    return f"{math.floor(lat / GRID_DEG) + di}:{math.floor(lng / GRID_DEG) + dj}"


def _bump_top(top: list[str], key: str, count: Callable[[str], float], k: int) -> None:
    """Keep `top` the k keys with the highest count after `key`'s count grew (counts only grow,
    so this stays exact with O(k) work instead of re-sorting everything)."""
    if key in top:
        i = top.index(key)
    elif len(top) < k:
        top.append(key)
        i = len(top) - 1
    elif count(key) > count(top[-1]):
        top[-1] = key
        i = k - 1
    else:
        return
    c = count(key)
    while i > 0 and count(top[i - 1]) < c:
        top[i - 1], top[i] = top[i], top[i - 1]
        i -= 1


def _top_by_value(d: dict[str, float], k: int) -> list[str]:
    if len(d) <= k:
        return list(d)
    return sorted(d, key=d.__getitem__, reverse=True)[:k]


# Raw per-candidate columns gathered in Python; `_features` turns them into FEATURES with numpy.
(R_UNEXT, R_UOUT, R_UCOUNT, R_DAY, R_WEEKS, R_SINCE, R_UHOUR, R_UDOW, R_UWKND, R_PNEXT,
 R_POUT, R_PCOUNT, R_PHOUR, R_PWKND, R_LAT, R_LNG, R_ISLAST) = range(17)
N_RAW = 17
# Per-example context columns.
(C_VISITS, C_DISTINCT, C_GAP_H, C_LAST_LAT, C_LAST_LNG, C_HOME_LAT, C_HOME_LNG, C_WEEKEND,
 C_WKND_SHARE) = range(9)
N_CTX = 9


def _km(lat0: FloatArray, lng0: FloatArray, lat: FloatArray, lng: FloatArray) -> FloatArray:
    """Equirectangular distance: within a city it is as good as haversine, at a third the cost,
    and far away only its logarithm is used."""
    kx = np.cos(np.radians(lat0)) * KM_PER_DEG
    out: FloatArray = np.hypot((lat - lat0) * KM_PER_DEG, (lng - lng0) * kx)
    return out


def _features(raw: FloatArray, ctx: FloatArray) -> FloatArray:
    """Feature matrix for candidate rows `raw`, each with its example's context row `ctx`.

    Every feature is a smoothed log-ratio or probability, so a user or place with no data scores
    the neutral value and the fitted weights transfer between data sets of different sizes.
    """
    n = raw.shape[0]
    f = np.zeros((n, N_FEATURES))
    uc = raw[:, R_UCOUNT]
    f[:, 0] = raw[:, R_UNEXT] / (raw[:, R_UOUT] + 1.0)
    f[:, 1] = np.log1p(raw[:, R_UNEXT])
    f[:, 2] = f[:, 0] * np.exp(-ctx[:, C_GAP_H] / GAP_TAU_H)
    f[:, 3] = uc / (ctx[:, C_VISITS] + 1.0)
    f[:, 4] = np.log1p(uc)
    since = np.maximum(raw[:, R_SINCE], 0.0)
    f[:, 5] = np.log1p(raw[:, R_DAY] * np.exp(-since / SHORT_TAU_S))
    f[:, 6] = np.log1p(raw[:, R_WEEKS] * np.exp(-since / LONG_TAU_S))
    f[:, 7] = np.log(HOUR_BINS * (raw[:, R_UHOUR] + 1.0 / HOUR_BINS) / (uc + 1.0))
    f[:, 8] = np.log(7.0 * (raw[:, R_UDOW] + 1.0 / 7.0) / (uc + 1.0))
    wk = ctx[:, C_WKND_SHARE]
    prior = np.where(ctx[:, C_WEEKEND] > 0, wk, 1.0 - wk)
    f[:, 9] = np.log((raw[:, R_UWKND] + prior) / (uc + 1.0) / prior)
    pc = raw[:, R_PCOUNT]
    f[:, 10] = raw[:, R_PNEXT] / (raw[:, R_POUT] + 1.0)
    f[:, 11] = np.log1p(raw[:, R_PNEXT])
    f[:, 12] = np.log1p(pc)
    f[:, 13] = np.log(HOUR_BINS * (raw[:, R_PHOUR] + 2.0 / HOUR_BINS) / (pc + 2.0))
    f[:, 14] = np.log((raw[:, R_PWKND] + 2.0 * prior) / (pc + 2.0) / prior)
    d_last = _km(ctx[:, C_LAST_LAT], ctx[:, C_LAST_LNG], raw[:, R_LAT], raw[:, R_LNG])
    d_home = _km(ctx[:, C_HOME_LAT], ctx[:, C_HOME_LNG], raw[:, R_LAT], raw[:, R_LNG])
    known = np.isfinite(d_last)
    f[:, 15] = np.where(known, np.log(np.where(known, d_last, 1.0) + 0.05), 0.0)
    known_home = np.isfinite(d_home)
    f[:, 16] = np.where(known_home, np.log(np.where(known_home, d_home, 1.0) + 0.05), 0.0)
    f[:, 17] = ~known
    f[:, 18] = raw[:, R_ISLAST]
    novelty = np.log((ctx[:, C_DISTINCT] + 1.0) / (ctx[:, C_VISITS] + 2.0))
    f[:, 20] = uc == 0
    f[:, 19] = f[:, 20] * novelty
    return f


def _other_row(ctx: FloatArray) -> FloatArray:
    """Features of the "somewhere else" option (`_probabilities` inlines the same formula)."""
    row = np.zeros(N_FEATURES)
    row[-3] = 1.0
    row[-2] = math.log1p(ctx[C_VISITS])
    row[-1] = math.log((ctx[C_DISTINCT] + 1.0) / (ctx[C_VISITS] + 2.0))
    return row


class NextPlaceModel:
    """Online next-place model; `fit` once, `update` as visits end, `predict` on the hot path."""

    def __init__(self, state: _State | None = None) -> None:
        self._s = state if state is not None else _State()
        self._w = np.asarray(self._s.weights)  # the hot path should not rebuild it

    # --- learning -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, visits: Iterable[Visit], *, seed: int = 0,
            places: dict[str, tuple[float, float]] | None = None) -> NextPlaceModel:
        """Learn statistics from `visits` and fit the ranker's weights on their latest slice.

        The earliest (1 - VALIDATION_SHARE) of the visits build the statistics; the rest are
        replayed in time order, each predicted before it is learned, which gives the ranker its
        training examples under the same protocol as serving. All visits end up in the model.
        """
        ordered = sorted(visits, key=lambda v: _epoch(v.arrived_at))
        model = cls()
        for pid, (lat, lng) in (places or {}).items():
            model._s.places[pid] = _Place(lat=lat, lng=lng, cell=_cell(lat, lng))
        cut = int(len(ordered) * (1.0 - VALIDATION_SHARE))
        for v in ordered[:cut]:
            model.update(v)
        held = ordered[cut:]
        # Subsample which held-out visits become examples, but learn from all of them.
        rng = np.random.default_rng(seed)
        keep = np.ones(len(held), dtype=bool)
        if len(held) > MAX_VALIDATION_EXAMPLES:
            keep[:] = False
            keep[rng.choice(len(held), MAX_VALIDATION_EXAMPLES, replace=False)] = True
        raws: list[FloatArray] = []
        ctxs: list[FloatArray] = []
        targets: list[int] = []
        for v, use in zip(held, keep, strict=True):
            if use:
                cands, raw, ctx = model._gather(v.user_id, (), v.arrived_at)
                if cands:
                    raws.append(raw)
                    ctxs.append(ctx)
                    targets.append(cands.index(v.place_id) if v.place_id in cands else -1)
            model.update(v)
        if targets:  # otherwise the prior weights stay
            model._s.weights = _fit_weights(raws, ctxs, targets).tolist()
            model._w = np.asarray(model._s.weights)
        return model

    def update(self, visit: Visit) -> None:
        """Learn one finished visit: O(number of top-k lists touched), no re-sorting."""
        s = self._s
        t = _epoch(visit.arrived_at)
        wall = visit.arrived_at
        bin_i, frac = _hour_pos(wall)
        dow = wall.weekday()
        weekend = 1.0 if dow >= 5 else 0.0
        pid = visit.place_id
        user = s.users.get(visit.user_id)
        if user is None:
            user = s.users[visit.user_id] = _User()
        place = s.places.get(pid)
        if place is None:
            place = s.places[pid] = _Place()
        if place.lat is None and visit.lat is not None and visit.lng is not None:
            place.lat, place.lng = visit.lat, visit.lng
            place.cell = _cell(visit.lat, visit.lng)

        prev = user.last_place
        if prev is not None:
            succ = user.next.setdefault(prev, {})
            succ[pid] = succ.get(pid, 0.0) + 1.0
            user.next_out[prev] = user.next_out.get(prev, 0.0) + 1.0
            pop = s.next.setdefault(prev, {})
            pop[pid] = pop.get(pid, 0.0) + 1.0
            s.places[prev].out += 1.0
            _bump_top(s.next_top.setdefault(prev, []), pid, pop.__getitem__, TOP_POP_NEXT)

        up = user.places.get(pid)
        if up is None:
            up = user.places[pid] = _UserPlace()
        dt = max(t - up.last, 0.0) if up.count else 0.0
        up.recent_day = up.recent_day * math.exp(-dt / SHORT_TAU_S) + 1.0
        up.recent_weeks = up.recent_weeks * math.exp(-dt / LONG_TAU_S) + 1.0
        up.last = max(up.last, t)
        up.count += 1.0
        up.dow[dow] += 1.0
        up.hours[bin_i] += 1.0 - frac
        up.hours[(bin_i + 1) % HOUR_BINS] += frac
        user.visits += 1.0
        places_of_user = user.places
        _bump_top(user.top, pid, lambda p: places_of_user[p].count, TOP_USER)
        if pid in user.recent:
            user.recent.remove(pid)
        user.recent.append(pid)
        del user.recent[:-TOP_RECENT]
        if place.lat is not None and place.lng is not None:
            user.home_n += 1.0
            user.home_lat += (place.lat - user.home_lat) / user.home_n
            user.home_lng += (place.lng - user.home_lng) / user.home_n
        user.last_place = pid
        user.last_time = _epoch(visit.departed_at) if visit.departed_at else t

        place.count += 1.0
        place.weekend += weekend
        place.hours[bin_i] += 1.0 - frac
        place.hours[(bin_i + 1) % HOUR_BINS] += frac
        s.total += 1.0
        s.weekend_total += weekend
        places = s.places
        _bump_top(s.popular, pid, lambda p: places[p].count, TOP_POPULAR)
        if place.cell is not None:
            _bump_top(s.cells.setdefault(place.cell, []), pid, lambda p: places[p].count,
                      TOP_CELL)

    # --- prediction ------------------------------------------------------------------------------

    def predict(self, user: str, history: Sequence[Visit], now: datetime, k: int = 10, *,
                min_probability: float = 0.0) -> list[tuple[str, float]]:
        """The k likeliest next places for `user` at `now`, with calibrated probabilities.

        `history` is what the caller knows of the user's recent visits (most recent last); its
        last visit is taken as where the user is or has just been, and its places are candidates.
        Probabilities of the returned places sum to at most 1: the rest is "somewhere else".
        """
        cands, raw, ctx = self._gather(user, history, now)
        if not cands:
            return []
        probs = _probabilities(self._w, raw, ctx)
        order = np.argsort(-probs, kind="stable")[:k]
        return [(cands[i], float(probs[i])) for i in order if probs[i] >= min_probability]

    def _gather(self, user_id: str, history: Sequence[Visit],
                now: datetime) -> tuple[list[str], FloatArray, FloatArray]:
        s = self._s
        user = s.users.get(user_id)
        last: str | None
        if history:
            last = history[-1].place_id
            end = history[-1].departed_at or history[-1].arrived_at
            gap_h = (_epoch(now) - _epoch(end)) / 3600.0
        elif user is not None and user.last_place is not None:
            last = user.last_place
            gap_h = (_epoch(now) - user.last_time) / 3600.0
        else:
            last, gap_h = None, 1e6

        seen: dict[str, None] = {}
        if user is not None:
            seen.update(dict.fromkeys(user.top))
            seen.update(dict.fromkeys(user.recent))
        for v in history[-TOP_RECENT:]:
            seen[v.place_id] = None
        user_next: dict[str, float] = {}
        last_place = s.places.get(last) if last is not None else None
        if last is not None:
            if user is not None:
                user_next = user.next.get(last, {})
                seen.update(dict.fromkeys(_top_by_value(user_next, TOP_USER_NEXT)))
            seen.update(dict.fromkeys(s.next_top.get(last, ())))
        seen.update(dict.fromkeys(s.popular))
        last_lat = last_lng = math.nan
        if last_place is not None and last_place.lat is not None and last_place.lng is not None:
            last_lat, last_lng = last_place.lat, last_place.lng
        elif history and history[-1].lat is not None and history[-1].lng is not None:
            # A place the model has not learned yet still tells where the customer is.
            last_lat, last_lng = history[-1].lat, history[-1].lng
        if not math.isnan(last_lat):
            cells = s.cells
            seen.update(dict.fromkeys(cells.get(_cell(last_lat, last_lng), ())))
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if di or dj:
                        nb = cells.get(_cell(last_lat, last_lng, di, dj))
                        if nb:
                            seen.update(dict.fromkeys(nb[:TOP_NEIGHBOUR_CELL]))
        cands = list(seen)
        if not cands:
            return [], np.zeros((0, N_RAW)), np.zeros(N_CTX)

        bin_i, frac = _hour_pos(now)
        bin_j = (bin_i + 1) % HOUR_BINS
        dow = now.weekday()
        weekend = dow >= 5
        t_now = _epoch(now)
        pop_next = s.next.get(last, {}) if last is not None else {}
        pop_out = last_place.out if last_place is not None else 0.0
        user_out = user.next_out.get(last, 0.0) if (user is not None and last is not None) else 0.0
        uplaces = user.places if user is not None else {}
        places = s.places
        nan = math.nan
        w0, w1 = 1.0 - frac, frac
        next_of, up_of, place_of = user_next.get, uplaces.get, places.get
        rows: list[tuple[float, ...]] = []
        for pid in cands:
            up = up_of(pid, _NO_USER_PLACE)
            pl = place_of(pid, _NO_PLACE)
            uh, ud, ph = up.hours, up.dow, pl.hours
            rows.append((
                next_of(pid, 0.0), user_out,
                up.count, up.recent_day, up.recent_weeks, t_now - up.last,
                w0 * uh[bin_i] + w1 * uh[bin_j], ud[dow],
                ud[5] + ud[6] if weekend else up.count - ud[5] - ud[6],
                pop_next.get(pid, 0.0), pop_out,
                pl.count, w0 * ph[bin_i] + w1 * ph[bin_j],
                pl.weekend if weekend else pl.count - pl.weekend,
                nan if pl.lat is None else pl.lat, nan if pl.lng is None else pl.lng,
                1.0 if pid == last else 0.0,
            ))
        home_ok = user is not None and user.home_n > 0
        ctx = np.array([
            user.visits if user is not None else 0.0,
            len(user.places) if user is not None else 0.0,
            max(gap_h, 0.0),
            last_lat, last_lng,
            user.home_lat if (user is not None and home_ok) else nan,
            user.home_lng if (user is not None and home_ok) else nan,
            1.0 if weekend else 0.0,
            (s.weekend_total + 2.0) / (s.total + 7.0),
        ])
        return cands, np.array(rows, dtype=np.float64), ctx


def _probabilities(w: FloatArray, raw: FloatArray, ctx: FloatArray) -> FloatArray:
    feats = _features(raw, ctx[None, :])
    scores = feats @ w
    other = (w[-3] + w[-2] * math.log1p(ctx[C_VISITS])
             + w[-1] * math.log((ctx[C_DISTINCT] + 1.0) / (ctx[C_VISITS] + 2.0)))
    top = max(float(scores.max()), other)
    e = np.exp(scores - top)
    out: FloatArray = e / (e.sum() + math.exp(other - top))
    return out


def _fit_weights(raws: list[FloatArray], ctxs: list[FloatArray], targets: list[int]) -> FloatArray:
    """Conditional-logit weights by damped Newton steps on the held-out examples.

    Each example is its candidate rows plus the "somewhere else" row (last), whose target is the
    held-out place, or "somewhere else" when that place was not among the candidates.
    """
    sizes = np.array([r.shape[0] + 1 for r in raws])
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    blocks: list[FloatArray] = []
    for raw, ctx in zip(raws, ctxs, strict=True):
        blocks.append(np.zeros((raw.shape[0], N_FEATURES)))
        blocks.append(_other_row(ctx)[None, :])
    x = np.vstack(blocks)
    # One vectorised pass over all candidate rows: features do not depend on the example size.
    is_cand = np.ones(x.shape[0], dtype=bool)
    is_cand[starts + sizes - 1] = False
    x[is_cand] = _features(np.vstack(raws), np.repeat(np.vstack(ctxs), sizes - 1, axis=0))
    y = np.zeros(x.shape[0])
    tgt = np.array(targets)
    y[np.where(tgt >= 0, starts + tgt, starts + sizes - 1)] = 1.0
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = x / scale
    zt = np.ascontiguousarray(z.T)
    seg = np.repeat(np.arange(len(raws)), sizes)
    n_ex = float(len(raws))
    prior = np.array([PRIOR_WEIGHTS.get(f, 0.0) for f in FEATURES]) * scale
    ridge = max(PRIOR_STRENGTH / n_ex, 1e-4)

    def loss_grad(w: FloatArray) -> tuple[float, FloatArray]:
        s = z @ w
        mx = np.maximum.reduceat(s, starts)
        e = np.exp(s - mx[seg])
        den = np.add.reduceat(e, starts)
        p = e / den[seg]
        d = w - prior
        loss = float(-(s[y > 0] - mx - np.log(den)).sum()) / n_ex + ridge * float(d @ d)
        return loss, zt @ (p - y) / n_ex + 2 * ridge * d

    # The Hessian comes from a fixed subsample of examples: exact enough to steer Newton steps
    # (the line search and the full gradient keep them honest) at a fraction of the cost.
    rng = np.random.default_rng(0)
    sub_ex = np.sort(rng.choice(len(raws), min(len(raws), HESSIAN_EXAMPLES), replace=False))
    sub_rows = np.concatenate([np.arange(starts[i], starts[i] + sizes[i]) for i in sub_ex])
    zs = z[sub_rows]
    zst = np.ascontiguousarray(zs.T)
    sub_ends = np.cumsum(sizes[sub_ex])
    sub_starts = np.concatenate(([0], sub_ends[:-1]))
    sub_seg = np.repeat(np.arange(len(sub_ex)), sizes[sub_ex])

    def hessian(w: FloatArray) -> FloatArray:
        s = zs @ w
        mx = np.maximum.reduceat(s, sub_starts)
        e = np.exp(s - mx[sub_seg])
        p = e / np.add.reduceat(e, sub_starts)[sub_seg]
        # Per-example sums by differences of a running sum: much faster than a 2-D reduceat.
        run = np.vstack((np.zeros((1, len(w))), np.cumsum(p[:, None] * zs, axis=0)))
        mean = run[sub_ends] - run[sub_starts]
        h: FloatArray = ((zst * p) @ zs - mean.T @ mean) / len(sub_ex)
        return h + 2 * ridge * np.eye(len(w))

    w = prior.copy()
    loss, grad = loss_grad(w)
    for _ in range(40):
        step = np.linalg.solve(hessian(w), grad)
        t = 1.0
        while t > 1e-4:
            cand = w - t * step
            new_loss, new_grad = loss_grad(cand)
            if new_loss <= loss:
                break
            t /= 2
        else:
            break
        converged = loss - new_loss < 1e-7
        w, loss, grad = cand, new_loss, new_grad
        if converged:
            break
    out: FloatArray = w / scale
    return out


# --- persistence ---------------------------------------------------------------------------------

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_State)


def save_model(model: NextPlaceModel, path: str | Path) -> None:
    """Write the model as msgpack (never pickle: loading must not run code)."""
    Path(path).write_bytes(_ENCODER.encode(model._s))


def load_model(path: str | Path) -> NextPlaceModel:
    state = _DECODER.decode(Path(path).read_bytes())
    if len(state.weights) != N_FEATURES:
        raise ValueError(f"{path}: model has {len(state.weights)} weights, expected {N_FEATURES}")
    return NextPlaceModel(state)


# --- CSV -----------------------------------------------------------------------------------------

REQUIRED_COLUMNS = ("user_id", "place_id", "ts")


def _parse_ts(text: str) -> datetime:
    """RFC 3339 keeps its own offset (it sets the local time of day); Unix seconds are UTC."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    dt = datetime.fromisoformat(text)  # raises ValueError for anything else
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def read_visits_csv(path_or_text: str | Path) -> list[Visit]:
    """Visits from a CSV with header `user_id,place_id,ts` and optional `lat,lng`, in file order.

    A `Path`, or a string without a newline, is a file name; any other string is the CSV text.
    `ts` is RFC 3339 (a missing offset means UTC) or Unix seconds. Empty lat and lng are allowed;
    one without the other is not. Raises `InvalidVisits` naming the line and column.
    """
    if isinstance(path_or_text, Path) or "\n" not in path_or_text:
        text = Path(path_or_text).read_text(encoding="utf-8-sig")
    else:
        text = path_or_text
    # newline="": the csv module reads the line ends itself, a lone CR included, as its docs ask
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _read_visit_rows(reader)
    except csv.Error as exc:  # e.g. a field past the module's limit: this is not CSV to us
        raise InvalidVisits(reader.line_num or 1, "row", f"not CSV: {exc}") from None


def _read_visit_rows(reader: Reader) -> list[Visit]:
    header = next(reader, None)
    if header is None:
        raise InvalidVisits(1, "header", "the file is empty; expected user_id,place_id,ts")
    names = [h.strip() for h in header]
    for col in REQUIRED_COLUMNS:
        if col not in names:
            raise InvalidVisits(1, col, f"missing column {col!r} in header {','.join(names)!r}")
    if ("lat" in names) != ("lng" in names):
        raise InvalidVisits(1, "lat" if "lat" not in names else "lng",
                            "lat and lng columns must come together")
    iu, ip, it = (names.index(c) for c in REQUIRED_COLUMNS)
    ilat = names.index("lat") if "lat" in names else -1
    ilng = names.index("lng") if "lng" in names else -1
    out: list[Visit] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(names):
            raise InvalidVisits(line, names[min(len(row), len(names) - 1)],
                                f"expected {len(names)} fields, got {len(row)}")
        user, place, ts = row[iu].strip(), row[ip].strip(), row[it].strip()
        if not user:
            raise InvalidVisits(line, "user_id", "empty user_id")
        if not place:
            raise InvalidVisits(line, "place_id", "empty place_id")
        for column, cell in (("user_id", user), ("place_id", place)):
            if "\x00" in cell:  # the ids are stored as text, which PostgreSQL refuses NUL in
                raise InvalidVisits(line, column, "must not contain NUL (U+0000)")
        try:
            arrived = _parse_ts(ts)
        except ValueError:
            raise InvalidVisits(
                line, "ts", f"{ts!r} is neither RFC 3339 nor Unix seconds"
            ) from None
        lat = lng = None
        if ilat >= 0:
            lat = _coordinate(row[ilat], line, "lat", 90.0)
            lng = _coordinate(row[ilng], line, "lng", 180.0)
            if (lat is None) != (lng is None):
                raise InvalidVisits(line, "lat" if lat is None else "lng",
                                    "lat and lng must both be given or both be empty")
        out.append(Visit(user, place, arrived, lat=lat, lng=lng))
    return out


def _coordinate(text: str, line: int, column: str, bound: float) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidVisits(line, column, f"{text!r} is not a number") from None
    if not (math.isfinite(value) and -bound <= value <= bound):
        raise InvalidVisits(line, column, f"{value} is outside -{bound:g}..{bound:g}")
    return value


# --- evaluation ----------------------------------------------------------------------------------

CUTOFFS = (1, 5, 10)
RANK_DEPTH = 100  # MRR counts a hit anywhere in the first 100 places; beyond, it scores 0
HISTORY_KEPT = 10
RELIABILITY_BINS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0001)


class Scores(msgspec.Struct, frozen=True):
    name: str
    acc: dict[int, float]
    mrr: float


class Reliability(msgspec.Struct, frozen=True):
    low: float
    high: float
    count: int
    mean_predicted: float
    observed: float


class Evaluation(msgspec.Struct, frozen=True):
    rows: int
    scores: list[Scores]  # the model first, then the baselines
    reliability: list[Reliability]
    rankings: list[list[str]]  # the model's top 10 for each test row, in the test file's order
    fit_seconds: float
    predict_seconds: float


class _Baselines:
    """Global most popular, user most frequent, user first-order Markov — all learned online."""

    names = ("global most popular", "user most frequent", "user Markov (1st order)")

    def __init__(self) -> None:
        self.pop: dict[str, int] = {}
        self.user: dict[str, dict[str, int]] = {}
        self.trans: dict[str, dict[str, dict[str, int]]] = {}
        self.last: dict[str, str] = {}
        self.pop_top: list[str] = []

    def update(self, v: Visit) -> None:
        self.pop[v.place_id] = self.pop.get(v.place_id, 0) + 1
        _bump_top(self.pop_top, v.place_id, self.pop.__getitem__, RANK_DEPTH)
        u = self.user.setdefault(v.user_id, {})
        u[v.place_id] = u.get(v.place_id, 0) + 1
        prev = self.last.get(v.user_id)
        if prev is not None:
            succ = self.trans.setdefault(v.user_id, {}).setdefault(prev, {})
            succ[v.place_id] = succ.get(v.place_id, 0) + 1
        self.last[v.user_id] = v.place_id

    def rank(self, user: str) -> list[list[str]]:
        prev = self.last.get(user)
        succ = self.trans.get(user, {}).get(prev, {}) if prev is not None else {}
        return [self.pop_top, _ranked(self.user.get(user, {})), _ranked(succ)]


def _ranked(counts: dict[str, int]) -> list[str]:
    # Ties broken by place id so every run ranks the same way.
    return sorted(counts, key=lambda p: (-counts[p], p))[:RANK_DEPTH]


def evaluate(train: Sequence[Visit], test: Sequence[Visit], *, seed: int = 0) -> Evaluation:
    """Predict every test visit from everything before it in time, then learn it.

    Test visits are replayed in time order (file order breaks ties); each is predicted by the
    model and the baselines from the training visits plus the test visits already replayed —
    never from itself or anything later — and only then learned by all of them.
    """
    t0 = time.perf_counter()
    model = NextPlaceModel.fit(train, seed=seed)
    fit_seconds = time.perf_counter() - t0
    base = _Baselines()
    histories: dict[str, deque[Visit]] = {}
    for v in sorted(train, key=lambda v: _epoch(v.arrived_at)):
        base.update(v)
        histories.setdefault(v.user_id, deque(maxlen=HISTORY_KEPT)).append(v)
    n_methods = 1 + len(_Baselines.names)
    hits = np.zeros((n_methods, len(CUTOFFS)))
    rr = np.zeros(n_methods)
    rankings: list[list[str]] = [[] for _ in test]
    pred_p: list[float] = []
    pred_hit: list[bool] = []
    order = sorted(range(len(test)), key=lambda i: (_epoch(test[i].arrived_at), i))
    t1 = time.perf_counter()
    for i in order:
        v = test[i]
        hist = histories.setdefault(v.user_id, deque(maxlen=HISTORY_KEPT))
        ranked = model.predict(v.user_id, tuple(hist), v.arrived_at, k=RANK_DEPTH)
        rankings[i] = [p for p, _ in ranked[:10]]
        for p, prob in ranked[:10]:
            pred_p.append(prob)
            pred_hit.append(p == v.place_id)
        lists = [[p for p, _ in ranked], *base.rank(v.user_id)]
        for m, lst in enumerate(lists):
            try:
                r = lst.index(v.place_id) + 1
            except ValueError:
                continue
            rr[m] += 1.0 / r
            for j, c in enumerate(CUTOFFS):
                hits[m, j] += r <= c
        model.update(v)
        base.update(v)
        hist.append(v)
    predict_seconds = time.perf_counter() - t1
    n = max(len(test), 1)
    names = ("model", *_Baselines.names)
    scores = [Scores(names[m], {c: float(hits[m, j] / n) for j, c in enumerate(CUTOFFS)},
                     float(rr[m] / n)) for m in range(n_methods)]
    return Evaluation(len(test), scores, _reliability(pred_p, pred_hit), rankings, fit_seconds,
                      predict_seconds)


def _reliability(probs: list[float], hits: list[bool]) -> list[Reliability]:
    p = np.asarray(probs)
    h = np.asarray(hits, dtype=np.float64)
    out = []
    for lo, hi in itertools.pairwise(RELIABILITY_BINS):
        sel = (p >= lo) & (p < hi)
        n = int(sel.sum())
        out.append(Reliability(lo, min(hi, 1.0), n, float(p[sel].mean()) if n else 0.0,
                               float(h[sel].mean()) if n else 0.0))
    return out


def format_evaluation(ev: Evaluation) -> str:
    lines = [f"{ev.rows} test visits; fit {ev.fit_seconds:.1f} s, "
             f"predict {ev.predict_seconds:.1f} s "
             f"({1000 * ev.predict_seconds / max(ev.rows, 1):.3f} ms per visit incl. baselines)",
             "",
             f"{'method':<26}{'Acc@1':>8}{'Acc@5':>8}{'Acc@10':>8}{'MRR':>8}"]
    for s in ev.scores:
        lines.append(f"{s.name:<26}" + "".join(f"{s.acc[c]:>8.3f}" for c in CUTOFFS)
                     + f"{s.mrr:>8.3f}")
    lines += ["", "reliability of the model's top-10 probabilities",
              f"{'predicted':<14}{'places':>8}{'mean p':>9}{'observed':>10}"]
    for r in ev.reliability:
        lines.append(f"{f'{r.low:.2f}-{r.high:.2f}':<14}{r.count:>8}{r.mean_predicted:>9.3f}"
                     f"{r.observed:>10.3f}")
    return "\n".join(lines)


def rankings_csv(ev: Evaluation) -> str:
    header = "row," + ",".join(f"p{i}" for i in range(1, 11))
    return "\n".join([header, *(f"{i}," + ",".join(r) for i, r in enumerate(ev.rankings))]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geo.predict",
                                 description="Fit and evaluate the next-place model.")
    sub = ap.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="predict every test visit from its past; print metrics")
    ev.add_argument("--train", type=Path, required=True)
    ev.add_argument("--test", type=Path, required=True)
    ev.add_argument("--out", type=Path, help="write row,p1..p10 per test row")
    ev.add_argument("--seed", type=int, default=0)
    fit = sub.add_parser("fit", help="fit on a visit CSV and save the model")
    fit.add_argument("--visits", type=Path, required=True)
    fit.add_argument("--model", type=Path, required=True)
    fit.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if args.command == "evaluate":
            result = evaluate(read_visits_csv(args.train), read_visits_csv(args.test),
                              seed=args.seed)
            print(format_evaluation(result))
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(rankings_csv(result), encoding="utf-8")
        else:
            visits = read_visits_csv(args.visits)
            model = NextPlaceModel.fit(visits, seed=args.seed)
            args.model.parent.mkdir(parents=True, exist_ok=True)
            save_model(model, args.model)
            print(f"fitted on {len(visits)} visits -> {args.model}")
    except (InvalidVisits, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
