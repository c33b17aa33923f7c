"""Fitting the next-place ranker: conditional-logit weights from held-out examples.

One rule: fitting only reads the examples it is given (candidate rows, contexts, targets) and
returns numbers; it never touches the model's statistics, so the model decides what to fit on.
"""

from __future__ import annotations

import numpy as np

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


def fit_weights(raws: list[FloatArray], ctxs: list[FloatArray], targets: list[int]) -> FloatArray:
    """Conditional-logit weights by damped Newton steps on the held-out examples.

    Each example is its candidate rows plus the "somewhere else" row (last), whose target is the
    held-out place, or "somewhere else" when that place was not among the candidates.
    """
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
