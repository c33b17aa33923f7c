"""`python -m customers.value evaluate` on a synthetic shop (a seeded buy-till-you-die process:
each customer buys at their own rate with their own basket until they silently drop out), since
the real retail logs carry no licence to ship: the output file has a row per customer seen by
the date with its tier, the fit is pymc-marketing's, and the printed comparison names both the
model and the RFM baseline."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from customers.value_eval import main, top_share_of_best

START = datetime(2025, 1, 1, tzinfo=UTC)
UNTIL = datetime(2025, 9, 30, tzinfo=UTC)


def synthetic_shop(path: Path, customers: int = 300, seed: int = 11) -> set[str]:
    """Write the shop's transactions; return the customers who bought by UNTIL."""
    rng = random.Random(seed)
    seen: set[str] = set()
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["customer_id", "ts", "amount"])
        for c in range(customers):
            rate = rng.gammavariate(0.8, 1 / 20)  # purchases per day
            drop = rng.betavariate(1.0, 6.0)  # chance to drop out after each purchase
            basket = rng.gammavariate(4.0, 10.0)
            at = START + timedelta(days=rng.uniform(0, 120))
            while at < START + timedelta(days=540):
                out.writerow([f"c{c}", at.isoformat(), f"{rng.gammavariate(6, basket / 6):.2f}"])
                if at <= UNTIL:
                    seen.add(f"c{c}")
                if rng.random() < drop:
                    break
                at += timedelta(days=rng.expovariate(rate))
    return seen


def test_evaluate_writes_every_customer_seen_and_compares_with_rfm(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transactions, out = tmp_path / "tx.csv", tmp_path / "out.csv"
    seen = synthetic_shop(transactions)

    code = main(["evaluate", "--transactions", str(transactions), "--until", "2025-09-30",
                 "--horizon-days", "180", "--out", str(out)])

    printed = capsys.readouterr().out
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert code == 0
    assert list(rows[0]) == ["customer_id", "historical_amount", "expected_amount",
                             "expected_purchases", "tier"]
    assert {r["customer_id"] for r in rows} == seen
    assert {r["tier"] for r in rows} == {"low", "medium", "high"}
    assert "fitted on" in printed  # pymc-marketing fitted it; the prior did not answer
    model = next(line for line in printed.splitlines() if line.startswith("value model"))
    baseline = next(line for line in printed.splitlines() if line.startswith("RFM baseline"))
    assert float(model.split()[2]) > 0.3  # expected vs actual spend rank correlation
    assert 0.0 <= float(baseline.split()[2]) <= 1.0


def test_the_baselines_group_takes_the_tie_at_its_cut_in_proportion() -> None:
    actual = {f"c{i}": float(i) for i in range(10)}  # the top 20 %: c9 and c8
    scores = {"c9": 3.0, "c0": 3.0, "c8": 2.0, "c1": 2.0, "c2": 2.0, "c3": 2.0} | {
        f"c{i}": 1.0 for i in range(4, 8)}
    # Two best: c9 or c0 (one hit), both taken whole.
    assert top_share_of_best(scores, 2, actual) == 0.5
    # Three best: c9 and c0, then one of the four tied at 2.0 (c8 among them): 1 + 1/4 hits.
    assert top_share_of_best(scores, 3, actual) == (1 + 1 / 4) / 2
    assert top_share_of_best(scores, 6, actual) == 1.0


@pytest.mark.parametrize(("name", "text", "message"), [
    ("a row without an amount is refused naming its row", "customer_id,ts,amount\nc1,2025-01-01\n",
     "row 2"),
    ("a wrong header is refused", "user,ts,amount\n", "row 1"),
])
def test_evaluate_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     name: str, text: str, message: str) -> None:
    transactions = tmp_path / "tx.csv"
    transactions.write_text(text)
    code = main(["evaluate", "--transactions", str(transactions), "--until", "2025-09-30",
                 "--out", str(tmp_path / "out.csv")])
    assert (code, message in capsys.readouterr().err) == (2, True), name
