"""Evaluating the next-place model offline, against baselines, and its command line.

One rule: every test visit is predicted only from what came before it in time — the training
visits and the earlier test visits — never from itself or later rows; then it is learned.

CLI:
    python -m geo.predict evaluate --train T.csv --test S.csv [--out P.csv] [--probs Q.csv]
        Fits on T, then replays S in time order: each row is predicted from T and the rows of S
        before it in time (never itself or later rows), then learned. Prints Acc@1/5/10 and MRR
        (a place ranked beyond 100 counts as 0) for the model and for the global-most-popular,
        user-most-frequent and user first-order Markov baselines under the same protocol, and a
        reliability table of the model's probabilities with the top-1 expected calibration error
        (ECE, 10 equal-width bins). --out writes `row,p1,...,p10` per row of S in S's order;
        --probs writes `row,rank,place_id,probability` for the top 10 of each row of S.
    python -m geo.predict fit --visits V.csv --model M
        Fits on V and saves the model as msgpack for `load_model`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np

from geo.predict import NextPlaceModel, bump_top, save_model
from geo.predict_features import epoch
from geo.visits_csv import InvalidVisits, Visit, read_visits_csv

CUTOFFS = (1, 5, 10)
RANK_DEPTH = 100  # MRR counts a hit anywhere in the first 100 places; beyond, it scores 0
HISTORY_KEPT = 10
ECE_BINS = 10
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
    probabilities: list[list[float]]  # their probabilities, row for row
    ece: float  # expected calibration error of the top-1 probability, ECE_BINS equal-width bins
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
        bump_top(self.pop_top, v.place_id, self.pop.__getitem__, RANK_DEPTH)
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
    for v in sorted(train, key=lambda v: epoch(v.arrived_at)):
        base.update(v)
        histories.setdefault(v.user_id, deque(maxlen=HISTORY_KEPT)).append(v)
    n_methods = 1 + len(_Baselines.names)
    hits = np.zeros((n_methods, len(CUTOFFS)))
    rr = np.zeros(n_methods)
    rankings: list[list[str]] = [[] for _ in test]
    probabilities: list[list[float]] = [[] for _ in test]
    top1_p: list[float] = []
    top1_hit: list[bool] = []
    pred_p: list[float] = []
    pred_hit: list[bool] = []
    order = sorted(range(len(test)), key=lambda i: (epoch(test[i].arrived_at), i))
    t1 = time.perf_counter()
    for i in order:
        v = test[i]
        hist = histories.setdefault(v.user_id, deque(maxlen=HISTORY_KEPT))
        ranked = model.predict(v.user_id, tuple(hist), v.arrived_at, k=RANK_DEPTH)
        rankings[i] = [p for p, _ in ranked[:10]]
        probabilities[i] = [prob for _, prob in ranked[:10]]
        if ranked:  # a row with no candidate at all states no confidence to calibrate
            top1_p.append(ranked[0][1])
            top1_hit.append(ranked[0][0] == v.place_id)
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
    return Evaluation(len(test), scores, _reliability(pred_p, pred_hit), rankings, probabilities,
                      expected_calibration_error(top1_p, top1_hit), fit_seconds, predict_seconds)


def expected_calibration_error(probs: Sequence[float], hits: Sequence[bool],
                               bins: int = ECE_BINS) -> float:
    """Σ over equal-width bins of (share of predictions in the bin) × |mean p − hit rate|.

    Bin i holds p in [i/bins, (i+1)/bins), the last one also p = 1. No predictions: 0.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        return 0.0
    h = np.asarray(hits, dtype=np.float64)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, weights=p, minlength=bins)
                 - np.bincount(idx, weights=h, minlength=bins))
    return float(gap.sum() / p.size) if n.sum() else 0.0


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
    lines += ["", f"top-1 expected calibration error ({ECE_BINS} equal-width bins): {ev.ece:.4f}"]
    return "\n".join(lines)


def rankings_csv(ev: Evaluation) -> str:
    header = "row," + ",".join(f"p{i}" for i in range(1, 11))
    return "\n".join([header, *(f"{i}," + ",".join(r) for i, r in enumerate(ev.rankings))]) + "\n"


def probabilities_csv(ev: Evaluation) -> str:
    """`row,rank,place_id,probability`: the model's top 10 for each test row (rank from 1)."""
    lines = ["row,rank,place_id,probability"]
    for i, (places, probs) in enumerate(zip(ev.rankings, ev.probabilities, strict=True)):
        lines += [f"{i},{r},{_csv_field(p)},{q:.6g}"
                  for r, (p, q) in enumerate(zip(places, probs, strict=True), 1)]
    return "\n".join(lines) + "\n"


def _csv_field(text: str) -> str:
    # Place ids come from the caller's CSV and may hold commas or quotes; keep the file parseable.
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geo.predict",
                                 description="Fit and evaluate the next-place model.")
    sub = ap.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="predict every test visit from its past; print metrics")
    ev.add_argument("--train", type=Path, required=True)
    ev.add_argument("--test", type=Path, required=True)
    ev.add_argument("--out", type=Path, help="write row,p1..p10 per test row")
    ev.add_argument("--probs", type=Path,
                    help="write row,rank,place_id,probability for the top 10 of each test row")
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
            if args.probs is not None:
                args.probs.parent.mkdir(parents=True, exist_ok=True)
                args.probs.write_text(probabilities_csv(result), encoding="utf-8")
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
