"""Offline evaluation of the value matrix (`python -m customers.value evaluate`): fit on the
transactions up to a date, predict the spend of the N days after it, and compare with what each
customer then spent — next to a recency-frequency-monetary baseline.

One rule: both the model and the baseline see only the transactions up to `--until`; the
transactions after it are read only to score them. The baseline's `high` group has as many
customers as the model's `high` tier (ties at its cut taken in proportion), so the top-20 %
shares compare like with like.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

from customers.value import (
    PRIOR,
    History,
    Purchase,
    histories,
    score,
    value_matrix,
)
from customers.value_fit import CannotFit, fit


class InvalidTransactions(ValueError):
    def __init__(self, row: int, message: str) -> None:
        super().__init__(f"row {row}: {message}")


def read_transactions(path: Path) -> Iterator[Purchase]:
    """`customer_id,ts,amount` rows (`ts` ISO 8601, naive taken as UTC)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header[:3] != ["customer_id", "ts", "amount"]:
            raise InvalidTransactions(1, "the header must start customer_id,ts,amount")
        for row_number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                at = datetime.fromisoformat(row[1].strip())
                amount = float(row[2])
            except (IndexError, ValueError) as exc:
                raise InvalidTransactions(row_number, str(exc)) from exc
            if not math.isfinite(amount) or amount < 0:
                raise InvalidTransactions(row_number, "amount must be a number ≥ 0")
            yield Purchase(row[0].strip(), at if at.tzinfo else at.replace(tzinfo=UTC), amount)


def rfm_scores(customers: dict[str, History], until: datetime) -> dict[str, float]:
    """The classic RFM score: recency, frequency and monetary value each ranked into quintiles
    (1..5, recent, frequent and big spenders high) and added (3..15)."""
    ids = list(customers)
    if not ids:
        return {}
    days_since = np.array([customers[c].age - customers[c].recency for c in ids])
    purchases = np.array([customers[c].frequency + 1 for c in ids], dtype=float)
    spend = np.array([customers[c].total / (customers[c].frequency + 1) for c in ids])

    def quintile(values: np.ndarray) -> np.ndarray:
        ranks: np.ndarray = rankdata(values, method="average")
        return np.ceil(ranks / len(values) * 5)

    total = quintile(-days_since) + quintile(purchases) + quintile(spend)
    return {c: float(s) for c, s in zip(ids, total, strict=True)}


def top_spenders(actual: dict[str, float]) -> set[str]:
    """The actual top 20 % of spenders (by spend in the horizon, among the customers evaluated)."""
    ranked = sorted(actual, key=lambda c: actual[c], reverse=True)
    return set(ranked[:max(1, round(len(ranked) * 0.2))])


def top_share(predicted_high: set[str], actual: dict[str, float]) -> float:
    """The share of the actual top 20 % of spenders that `predicted_high` holds."""
    top = top_spenders(actual)
    return len(top & predicted_high) / len(top)


def top_share_of_best(scores: dict[str, float], size: int, actual: dict[str, float]) -> float:
    """The share of the actual top 20 % held by the `size` best-scored customers, with the tie
    group that straddles the cut taken in proportion (the expected share under a random
    tie-break). A coarse score like RFM's (3..15) ties thousands of customers at the cut; taking
    them in file order instead would let an arbitrary order decide the baseline's figure."""
    top = top_spenders(actual)
    groups: dict[float, list[str]] = {}
    for customer, value in scores.items():
        groups.setdefault(value, []).append(customer)
    taken, held = 0, 0.0
    for value in sorted(groups, reverse=True):
        members = groups[value]
        hits = sum(1 for c in members if c in top)
        if taken + len(members) >= size:
            held += hits * (size - taken) / len(members)
            break
        taken, held = taken + len(members), held + hits
    return held / len(top)


def evaluate(args: argparse.Namespace) -> int:
    until = datetime.fromisoformat(args.until)
    until = until if until.tzinfo else until.replace(tzinfo=UTC)
    end = until + timedelta(days=args.horizon_days)
    before: list[Purchase] = []
    actual: dict[str, float] = {}
    for p in read_transactions(args.transactions):
        if p.at <= until:
            before.append(p)
        elif p.at <= end:
            actual[p.customer_id] = actual.get(p.customer_id, 0.0) + p.amount
    customers = histories(before, until)
    if not customers:
        print(f"no transactions up to {until.isoformat()}", file=sys.stderr)
        return 1
    try:
        params = fit(customers)
    except CannotFit as reason:
        print(f"kept the prior: {reason}", file=sys.stderr)
        params = PRIOR
    scored = score(params, customers, args.horizon_days)
    # The tiers are the service's: on the 90-day potential, whatever horizon is scored.
    tiers = {c: v.tier for c, v in value_matrix(params, customers).values.items()}
    with args.out.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["customer_id", "historical_amount", "expected_amount",
                      "expected_purchases", "tier"])
        for s in scored:
            out.writerow([s.customer_id, f"{s.historical_amount:.2f}",
                          f"{s.expected_amount:.4f}", f"{s.expected_purchases:.4f}",
                          tiers[s.customer_id]])
    spent = {c: actual.get(c, 0.0) for c in customers}
    ids = list(customers)
    rfm = rfm_scores(customers, until)
    expected = {s.customer_id: s.expected_amount for s in scored}
    high = {c for c, t in tiers.items() if t == "high"}
    truth = [spent[c] for c in ids]
    model_rho = float(spearmanr([expected[c] for c in ids], truth).statistic)
    rfm_rho = float(spearmanr([rfm[c] for c in ids], truth).statistic)
    print(f"fit: {params.source}; {len(ids)} customers seen by {until.date()}, "
          f"{sum(1 for v in truth if v > 0)} bought in the {args.horizon_days} days after; "
          f"high tier {len(high)} customers")
    print(f"{'':<22}{'spearman':>10}{'top20_share':>13}")
    print(f"{'value model':<22}{model_rho:>10.4f}{top_share(high, spent):>13.4f}")
    print(f"{'RFM baseline':<22}{rfm_rho:>10.4f}"
          f"{top_share_of_best(rfm, len(high), spent):>13.4f}")
    # For reference: the same number of customers by potential alone, without the matrix.
    print(f"{'potential alone':<22}{model_rho:>10.4f}"
          f"{top_share_of_best(expected, len(high), spent):>13.4f}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m customers.value")
    commands = top.add_subparsers(dest="command", required=True)
    ev = commands.add_parser("evaluate", help="fit up to a date and score the days after it")
    ev.add_argument("--transactions", type=Path, required=True,
                    help="CSV customer_id,ts,amount")
    ev.add_argument("--until", required=True, help="fit on everything up to this date")
    ev.add_argument("--horizon-days", type=int, default=90, help="days scored after --until")
    ev.add_argument("--out", type=Path, required=True,
                    help="CSV customer_id,historical_amount,expected_amount,"
                         "expected_purchases,tier")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.horizon_days < 1:
        parser().error("--horizon-days must be at least 1")
    try:
        return evaluate(args)
    except InvalidTransactions as exc:
        print(f"{args.transactions}: {exc}", file=sys.stderr)
        return 2
