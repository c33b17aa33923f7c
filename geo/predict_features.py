"""Next-place features: what the ranker sees of each candidate place, and how it scores them.

One rule: pure arithmetic on arrays — raw per-candidate counts and a per-example context in,
features and probabilities out; no model state, no clock, no I/O. The model (`geo.predict`)
gathers the raw columns, the fitter (`geo.predict_fit`) and the model share these formulas.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

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


def epoch(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def hour_pos(dt: datetime) -> tuple[int, float]:
    """Interpolation bin and weight for the local wall-clock hour (the timestamp's own offset)."""
    pos = (dt.hour + dt.minute / 60.0) / (24.0 / HOUR_BINS) - 0.5
    base = math.floor(pos)
    return base % HOUR_BINS, pos - base


def cell_key(lat: float, lng: float, di: int = 0, dj: int = 0) -> str:
    return f"{math.floor(lat / GRID_DEG) + di}:{math.floor(lng / GRID_DEG) + dj}"


# Raw per-candidate columns gathered in Python; `features` turns them into FEATURES with numpy.
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


def features(raw: FloatArray, ctx: FloatArray) -> FloatArray:
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


def other_row(ctx: FloatArray) -> FloatArray:
    """Features of the "somewhere else" option (`probabilities` inlines the same formula)."""
    row = np.zeros(N_FEATURES)
    row[-3] = 1.0
    row[-2] = math.log1p(ctx[C_VISITS])
    row[-1] = math.log((ctx[C_DISTINCT] + 1.0) / (ctx[C_VISITS] + 2.0))
    return row


def probabilities(w: FloatArray, raw: FloatArray, ctx: FloatArray) -> FloatArray:
    feats = features(raw, ctx[None, :])
    scores = feats @ w
    other = (w[-3] + w[-2] * math.log1p(ctx[C_VISITS])
             + w[-1] * math.log((ctx[C_DISTINCT] + 1.0) / (ctx[C_VISITS] + 2.0)))
    top = max(float(scores.max()), other)
    e = np.exp(scores - top)
    out: FloatArray = e / (e.sum() + math.exp(other - top))
    return out
