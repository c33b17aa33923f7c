"""SNAP check-in logs become visit CSVs that geo.predict reads: all of them, in local time."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fixtures.checkins import InvalidCheckin, main, read_checkins, split_csv
from geo.predict import read_visits_csv

NY = ZoneInfo("America/New_York")
LOG = (
    "0\t2010-10-12T00:21:28Z\t40.64388\t-73.78280\t23261\n"
    "1\t2010-07-11T20:21:20Z\t40.74137\t-73.98810\t16907\n"
    "\n"
    "0\t2010-01-11T20:20:42Z\t40.74138\t-73.98945\t12973\n"
    "2\t2010-07-11T20:21:20Z\t40.72491\t-73.99462\t341255\n"
)


def test_every_check_in_becomes_one_visit_in_time_order_and_local_time() -> None:
    train, test = split_csv(read_checkins(LOG, NY), 0.25)
    visits = read_visits_csv(train) + read_visits_csv(test)
    assert [(v.user_id, v.place_id, v.arrived_at.isoformat(), v.lat) for v in visits] == [
        ("0", "12973", "2010-01-11T15:20:42-05:00", 40.74138),  # winter: UTC-5
        ("1", "16907", "2010-07-11T16:21:20-04:00", 40.74137),  # summer: UTC-4
        ("2", "341255", "2010-07-11T16:21:20-04:00", 40.72491),  # a tie keeps file order
        ("0", "23261", "2010-10-11T20:21:28-04:00", 40.64388),  # the last quarter: the test
    ]


@dataclass(frozen=True)
class BadCase:
    name: str
    text: str
    line: int


BAD_CASES = [
    BadCase("a line with four fields", "0\t2010-10-12T00:21:28Z\t40.6\t-73.7\n", 1),
    BadCase("a time that is not a time",
            "0\t2010-10-12T00:21:28Z\t40.6\t-73.7\t1\n0\tyesterday\t1\t2\t3\n", 2),
    BadCase("a latitude that is not a number", "0\t2010-10-12T00:21:28Z\tnorth\t-73.7\t1\n", 1),
    BadCase("a time without an offset", "\n0\t2010-10-12T00:21:28\t40.6\t-73.7\t1\n", 2),
    BadCase("an empty location id", "0\t2010-10-12T00:21:28Z\t40.6\t-73.7\t \n", 1),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.name)
def test_a_bad_line_is_refused_with_its_number(case: BadCase) -> None:
    with pytest.raises(InvalidCheckin) as err:
        read_checkins(case.text, NY)
    assert err.value.line == case.line


def test_the_cli_reads_a_gzipped_log_and_writes_both_files(tmp_path: Path) -> None:
    (tmp_path / "log.txt.gz").write_bytes(gzip.compress(LOG.encode()))
    code = main(["--log", str(tmp_path / "log.txt.gz"), "--tz", "America/New_York",
                 "--test-share", "0.5", "--train", str(tmp_path / "o" / "train.csv"),
                 "--test", str(tmp_path / "o" / "test.csv")])
    counts = [len(read_visits_csv(tmp_path / "o" / f)) for f in ("train.csv", "test.csv")]
    assert (code, counts) == (0, [2, 2])


@pytest.mark.parametrize("args", [["--tz", "Mars/Olympus"], ["--test-share", "1.5"]],
                         ids=["an unknown time zone", "a test share outside 0..1"])
def test_bad_options_are_an_error_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    (tmp_path / "log.txt").write_text(LOG)
    code = main(["--log", str(tmp_path / "log.txt"), "--train", str(tmp_path / "a.csv"),
                 "--test", str(tmp_path / "b.csv"), *args])
    assert (code, capsys.readouterr().err.startswith("error: ")) == (2, True)
