"""Next-place probabilities that mean what they say: ECE, `--probs`, the temperature, save/load."""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest

from fixtures.visits import generate, split_by_time, to_csv
from geo.predict import NextPlaceModel, Visit, load_model, read_visits_csv, save_model
from geo.predict_eval import evaluate, expected_calibration_error, main
from geo.predict_fit import top1_temperature

T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


@functools.cache
def fitted() -> NextPlaceModel:
    """A fitted model, softened as calibration does for an over-sure one (this synthetic city's
    own model is not over-sure, so its fitted temperature is 1)."""
    model = NextPlaceModel.fit(read_visits_csv(to_csv(generate(seed=3, users=40, days=28))))
    return NextPlaceModel(msgspec.structs.replace(model._s, temperature=1.37))


# --- expected calibration error ------------------------------------------------------------------


@dataclass(frozen=True)
class EceCase:
    name: str
    probs: list[float]
    hits: list[bool]
    ece: float


ECE_CASES = [
    EceCase("no predictions have no error", [], [], 0.0),
    EceCase("a bin whose hit rate equals its mean probability has none",
            [0.25, 0.25, 0.25, 0.25], [True, False, False, False], 0.0),
    EceCase("always 0.9 sure and always right is 0.1 off", [0.9, 0.9], [True, True], 0.1),
    EceCase("bins are weighted by their share of the predictions",
            [0.95, 0.95, 0.95, 0.15], [False, False, False, False], (3 * 0.95 + 0.15) / 4),
    EceCase("errors of opposite sign in different bins do not cancel",
            [0.85, 0.15], [False, True], 0.85),
    EceCase("p = 1 falls in the top bin, not past it", [1.0, 0.95], [True, True], 0.025),
    EceCase("within one bin, over and under cancel (equal-width binning)",
            [0.42, 0.48], [False, True], 0.05),
]


@pytest.mark.parametrize("case", ECE_CASES, ids=lambda c: c.name)
def test_expected_calibration_error_uses_ten_equal_width_bins(case: EceCase) -> None:
    assert expected_calibration_error(case.probs, case.hits) == pytest.approx(case.ece)


# --- the temperature -----------------------------------------------------------------------------


def _examples(seed: int, n: int, sharpen: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n examples of 6 candidates plus "somewhere else": scores `sharpen` times the true logits
    (sharpen > 1: over-confident), the place visited drawn from the true probabilities."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (n, 7))
    logits[:, :6] += rng.gamma(1.0, 1.5, (n, 1)) * (np.arange(6) == 0)  # often a clear favourite
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    visited = np.array([rng.choice(7, p=p) for p in true])
    return logits * sharpen, visited, np.arange(n) * 7


def _top1(scores: np.ndarray, visited: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    s = scores / t
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    first = p[:, :6].argmax(axis=1)  # "somewhere else" is never a prediction
    return p[np.arange(len(p)), first], first == visited


def test_the_temperature_fitted_on_one_slice_removes_over_confidence_on_another() -> None:
    fit_scores, fit_visited, starts = _examples(1, 4_000, sharpen=2.0)
    first = fit_scores[:, :6].argmax(axis=1)
    t = top1_temperature(fit_scores.ravel(), starts, fit_scores[np.arange(4_000), first],
                         first == fit_visited)
    # Held out, never seen by the fit, and large enough that the ECE's own sampling noise
    # (about 0.02 at 4,000 examples even with the true temperature) stays well under 0.02.
    scores, visited, _ = _examples(2, 20_000, sharpen=2.0)
    before = expected_calibration_error(*_top1(scores, visited, 1.0))
    after = expected_calibration_error(*_top1(scores, visited, t))
    same_ranking = (np.argsort(-scores, axis=1, kind="stable")
                    == np.argsort(-scores / t, axis=1, kind="stable")).all()
    assert (t > 1.5, before > 0.1, after < 0.02, bool(same_ranking)) == (True, True, True, True)


@pytest.mark.parametrize(("sharpen", "low", "high"), [(1.0, 1.0, 1.15), (0.5, 1.0, 1.0)],
                         ids=["an honest model keeps a temperature near one",
                              "an under-confident model is never sharpened"])
def test_the_temperature_only_softens(sharpen: float, low: float, high: float) -> None:
    scores, visited, starts = _examples(3, 4_000, sharpen=sharpen)
    first = scores[:, :6].argmax(axis=1)
    t = top1_temperature(scores.ravel(), starts, scores[np.arange(4_000), first],
                         first == visited)
    assert low <= t <= high


def test_a_routine_the_first_place_always_got_right_is_not_made_certain() -> None:
    scores, _, starts = _examples(4, 500, sharpen=1.0)
    first = scores[:, :6].argmax(axis=1)
    t = top1_temperature(scores.ravel(), starts, scores[np.arange(500), first],
                         np.ones(500, dtype=bool))
    assert t == 1.0


def test_the_calibration_changes_the_probabilities_but_never_the_order() -> None:
    model = fitted()
    uncalibrated = NextPlaceModel(msgspec.structs.replace(model._s, temperature=1.0))
    users = sorted(model._s.users)[:10]
    now = T0 + timedelta(days=30, hours=12)
    calibrated = [model.predict(u, [], now, k=20) for u in users]
    plain = [uncalibrated.predict(u, [], now, k=20) for u in users]
    assert ([[p for p, _ in r] for r in calibrated] == [[p for p, _ in r] for r in plain]
            and [r[0][1] for r in calibrated] != [r[0][1] for r in plain]
            and model.temperature != 1.0)


# --- persistence ---------------------------------------------------------------------------------


def test_a_saved_model_keeps_its_calibration(tmp_path: Path) -> None:
    model = fitted()
    save_model(model, tmp_path / "m.msgpack")
    loaded = load_model(tmp_path / "m.msgpack")
    now = T0 + timedelta(days=30, hours=18)
    users = sorted(model._s.users)[:5]
    assert (loaded.temperature, [loaded.predict(u, [], now) for u in users]) == (
        model.temperature, [model.predict(u, [], now) for u in users])


def test_a_model_saved_before_calibration_loads_uncalibrated(tmp_path: Path) -> None:
    old = msgspec.to_builtins(fitted()._s)
    del old["temperature"]
    (tmp_path / "old.msgpack").write_bytes(msgspec.msgpack.encode(old))
    assert load_model(tmp_path / "old.msgpack").temperature == 1.0


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_a_model_file_with_a_nonsense_temperature_is_refused(
    tmp_path: Path, temperature: float
) -> None:
    bad = msgspec.structs.replace(fitted()._s, temperature=temperature)
    (tmp_path / "bad.msgpack").write_bytes(msgspec.msgpack.encode(bad))
    with pytest.raises(ValueError, match="temperature"):
        load_model(tmp_path / "bad.msgpack")


# --- evaluate --probs ----------------------------------------------------------------------------


def test_probs_lists_the_top_ten_of_every_test_row_with_their_probabilities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = split_by_time(generate(seed=5, users=12, days=14), 14, 3)
    (tmp_path / "train.csv").write_text(to_csv(train))
    (tmp_path / "test.csv").write_text(to_csv(test))
    code = main(["evaluate", "--train", str(tmp_path / "train.csv"), "--test",
                 str(tmp_path / "test.csv"), "--probs", str(tmp_path / "out" / "q.csv")])
    rows = list(csv.reader(io.StringIO((tmp_path / "out" / "q.csv").read_text())))
    ev = evaluate(read_visits_csv(tmp_path / "train.csv"), read_visits_csv(tmp_path / "test.csv"))
    expected = [["row", "rank", "place_id", "probability"]] + [
        [str(i), str(r), p, f"{q:.6g}"]
        for i, (places, probs) in enumerate(zip(ev.rankings, ev.probabilities, strict=True))
        for r, (p, q) in enumerate(zip(places, probs, strict=True), 1)]
    per_row = {int(r[0]) for r in rows[1:]}
    printed = f"top-1 expected calibration error (10 equal-width bins): {ev.ece:.4f}"
    assert (code, rows, per_row, printed in capsys.readouterr().out) == (
        0, expected, set(range(len(read_visits_csv(tmp_path / "test.csv")))), True)


def test_probs_are_ranked_and_at_most_ten_per_row(tmp_path: Path) -> None:
    train, test = split_by_time(generate(seed=8, users=15, days=14), 14, 3)
    ev = evaluate(read_visits_csv(to_csv(train)), read_visits_csv(to_csv(test)))
    bad = [i for i, probs in enumerate(ev.probabilities)
           if len(probs) > 10 or probs != sorted(probs, reverse=True) or sum(probs) > 1 + 1e-9]
    assert (bad, min(len(p) for p in ev.probabilities)) == ([], 10)


def test_a_place_id_with_a_comma_stays_one_csv_field(tmp_path: Path) -> None:
    visits = [Visit(f"u{u}", place, T0 + timedelta(days=d, hours=h))
              for u in range(3) for d in range(10)
              for h, place in ((8, "Café, Rue 1"), (12, 'the "office"'), (19, "home"))]
    (tmp_path / "train.csv").write_text(_csv(visits[:60]))
    (tmp_path / "test.csv").write_text(_csv(visits[60:]))
    main(["evaluate", "--train", str(tmp_path / "train.csv"), "--test",
          str(tmp_path / "test.csv"), "--probs", str(tmp_path / "q.csv")])
    rows = list(csv.reader(io.StringIO((tmp_path / "q.csv").read_text())))
    places = {r[2] for r in rows[1:]}
    assert ({len(r) for r in rows}, places >= {"Café, Rue 1", 'the "office"'}) == ({4}, True)


def _csv(visits: list[Visit]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["user_id", "place_id", "ts"])
    w.writerows([v.user_id, v.place_id, v.arrived_at.isoformat()] for v in visits)
    return out.getvalue()
