"""Next-place model: the evaluation protocol, quality against baselines, online learning, CSVs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from fixtures.visits import generate, split_by_time, to_csv
from geo.predict import (
    InvalidVisits,
    NextPlaceModel,
    Visit,
    load_model,
    read_visits_csv,
    save_model,
)
from geo.predict_eval import Evaluation, evaluate, main

T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


def at(day: int, hour: float) -> datetime:
    return T0 + timedelta(days=day, hours=hour)


@functools.cache
def background() -> tuple[Visit, ...]:
    """A small synthetic city, so fitted weights exist before a test's own customer arrives."""
    return tuple(read_visits_csv(to_csv(generate(seed=3, users=30, days=21))))


# --- the protocol never leaks the future -------------------------------------------------------


@dataclass(frozen=True)
class LeakCase:
    name: str
    train: list[Visit]
    test: list[Visit]


def _train_routine() -> list[Visit]:
    return [Visit("u", p, at(d, h)) for d in range(7) for p, h in (("home", 7), ("work", 9))]


LEAK_CASES = [
    LeakCase(
        "every test visit goes to a place nobody has visited before",
        _train_routine(),
        [Visit("u", f"new{i}", at(8, i)) for i in range(12)],
    ),
    LeakCase(
        "every test visit is by a customer nobody has seen before",
        _train_routine(),
        [Visit(f"stranger{i}", f"new{i}", at(8, i / 2)) for i in range(12)],
    ),
]


@pytest.mark.parametrize("case", LEAK_CASES, ids=lambda c: c.name)
def test_no_method_can_predict_a_visit_only_the_visit_itself_reveals(case: LeakCase) -> None:
    ev = evaluate(case.train, case.test)
    assert [(s.name, s.acc[10], s.mrr) for s in ev.scores] == [
        (s.name, 0.0, 0.0) for s in ev.scores
    ]


def test_a_later_test_row_never_helps_an_earlier_one_even_when_listed_first() -> None:
    # Row 0 happens after row 1; both go to the same new place. Only row 0 may find it.
    test = [Visit("u", "new", at(9, 12)), Visit("u", "new", at(8, 12))]
    ev = evaluate(_train_routine(), test)
    assert ("new" in ev.rankings[0], "new" in ev.rankings[1]) == (True, False)


# --- quality on synthetic data ------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_evaluation() -> Evaluation:
    days = 35
    train, test = split_by_time(generate(seed=11, users=80, days=days), days, 7)
    return evaluate(read_visits_csv(to_csv(train)), read_visits_csv(to_csv(test)))


MARGINS = [  # (metric, the model's minimum lead over every baseline)
    ("Acc@1", 0.10),
    ("Acc@5", 0.03),
    ("MRR", 0.08),
]


@pytest.mark.parametrize(("metric", "margin"), MARGINS, ids=[m for m, _ in MARGINS])
def test_the_model_beats_every_baseline_by_a_clear_margin(
    synthetic_evaluation: Evaluation, metric: str, margin: float
) -> None:
    def value(name: str) -> float:
        s = next(s for s in synthetic_evaluation.scores if s.name == name)
        return s.mrr if metric == "MRR" else s.acc[int(metric.split("@")[1])]

    model = value("model")
    lagging = {s.name: value(s.name) for s in synthetic_evaluation.scores[1:]
               if model < value(s.name) + margin}
    assert lagging == {}, f"model {metric}={model:.3f}"


def test_predicted_probabilities_match_observed_frequencies(
    synthetic_evaluation: Evaluation,
) -> None:
    off = [(r.low, r.mean_predicted, r.observed) for r in synthetic_evaluation.reliability
           if r.count >= 200 and abs(r.mean_predicted - r.observed) > 0.1]
    assert off == []


# --- online learning --------------------------------------------------------------------------


def _mornings(user: str, cafe: str, first_day: int, days: int) -> list[Visit]:
    out = []
    for d in range(first_day, first_day + days):
        out += [Visit(user, "home", at(d, 7)), Visit(user, cafe, at(d, 8)),
                Visit(user, "office", at(d, 9)), Visit(user, "home", at(d, 19))]
    return out


@pytest.fixture(scope="module")
def fitted() -> NextPlaceModel:
    return NextPlaceModel.fit(background())


@dataclass(frozen=True)
class RoutineCase:
    name: str
    learned: list[Visit]
    expected_first: str


ROUTINE_CASES = [
    RoutineCase(
        "a new customer's morning coffee after home is learned from updates alone",
        _mornings("newbie", "cafe-a", 0, 8),
        "cafe-a",
    ),
    RoutineCase(
        "a customer who switches cafés is predicted at the new one after two weeks",
        _mornings("switcher", "cafe-a", 0, 10) + _mornings("switcher", "cafe-b", 10, 14),
        "cafe-b",
    ),
]


@pytest.mark.parametrize("case", ROUTINE_CASES, ids=lambda c: c.name)
def test_online_updates_teach_the_model_a_routine(case: RoutineCase) -> None:
    model = NextPlaceModel.fit(background())
    for v in case.learned:
        model.update(v)
    user = case.learned[0].user_id
    last_day = case.learned[-1].arrived_at.date()
    morning = datetime.combine(last_day, datetime.min.time(), UTC) + timedelta(days=1, hours=7)
    home = Visit(user, "home", morning)
    model.update(home)
    ranked = model.predict(user, [home], morning + timedelta(minutes=50), k=3)
    assert ranked[0][0] == case.expected_first


def test_predictions_change_when_a_visit_is_learned() -> None:
    model = NextPlaceModel.fit(background())
    before = model.predict("ghost", [], at(30, 12))
    model.update(Visit("ghost", "only-mine", at(30, 11)))
    after = model.predict("ghost", [], at(30, 12))
    assert ("only-mine" in dict(before), "only-mine" in dict(after)) == (False, True)


def test_a_customer_at_an_unknown_place_is_offered_what_is_popular_around_it() -> None:
    model = NextPlaceModel.fit(background())
    for i in range(20):  # a modest café far from the background city
        model.update(Visit(f"local{i}", "paris-cafe", at(30, 9), lat=48.85, lng=2.35))
    here = Visit("tourist", "unknown-hotel", at(31, 8), lat=48.851, lng=2.351)
    assert "paris-cafe" in dict(model.predict("tourist", [here], at(31, 9)))


@dataclass(frozen=True)
class ShapeCase:
    name: str
    k: int
    min_probability: float


SHAPE_CASES = [
    ShapeCase("ten places are returned best first and their probabilities sum to at most one",
              10, 0.0),
    ShapeCase("min_probability drops the unlikely places", 10, 0.05),
]


@pytest.mark.parametrize("case", SHAPE_CASES, ids=lambda c: c.name)
def test_predictions_are_ranked_probabilities(fitted: NextPlaceModel, case: ShapeCase) -> None:
    user = next(iter(sorted({v.user_id for v in background()})))
    ranked = fitted.predict(user, [], at(30, 12), k=case.k,
                            min_probability=case.min_probability)
    probs = [p for _, p in ranked]
    assert (len(ranked) <= case.k and probs == sorted(probs, reverse=True)
            and sum(probs) <= 1.0 + 1e-9 and min(probs) >= case.min_probability)


def test_a_saved_model_predicts_exactly_like_the_original(
    fitted: NextPlaceModel, tmp_path: Path
) -> None:
    save_model(fitted, tmp_path / "model.msgpack")
    loaded = load_model(tmp_path / "model.msgpack")
    users = sorted({v.user_id for v in background()})[:5]
    assert ([loaded.predict(u, [], at(30, 18)) for u in users]
            == [fitted.predict(u, [], at(30, 18)) for u in users])


# --- CLI -----------------------------------------------------------------------------------------


def test_evaluate_writes_one_ranking_line_per_test_row(tmp_path: Path) -> None:
    train, test = split_by_time(generate(seed=5, users=12, days=14), 14, 3)
    (tmp_path / "train.csv").write_text(to_csv(train))
    (tmp_path / "test.csv").write_text(to_csv(test))
    code = main(["evaluate", "--train", str(tmp_path / "train.csv"), "--test",
                 str(tmp_path / "test.csv"), "--out", str(tmp_path / "out" / "p.csv")])
    lines = (tmp_path / "out" / "p.csv").read_text().splitlines()
    assert (code, lines[0], [ln.split(",")[0] for ln in lines[1:]]) == (
        0, "row,p1,p2,p3,p4,p5,p6,p7,p8,p9,p10", [str(i) for i in range(len(test))]
    )


def test_fit_saves_a_model_that_loads_and_predicts(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text(to_csv(generate(seed=5, users=12, days=14)))
    code = main(["fit", "--visits", str(tmp_path / "v.csv"), "--model",
                 str(tmp_path / "m" / "model.msgpack")])
    model = load_model(tmp_path / "m" / "model.msgpack")
    assert (code, len(model.predict("u0001", [], at(30, 12), k=3))) == (0, 3)


def test_a_missing_input_file_is_an_error_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["fit", "--visits", str(tmp_path / "nope.csv"), "--model",
                 str(tmp_path / "m.msgpack")])
    assert (code, capsys.readouterr().err.startswith("error: ")) == (2, True)


# --- CSV parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvCase:
    name: str
    text: str
    expected: Visit


CSV_CASES = [
    CsvCase("unix seconds are read as UTC", "user_id,place_id,ts\nu1,p1,1709510400\n",
            Visit("u1", "p1", datetime(2024, 3, 4, tzinfo=UTC))),
    CsvCase("fractional unix seconds keep their fraction",
            "user_id,place_id,ts\nu1,p1,1709510400.5\n",
            Visit("u1", "p1", datetime(2024, 3, 4, 0, 0, 0, 500_000, tzinfo=UTC))),
    CsvCase("RFC 3339 with Z is UTC", "user_id,place_id,ts\nu1,p1,2024-03-04T08:30:00Z\n",
            Visit("u1", "p1", datetime(2024, 3, 4, 8, 30, tzinfo=UTC))),
    CsvCase("RFC 3339 keeps its offset, which sets the local time of day",
            "user_id,place_id,ts\nu1,p1,2024-03-04T08:30:00-05:00\n",
            Visit("u1", "p1", datetime(2024, 3, 4, 8, 30, tzinfo=timezone(timedelta(hours=-5))))),
    CsvCase("lat and lng are read when present",
            "user_id,place_id,ts,lat,lng\nu1,p1,1709510400,40.5,-73.25\n",
            Visit("u1", "p1", datetime(2024, 3, 4, tzinfo=UTC), lat=40.5, lng=-73.25)),
    CsvCase("empty lat and lng mean no coordinates",
            "user_id,place_id,ts,lat,lng\nu1,p1,1709510400,,\n",
            Visit("u1", "p1", datetime(2024, 3, 4, tzinfo=UTC))),
    CsvCase("columns may come in any order",
            "ts,lng,place_id,lat,user_id\n1709510400,2.5,p1,48.5,u1\n",
            Visit("u1", "p1", datetime(2024, 3, 4, tzinfo=UTC), lat=48.5, lng=2.5)),
]


@pytest.mark.parametrize("case", CSV_CASES, ids=lambda c: c.name)
def test_csv_rows_become_visits(case: CsvCase) -> None:
    assert read_visits_csv(case.text) == [case.expected]


def test_a_csv_file_path_is_read_like_its_text(tmp_path: Path) -> None:
    text = "user_id,place_id,ts\nu1,p1,1709510400\nu2,p2,2024-03-04T08:30:00Z\n"
    (tmp_path / "v.csv").write_text(text)
    assert read_visits_csv(tmp_path / "v.csv") == read_visits_csv(text)


@dataclass(frozen=True)
class BadCsvCase:
    name: str
    text: str
    line: int
    column: str


BAD_CSV_CASES = [
    BadCsvCase("a header without ts is refused on line 1", "user_id,place_id,when\nu,p,1\n",
               1, "ts"),
    BadCsvCase("a timestamp that is neither format names its line",
               "user_id,place_id,ts\nu,p,1\nu,p,yesterday\n", 3, "ts"),
    BadCsvCase("a latitude beyond 90 degrees is refused",
               "user_id,place_id,ts,lat,lng\nu,p,1,91,0\n", 2, "lat"),
    BadCsvCase("a latitude without a longitude is refused",
               "user_id,place_id,ts,lat,lng\nu,p,1,40,\n", 2, "lng"),
    BadCsvCase("a longitude that is not a number is refused",
               "user_id,place_id,ts,lat,lng\nu,p,1,40,east\n", 2, "lng"),
    BadCsvCase("an empty place_id is refused", "user_id,place_id,ts\nu,p,1\nu,,2\n",
               3, "place_id"),
    BadCsvCase("a row with too few fields is refused", "user_id,place_id,ts\nu,p\n", 2, "ts"),
    BadCsvCase("a NUL in a user_id is refused (PostgreSQL cannot store it)",
               "user_id,place_id,ts\nu\x00,p,1\n", 2, "user_id"),
    BadCsvCase("a NUL in a place_id is refused", "user_id,place_id,ts\nu,p,1\nu,\x00p,2\n",
               3, "place_id"),
    BadCsvCase("a lone carriage return ends a line like a newline does (it was a 500)",
               "\ruser_id,place_id,ts\n", 1, "user_id"),
    BadCsvCase("a field past the csv module's limit is refused naming its line (it was a 500)",
               "user_id,place_id,ts\nu," + "p" * 200_000 + ",1\n", 2, "row"),
]


@pytest.mark.parametrize("case", BAD_CSV_CASES, ids=lambda c: c.name)
def test_bad_csv_input_names_its_line_and_column(case: BadCsvCase) -> None:
    with pytest.raises(InvalidVisits) as err:
        read_visits_csv(case.text)
    assert (err.value.line, err.value.column) == (case.line, case.column)
    assert str(err.value).startswith(f"line {case.line}, column {case.column}: ")
