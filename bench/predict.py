"""Benchmark of the next-place model: fitting on 100 k visits, one online update, one prediction.

One rule: figures are CPU time of this process on synthetic histories from `fixtures.visits`,
printed with the command that produced them; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence

from fixtures.visits import generate
from geo.predict import NextPlaceModel, Visit


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.predict", description=__doc__)
    ap.add_argument("--users", type=int, default=800, help="synthetic customers")
    ap.add_argument("--days", type=int, default=49)
    ap.add_argument("--predictions", type=int, default=5000)
    args = ap.parse_args(argv)

    rows = generate(seed=7, users=args.users, days=args.days)
    visits = [Visit(user_id=u, place_id=p, arrived_at=t, lat=lat, lng=lng)
              for u, p, t, lat, lng in rows]
    cut = int(len(visits) * 0.9)
    train, test = visits[:cut], visits[cut:]

    started = time.process_time()
    model = NextPlaceModel.fit(train)
    fit_s = time.process_time() - started

    history: dict[str, list[Visit]] = {}
    for v in train:
        history.setdefault(v.user_id, []).append(v)
    sample = test[: args.predictions]
    started = time.process_time()
    for v in sample:
        model.predict(v.user_id, history.get(v.user_id, [])[-20:], v.arrived_at, k=10)
    predict_ms = (time.process_time() - started) / len(sample) * 1e3
    started = time.process_time()
    for v in sample:
        model.update(v)
    update_ms = (time.process_time() - started) / len(sample) * 1e3

    print(f"$ python -m bench.predict {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print(f"machine  : {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"data     : {len(train):,} training visits of {args.users:,} synthetic customers "
          f"(fixtures.visits, seed 7)")
    print(f"fit      : {fit_s:.1f} s CPU")
    print(f"predict  : {predict_ms:.3f} ms CPU per prediction (top 10, mean of {len(sample):,})")
    print(f"update   : {update_ms:.3f} ms CPU per visit learned online")


if __name__ == "__main__":
    main()
