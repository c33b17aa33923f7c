"""Fitting the next-place ranker: conditional-logit weights and their calibration.

One rule: fitting only reads the examples it is given (candidate rows, contexts, targets, in time
order) and returns numbers; it never touches the model's statistics, so the model decides what to
fit on.

Calibration is temperature scaling: every score, the "somewhere else" option's included, is
divided by one temperature T. That keeps the ranking (hence Acc@k and MRR) exactly and only
changes how sure the probabilities are; T is at least 1, so it only ever softens them. What gates
a push is the top-1 probability, so T minimises the log-loss of "the first-ranked place is where
they went" over the held-out replay examples (held out from the statistics, as in serving). The
softmax's own likelihood cannot choose T: fitted on these examples, its optimum is T = 1 by
construction, whatever the top-1 confidence does.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from geo.predict_features import (
    FEATURES,
    HESSIAN_EXAMPLES,
    N_FEATURES,
    PRIOR_STRENGTH,
    PRIOR_WEIGHTS,
    FloatArray,
    features,
    other_row,
)

IntArray = npt.NDArray[np.int64]
MIN_CALIBRATION_EXAMPLES = 200  # fewer cannot tell a temperature from noise: keep 1
# Temperatures from 1 to 4.5, 10 % apart, then 1 % apart around the best of them. Never below 1:
# that would claim more certainty than the likelihood fit found, and on a routine every example
# of which the first place got right, the log-loss would drive T to the grid's end and state
# 99.9 % on the evidence of a few hundred visits — wrong the first time the routine breaks, and
# min_probability gates pushes on exactly that number.
LOG_T_COARSE = np.linspace(0.0, 1.5, 16)
LOG_T_FINE = np.linspace(-0.1, 0.1, 21)


def _stack(raws: list[FloatArray], ctxs: list[FloatArray],
           targets: list[int]) -> tuple[FloatArray, FloatArray, IntArray, IntArray]:
    """All examples as one feature matrix: each example's candidate rows, then its "somewhere
    else" row; `y` marks the row that happened; `starts`/`sizes` delimit the examples."""
    sizes = np.array([r.shape[0] + 1 for r in raws])
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    blocks: list[FloatArray] = []
    for raw, ctx in zip(raws, ctxs, strict=True):
        blocks.append(np.zeros((raw.shape[0], N_FEATURES)))
        blocks.append(other_row(ctx)[None, :])
    x = np.vstack(blocks)
    # One vectorised pass over all candidate rows: features do not depend on the example size.
    is_cand = np.ones(x.shape[0], dtype=bool)
    is_cand[starts + sizes - 1] = False
    x[is_cand] = features(np.vstack(raws), np.repeat(np.vstack(ctxs), sizes - 1, axis=0))
    y = np.zeros(x.shape[0])
    tgt = np.array(targets)
    y[np.where(tgt >= 0, starts + tgt, starts + sizes - 1)] = 1.0
    return x, y, starts, sizes


def fit_weights(raws: list[FloatArray], ctxs: list[FloatArray], targets: list[int]) -> FloatArray:
    """Conditional-logit weights by damped Newton steps on the held-out examples.

    Each example is its candidate rows plus the "somewhere else" row (last), whose target is the
    held-out place, or "somewhere else" when that place was not among the candidates.
    """
    x, y, starts, sizes = _stack(raws, ctxs, targets)
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



def fit_temperature(raws: list[FloatArray], ctxs: list[FloatArray], targets: list[int],
                    weights: FloatArray) -> float:
    """The temperature that makes the top-1 probability of `weights` honest on these examples.

    It minimises the log-loss of "the first-ranked place is where they went" (see the module
    doc); with fewer than MIN_CALIBRATION_EXAMPLES examples it stays 1.
    """
    if len(raws) < MIN_CALIBRATION_EXAMPLES:
        return 1.0
    x, y, starts, sizes = _stack(raws, ctxs, targets)
    scores = x @ weights
    is_other = np.zeros(len(scores), dtype=bool)
    is_other[starts + sizes - 1] = True
    # The first-ranked candidate (never "somewhere else", which predict does not return) and
    # whether it was the place visited; dividing by T changes neither.
    cand = np.where(is_other, -np.inf, scores)
    top = np.maximum.reduceat(cand, starts)
    seg = np.repeat(np.arange(len(starts)), sizes)
    hit = np.add.reduceat(y * (cand == top[seg]), starts) > 0
    return top1_temperature(scores, starts, top, hit)


def top1_temperature(scores: FloatArray, starts: IntArray, top: FloatArray,
                     hit: npt.NDArray[np.bool_]) -> float:
    """The T minimising the log-loss of the top-1 probabilities exp(top/T) / Σ exp(scores/T)
    (example i's rows start at `starts[i]`) against `hit`: a coarse grid, then a fine one."""
    sizes = np.diff(np.append(starts, len(scores)))
    seg = np.repeat(np.arange(len(starts)), sizes)
    mx = np.maximum.reduceat(scores, starts)

    def loss(log_t: float) -> float:
        inv = math.exp(-log_t)
        lse = np.log(np.add.reduceat(np.exp((scores - mx[seg]) * inv), starts))
        p1 = np.clip(np.exp((top - mx) * inv - lse), 1e-9, 1.0 - 1e-9)
        return float(-np.where(hit, np.log(p1), np.log1p(-p1)).mean())

    best = min(LOG_T_COARSE, key=loss)
    best = min(np.maximum(best + LOG_T_FINE, 0.0), key=loss)
    return math.exp(float(best))
