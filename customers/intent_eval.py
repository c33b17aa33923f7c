"""Offline evaluation of p_buy, and the command that regenerates the shipped prior.

One rule: every TEST row is scored from its user's events up to and including that row (TRAIN,
then TEST in time order, ties in file order) and never a later one; the model is fitted on TRAIN
alone, as the service fits on its stored signals, and falls back to the shipped prior when TRAIN
has too few purchases. A row's label is a purchase by its user strictly after the row and within
24 h, read from TRAIN and TEST; a row near the end of TEST counts what the files show.

A file is taken as the complete record of its period: fitting on it uses `now` = its last event
+ 24 h, so its last day's examples count a purchase the file does not show as none.

Baselines, fitted on TRAIN's rows the same way (each row labelled from TRAIN):
  cart adds — P(buy) by the number of cart adds (and checkouts) in the last 24 h (0, 1, 2+),
              smoothed towards TRAIN's base rate;
  views     — a logistic regression on the recency (log hours since the last view) and frequency
              (log1p views in the last 7 days) of views.
Metrics: ROC AUC, log loss, and expected calibration error over 10 equal-width bins.

CLI:
    python -m customers.intent evaluate --train TRAIN.csv --test TEST.csv [--out OUT.csv]
    python -m customers.intent fit-prior --events A.csv [--events B.csv ...]
        [--exclude-users-of F.csv] --source TEXT --licence TEXT --out customers/prior.json
    python -m customers.intent split --events F.csv --train-out A.csv --test-out B.csv
        [--test-share 0.5]   (by customer: all of a customer's events on one side)
"""

from __future__ import annotations

import argparse
import math
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from customers.intent_events import Event, InvalidEvents, events_csv, histories, read_events
from customers.intent_fit import (
    CannotFit,
    TrainingSet,
    fit,
    fit_arrays,
    history_examples,
    sorted_history,
    training_set,
)
from customers.micromoment import classify
from customers.model import Signal
from customers.pbuy import (
    CARTS,
    DAY,
    HORIZON_HOURS,
    HOUR,
    VIEWS,
    FloatArray,
    History,
    IntArray,
    PBuyModel,
    epoch,
    feature_matrix,
    latest_categories,
    load_prior,
)

BINS = 10
SMOOTHING = 10.0  # the cart table's cells borrow this many examples' worth of the base rate


def micromoment_of_signals(signals: Sequence[Signal], now: datetime) -> str:
    """The micromoment column: the classifier with only the signals speaking (an event log
    has no place or motion); empty when no kind applies."""
    return classify(signals, now).kind or ""


@dataclass
class Metrics:
    name: str
    auc: float
    log_loss: float
    ece: float


@dataclass
class Evaluation:
    model: str
    note: str
    rows: int
    positives: int
    p_buy: list[float] = field(default_factory=list)  # per TEST row, in TEST's order
    micromoment: list[str] = field(default_factory=list)
    metrics: list[Metrics] = field(default_factory=list)


def ece(p: FloatArray, y: IntArray, bins: int = BINS) -> float:
    """Expected calibration error: bin-weighted |mean predicted - observed| over equal bins."""
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(p) * abs(float(p[m].mean()) - float(y[m].mean()))
    return total


def score(name: str, p: FloatArray, y: IntArray) -> Metrics:
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else math.nan
    ll = float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])) if len(y) else math.nan
    return Metrics(name, auc, ll, ece(p, y) if len(y) else math.nan)


def _baseline_features(h: History, q: FloatArray, end: IntArray) -> tuple[IntArray, FloatArray]:
    """(cart adds in the last 24 h capped at 2, [log hours since last view, log1p views 7d])."""
    start = np.minimum(np.searchsorted(h.ts, q - DAY, side="right"), end)
    carts = np.minimum(h.cum[CARTS, end] - h.cum[CARTS, start], 2)
    start7 = np.minimum(np.searchsorted(h.ts, q - 7 * DAY, side="right"), end)
    views7 = np.log1p(h.cum[VIEWS, end] - h.cum[VIEWS, start7])
    last = h.last_idx[VIEWS, end]
    last_t = np.where(last >= 0, h.ts[np.maximum(last, 0)] if h.n else 0.0, -np.inf)
    since = np.log1p(np.minimum((q - last_t) / HOUR, 30 * 24.0))
    return carts.astype(np.int64), np.column_stack([since, views7])


class Baselines:
    """Both baselines, fitted on TRAIN's own rows."""

    def __init__(self, train: Mapping[str, Sequence[Signal]], now: datetime) -> None:
        carts: list[IntArray] = []
        rf: list[FloatArray] = []
        ys: list[IntArray] = []
        for signals in train.values():
            h, kinds = sorted_history(signals)
            q, end, y = history_examples(h, kinds, epoch(now), gaps=False)
            c, f = _baseline_features(h, q, end)
            carts.append(c)
            rf.append(f)
            ys.append(y)
        y = np.concatenate(ys) if ys else np.empty(0, np.int64)
        c = np.concatenate(carts) if carts else np.empty(0, np.int64)
        self.base = float((y.sum() + 1.0) / (len(y) + 2.0))
        self.table = [float((y[c == k].sum() + SMOOTHING * self.base) / ((c == k).sum()
                                                                          + SMOOTHING))
                      for k in range(3)]
        self.rf: LogisticRegression | None = None
        if 0 < y.sum() < len(y):
            self.rf = LogisticRegression(max_iter=1000).fit(np.concatenate(rf), y)

    def predict(self, h: History, q: FloatArray, end: IntArray) -> tuple[FloatArray, FloatArray]:
        c, f = _baseline_features(h, q, end)
        cart_p = np.array([self.table[k] for k in c], dtype=np.float64)
        rf_p = (self.rf.predict_proba(f)[:, 1] if self.rf is not None
                else np.full(len(q), self.base))
        return cart_p, rf_p


def _end_of(events: Sequence[Event]) -> datetime:
    return max(e.signal.at for e in events) + timedelta(hours=HORIZON_HOURS)


def evaluate(train: Sequence[Event], test: Sequence[Event], prior: PBuyModel) -> Evaluation:
    train_h = histories(list(train))
    model = prior
    note = "" if train else "TRAIN is empty"
    if train:
        try:
            model = fit(train_h, _end_of(train))
        except CannotFit as why:
            note = f"not fitted on TRAIN: {why}"

    baselines = Baselines(train_h, _end_of(train)) if train else None
    rows_of: dict[str, list[int]] = {}
    for i, e in enumerate(test):
        rows_of.setdefault(e.user_id, []).append(i)
    n = len(test)
    p, cart_p, rf_p = np.zeros(n), np.zeros(n), np.zeros(n)
    y = np.zeros(n, dtype=np.int64)
    moments = [""] * n
    horizon = HORIZON_HOURS * HOUR
    for user, rows in rows_of.items():
        past = train_h.get(user, [])
        signals = [*past, *(test[i].signal for i in rows)]
        times = np.array([epoch(s.at) for s in signals])
        order = np.argsort(times, kind="stable")  # TRAIN first, then TEST in file order
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        h = History(list(times), [s.kind for s in signals], [s.category for s in signals])
        test_pos = position[len(past):]
        q = times[len(past):]
        end = test_pos + 1
        idx = np.array(rows)
        p[idx] = model.predict_matrix(feature_matrix(h, q, end), latest_categories(h, q, end))
        if baselines is not None:
            cart_p[idx], rf_p[idx] = baselines.predict(h, q, end)
        else:
            cart_p[idx] = rf_p[idx] = 0.5
        buys = np.sort(times[np.array([s.kind == "purchase" for s in signals], dtype=bool)])
        y[idx] = (np.searchsorted(buys, q + horizon, side="right")
                  > np.searchsorted(buys, q, side="right"))
        for j, row in enumerate(rows):
            prefix = [signals[k] for k in order[: end[j]]]
            moments[row] = micromoment_of_signals(prefix, test[row].signal.at)
    ev = Evaluation(model=model.name, note=note, rows=n, positives=int(y.sum()),
                    p_buy=[float(v) for v in p], micromoment=moments)
    ev.metrics = [score(f"p_buy ({model.name})", p, y), score("baseline: cart adds 24h", cart_p, y),
                  score("baseline: views recency+frequency", rf_p, y)]
    return ev


def format_evaluation(ev: Evaluation) -> str:
    lines = [f"test rows {ev.rows}, followed by a purchase within {HORIZON_HOURS} h: "
             f"{ev.positives} ({ev.positives / max(ev.rows, 1):.1%}); model: {ev.model}"
             + (f" ({ev.note})" if ev.note else ""),
             f"{'':36}{'AUC':>8}{'log loss':>10}{'ECE':>8}"]
    for m in ev.metrics:
        lines.append(f"{m.name:36}{m.auc:>8.3f}{m.log_loss:>10.4f}{m.ece:>8.4f}")
    return "\n".join(lines)


def output_csv(ev: Evaluation) -> str:
    body = (f"{i},{p:.6f},{mm}" for i, (p, mm) in enumerate(zip(ev.p_buy, ev.micromoment,
                                                                strict=True)))
    return "\n".join(["row,p_buy,micromoment", *body]) + "\n"


def fit_prior(sources: Sequence[Sequence[Event]], exclude: set[str], *, source: str,
              licence: str) -> PBuyModel:
    """The prior, fitted on several logs at once, each weighing the same in total (a large log
    must not drown the only one that has carts), leaving out the users in `exclude`."""
    parts: list[TrainingSet] = []
    described = []
    for k, events in enumerate(sources):
        kept = [e for e in events if e.user_id not in exclude]
        d = training_set(histories(kept), _end_of(kept))
        # one customer id in two logs is two customers
        parts.append(d._replace(groups=d.groups * len(sources) + k))
        described.append(f"{len(d.y)} examples ({int(d.y.sum())} with a purchase)")
    y = np.concatenate([d.y for d in parts])
    w = np.concatenate([np.full(len(d.y), 1.0 / max(len(d.y), 1)) for d in parts])
    data = TrainingSet(np.concatenate([d.x for d in parts]), y,
                       np.concatenate([d.groups for d in parts]),
                       [c for d in parts for c in d.categories])
    return fit_arrays(data, weights=w * len(y) / len(sources), name="prior", source=source,
                      licence=licence, fitted_on="; ".join(described))


def split_by_user(events: Sequence[Event], test_share: float) -> tuple[list[Event], list[Event]]:
    """All of a user's events on one side, chosen by a stable hash of the user id."""
    cut = int(test_share * 1000)
    test = [zlib.crc32(e.user_id.encode()) % 1000 < cut for e in events]
    return ([e for e, t in zip(events, test, strict=True) if not t],
            [e for e, t in zip(events, test, strict=True) if t])


def _read(path: Path) -> list[Event]:
    try:
        return read_events(path)
    except InvalidEvents as e:
        raise InvalidEvents(e.line, e.column, e.message, str(path)) from None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customers.intent",
                                 description="Evaluate p_buy offline; regenerate the prior.")
    sub = ap.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="score every TEST row from its past; print metrics")
    ev.add_argument("--train", type=Path, required=True)
    ev.add_argument("--test", type=Path, required=True)
    ev.add_argument("--out", type=Path, help="write row,p_buy,micromoment per TEST row")
    fp = sub.add_parser("fit-prior", help="fit the shipped prior on public event logs")
    fp.add_argument("--events", type=Path, action="append", required=True)
    fp.add_argument("--exclude-users-of", type=Path, action="append", default=[])
    fp.add_argument("--source", required=True)
    fp.add_argument("--licence", required=True)
    fp.add_argument("--out", type=Path, required=True)
    sp = sub.add_parser("split", help="split an event log by user into TRAIN and TEST files")
    sp.add_argument("--events", type=Path, required=True)
    sp.add_argument("--test-share", type=float, default=0.5)
    sp.add_argument("--train-out", type=Path, required=True)
    sp.add_argument("--test-out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        if args.command == "evaluate":
            train, test = _read(args.train), _read(args.test)
            result = evaluate(train, test, load_prior())
            print(format_evaluation(result))
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(output_csv(result), encoding="utf-8")
        elif args.command == "split":
            train, test = split_by_user(_read(args.events), args.test_share)
            for path, part in ((args.train_out, train), (args.test_out, test)):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(events_csv(part), encoding="utf-8")
            print(f"{len(train)} events -> {args.train_out}, {len(test)} -> {args.test_out}")
        else:
            exclude = {e.user_id for f in args.exclude_users_of for e in _read(f)}
            model = fit_prior([_read(f) for f in args.events], exclude,
                              source=args.source, licence=args.licence)
            args.out.write_bytes(model.to_bytes())
            print(f"prior fitted on {model.fitted_on} -> {args.out}")
    except (InvalidEvents, OSError, CannotFit) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
