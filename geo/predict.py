"""Next-place prediction: P(next place | the customer's visits, the population's visits, now).

One rule: the model is pure — visits in, ranked (place, probability) pairs out; it never reads a
clock, a file or a database (save/load take a path the caller chose). Its pieces, one idea each:
`geo.predict_features` (the features and the softmax), `geo.predict_fit` (fitting the weights and
the calibration), `geo.visits_csv` (reading visit CSVs), `geo.predict_eval` (the evaluation CLI).

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

CLI (`geo.predict_eval`): `python -m geo.predict evaluate|fit ...`; see that module.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np

from geo.predict_features import (
    FEATURES,
    HOUR_BINS,
    LONG_TAU_S,
    MAX_VALIDATION_EXAMPLES,
    N_CTX,
    N_FEATURES,
    N_RAW,
    PRIOR_WEIGHTS,
    SHORT_TAU_S,
    TOP_CELL,
    TOP_NEIGHBOUR_CELL,
    TOP_POP_NEXT,
    TOP_POPULAR,
    TOP_RECENT,
    TOP_USER,
    TOP_USER_NEXT,
    VALIDATION_SHARE,
    FloatArray,
    cell_key,
    epoch,
    hour_pos,
    probabilities,
)
from geo.predict_fit import fit_temperature, fit_weights
from geo.visits_csv import InvalidVisits, Visit, read_visits_csv

# Kept importable from here: the app, the bench and the tests know them as geo.predict's.
__all__ = ["InvalidVisits", "NextPlaceModel", "Visit", "load_model", "read_visits_csv",
           "save_model"]


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
    # Temperature scaling of the scores (geo.predict_fit); 1 for models saved before it existed.
    temperature: float = 1.0


# Stand-ins for "never visited", read-only: they keep the hot loop free of branches.
_NO_USER_PLACE = _UserPlace()
_NO_PLACE = _Place()


def bump_top(top: list[str], key: str, count: Callable[[str], float], k: int) -> None:
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


class NextPlaceModel:
    """Online next-place model; `fit` once, `update` as visits end, `predict` on the hot path."""

    def __init__(self, state: _State | None = None) -> None:
        self._s = state if state is not None else _State()
        self._w = self._effective_weights()  # the hot path should not rebuild it

    # --- learning -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, visits: Iterable[Visit], *, seed: int = 0,
            places: dict[str, tuple[float, float]] | None = None) -> NextPlaceModel:
        """Learn statistics from `visits` and fit the ranker's weights on their latest slice.

        The earliest (1 - VALIDATION_SHARE) of the visits build the statistics; the rest are
        replayed in time order, each predicted before it is learned, which gives the ranker its
        training examples under the same protocol as serving. All visits end up in the model.
        """
        ordered = sorted(visits, key=lambda v: epoch(v.arrived_at))
        model = cls()
        for pid, (lat, lng) in (places or {}).items():
            model._s.places[pid] = _Place(lat=lat, lng=lng, cell=cell_key(lat, lng))
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
            # The ranking comes from weights fitted on all examples; the temperature only
            # makes their probabilities honest, so it never changes which place comes first.
            weights = fit_weights(raws, ctxs, targets)
            model._s.weights = weights.tolist()
            model._s.temperature = fit_temperature(raws, ctxs, targets, weights)
            model._w = model._effective_weights()
        return model

    def _effective_weights(self) -> FloatArray:
        # Scores are linear in the weights, so dividing the weights by T divides every score,
        # "somewhere else" included: temperature scaling at no cost on the hot path.
        w: FloatArray = np.asarray(self._s.weights) / self._s.temperature
        return w

    @property
    def temperature(self) -> float:
        """The calibration's temperature (above 1 softens over-sure probabilities)."""
        return self._s.temperature

    def update(self, visit: Visit) -> None:
        """Learn one finished visit: O(number of top-k lists touched), no re-sorting."""
        s = self._s
        t = epoch(visit.arrived_at)
        wall = visit.arrived_at
        bin_i, frac = hour_pos(wall)
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
            place.cell = cell_key(visit.lat, visit.lng)

        prev = user.last_place
        if prev is not None:
            succ = user.next.setdefault(prev, {})
            succ[pid] = succ.get(pid, 0.0) + 1.0
            user.next_out[prev] = user.next_out.get(prev, 0.0) + 1.0
            pop = s.next.setdefault(prev, {})
            pop[pid] = pop.get(pid, 0.0) + 1.0
            s.places[prev].out += 1.0
            bump_top(s.next_top.setdefault(prev, []), pid, pop.__getitem__, TOP_POP_NEXT)

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
        bump_top(user.top, pid, lambda p: places_of_user[p].count, TOP_USER)
        if pid in user.recent:
            user.recent.remove(pid)
        user.recent.append(pid)
        del user.recent[:-TOP_RECENT]
        if place.lat is not None and place.lng is not None:
            user.home_n += 1.0
            user.home_lat += (place.lat - user.home_lat) / user.home_n
            user.home_lng += (place.lng - user.home_lng) / user.home_n
        user.last_place = pid
        user.last_time = epoch(visit.departed_at) if visit.departed_at else t

        place.count += 1.0
        place.weekend += weekend
        place.hours[bin_i] += 1.0 - frac
        place.hours[(bin_i + 1) % HOUR_BINS] += frac
        s.total += 1.0
        s.weekend_total += weekend
        places = s.places
        bump_top(s.popular, pid, lambda p: places[p].count, TOP_POPULAR)
        if place.cell is not None:
            bump_top(s.cells.setdefault(place.cell, []), pid, lambda p: places[p].count,
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
        probs = probabilities(self._w, raw, ctx)
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
            gap_h = (epoch(now) - epoch(end)) / 3600.0
        elif user is not None and user.last_place is not None:
            last = user.last_place
            gap_h = (epoch(now) - user.last_time) / 3600.0
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
            seen.update(dict.fromkeys(cells.get(cell_key(last_lat, last_lng), ())))
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if di or dj:
                        nb = cells.get(cell_key(last_lat, last_lng, di, dj))
                        if nb:
                            seen.update(dict.fromkeys(nb[:TOP_NEIGHBOUR_CELL]))
        cands = list(seen)
        if not cands:
            return [], np.zeros((0, N_RAW)), np.zeros(N_CTX)

        bin_i, frac = hour_pos(now)
        bin_j = (bin_i + 1) % HOUR_BINS
        dow = now.weekday()
        weekend = dow >= 5
        t_now = epoch(now)
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
    if not (math.isfinite(state.temperature) and state.temperature > 0):
        raise ValueError(f"{path}: temperature {state.temperature} is not a positive number")
    return NextPlaceModel(state)


if __name__ == "__main__":  # `python -m geo.predict evaluate|fit` keeps working
    from geo.predict_eval import main

    sys.exit(main())
