"""Offline evaluation of p_buy: event CSVs, no leakage from the future, metrics, the CLI."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customers.intent_eval import ece, evaluate, main
from customers.intent_events import Event, InvalidEvents, read_events
from customers.model import Signal
from customers.pbuy import load_prior

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HEADER = "user_id,ts,kind,category,product_id,amount\n"
T0 = datetime(2019, 10, 1, tzinfo=UTC)

# --- reading event CSVs --------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCase:
    name: str
    text: str
    expected: list[Event]


PARSED_CASES = [
    ParsedCase("the converter's own format, UTC", HEADER + "u1,2019-10-01 00:00:05,product_view,"
               "computers.desktop,1480613,\n",
               [Event("u1", Signal(at=T0 + timedelta(seconds=5), kind="product_view",
                                   category="computers.desktop", product_id="1480613"))]),
    ParsedCase("RFC 3339 with an offset is read in UTC", HEADER + "u1,2019-10-01T02:00:00+02:00,"
               "purchase,,,12.5\n",
               [Event("u1", Signal(at=T0, kind="purchase", amount=12.5))]),
    ParsedCase("REES46's trailing UTC is accepted", HEADER + "u1,2019-10-01 00:00:00 UTC,cart_add,"
               ",,\n", [Event("u1", Signal(at=T0, kind="cart_add"))]),
    ParsedCase("extra columns are ignored and columns may come in any order",
               "kind,brand,ts,user_id\ncart_add,acme,2019-10-01 00:00:00,u2\n",
               [Event("u2", Signal(at=T0, kind="cart_add"))]),
    ParsedCase("an unknown kind is kept (it carries no intent)",
               HEADER + "u1,2019-10-01 00:00:00,remove_from_cart,,,\n",
               [Event("u1", Signal(at=T0, kind="remove_from_cart"))]),
    ParsedCase("blank lines are skipped", HEADER + "\n", []),
]


@pytest.mark.parametrize("case", PARSED_CASES, ids=lambda c: c.name)
def test_reads_events(case: ParsedCase) -> None:
    assert read_events(case.text) == case.expected


@dataclass(frozen=True)
class BadCase:
    name: str
    text: str
    line: int
    column: str


BAD_CASES = [
    BadCase("an empty file", "", 1, "header"),
    BadCase("a header without ts", "user_id,kind\nu,view\n", 1, "ts"),
    BadCase("a row with a missing field", HEADER + "u1,2019-10-01 00:00:00,cart_add,,\n", 2,
            "row"),
    BadCase("an empty user", HEADER + ",2019-10-01 00:00:00,cart_add,,,\n", 2, "user_id"),
    BadCase("a date without a time", HEADER + "u,2019-10-01,cart_add,,,\n", 2, "ts"),
    BadCase("Unix seconds are not a timestamp here", HEADER + "u,1569888000,cart_add,,,\n", 2,
            "ts"),
    BadCase("an impossible date", HEADER + "u,2019-02-30 00:00:00,cart_add,,,\n", 2, "ts"),
    BadCase("a kind that is not snake_case", HEADER + "u,2019-10-01 00:00:00,Cart Add,,,\n", 2,
            "kind"),
    BadCase("an amount that is not a number", HEADER + "u,2019-10-01 00:00:00,purchase,,,ten\n",
            2, "amount"),
    BadCase("a negative amount", HEADER + "u,2019-10-01 00:00:00,purchase,,,-1\n", 2, "amount"),
    BadCase("an infinite amount", HEADER + "u,2019-10-01 00:00:00,purchase,,,inf\n", 2, "amount"),
    BadCase("NUL in a category", HEADER + "u,2019-10-01 00:00:00,cart_add,a\x00b,,\n", 2,
            "category"),
    BadCase("the third line is the bad one", HEADER + "u,2019-10-01 00:00:00,cart_add,,,\n"
            "u,yesterday,cart_add,,,\n", 3, "ts"),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.name)
def test_bad_input_names_the_line_and_column(case: BadCase, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(case.text, encoding="utf-8")
    with pytest.raises(InvalidEvents) as err:
        read_events(path)
    assert (err.value.line, err.value.column) == (case.line, case.column)
    assert f"line {case.line}, column {case.column}" in str(err.value)


def test_the_cli_names_the_file_and_writes_nothing(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "test.csv"
    bad.write_text(HEADER + "u,2019-10-01 00:00:00,purchase,,,ten\n")
    out = tmp_path / "out.csv"
    code = main(["evaluate", "--train", str(FIXTURES / "rees46_sample_train.csv"),
                 "--test", str(bad), "--out", str(out)])
    assert code == 2 and not out.exists()
    assert f"{bad}: line 2, column amount" in capsys.readouterr().err


# --- no leakage: what happens after a row never changes that row ---------------------------------

KINDS = ["product_view", "cart_add", "checkout", "purchase", "search"]
CATEGORIES = [None, "electronics.smartphone", "home", "electronics.audio"]


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Event], list[Event], int, list[Event]]:
    """TRAIN, TEST, a TEST row, and a rewrite of everything in TEST after that row."""
    def events(n_min: int, n_max: int, start_h: float) -> list[Event]:
        n = draw(st.integers(n_min, n_max))
        return [Event(draw(st.sampled_from(["a", "b", "c"])), Signal(
            at=T0 + timedelta(hours=start_h + draw(st.floats(0, 72, allow_nan=False))),
            kind=draw(st.sampled_from(KINDS)), category=draw(st.sampled_from(CATEGORIES))))
            for _ in range(n)]

    train = events(0, 25, 0)
    test = events(1, 25, 80)
    row = draw(st.integers(0, len(test) - 1))
    cut = (test[row].signal.at, row)
    # "after the row": later in time, or at the same instant but later in the file
    keep = [e for i, e in enumerate(test) if (e.signal.at, i) <= cut]
    later = events(0, 15, 80)
    later = [Event(e.user_id, Signal(at=max(e.signal.at, cut[0] + timedelta(seconds=1)),
                                     kind=e.signal.kind,
                                     category=e.signal.category)) for e in later]
    rewritten = keep + later  # removes, adds and changes every later event, keeping row order
    return train, test, row, rewritten


@settings(max_examples=30, deadline=None)
@given(streams())
def test_events_after_a_row_never_change_its_output(
        case: tuple[list[Event], list[Event], int, list[Event]]) -> None:
    train, test, row, rewritten = case
    prior = load_prior()
    before = evaluate(train, test, prior)
    after = evaluate(train, rewritten, prior)
    new_row = sorted(i for i, e in enumerate(test) if (e.signal.at, i)
                     <= (test[row].signal.at, row)).index(row)
    assert after.p_buy[new_row] == before.p_buy[row]
    assert after.micromoment[new_row] == before.micromoment[row]


# --- metrics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EceCase:
    name: str
    p: list[float]
    y: list[int]
    expected: float


ECE_CASES = [
    EceCase("perfectly calibrated bins have no error", [0.25] * 4 + [0.75] * 4,
            [1, 0, 0, 0, 1, 1, 1, 0], 0.0),
    EceCase("always 0.9 for what happens half the time errs by 0.4", [0.9] * 4, [1, 0, 1, 0], 0.4),
    EceCase("a probability of exactly one lands in the top bin", [1.0, 1.0], [1, 1], 0.0),
]


@pytest.mark.parametrize("case", ECE_CASES, ids=lambda c: c.name)
def test_ece(case: EceCase) -> None:
    assert ece(np.array(case.p), np.array(case.y)) == pytest.approx(case.expected)


# --- the command, end to end on real data ---------------------------------------------------------


def test_evaluate_end_to_end_on_the_real_fixture(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--train", str(FIXTURES / "rees46_sample_train.csv"),
                 "--test", str(FIXTURES / "rees46_sample_test.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("p_buy (", "baseline: cart adds 24h", "baseline: views recency+frequency",
                 "AUC", "log loss", "ECE"):
        assert name in printed
    rows = list(csv.reader(io.StringIO(out.read_text())))
    test_rows = len(read_events(FIXTURES / "rees46_sample_test.csv"))
    assert rows[0] == ["row", "p_buy", "micromoment"]
    assert [int(r[0]) for r in rows[1:]] == list(range(test_rows))
    assert all(0.0 < float(r[1]) < 1.0 for r in rows[1:])


def test_the_fixture_is_two_disjoint_halves_of_real_customers() -> None:
    train = {e.user_id for e in read_events(FIXTURES / "rees46_sample_train.csv")}
    test = {e.user_id for e in read_events(FIXTURES / "rees46_sample_test.csv")}
    assert train and test and not train & test
