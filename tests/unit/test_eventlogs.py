"""The public log converter: each format's rows, files of another format, and the command end to
end (its files are what `python -m customers.intent evaluate` reads). The split and the sample:
test_eventlogs_split.py."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from customers import intent_eval
from customers.eventlogs import (
    InvalidLog,
    Notes,
    Source,
    cdnow_events,
    in_time_order,
    main,
    rees46_events,
    retailrocket_events,
    rr_category_paths,
    rr_item_properties,
)
from customers.intent_events import Event, event_cells, read_events

ROOT = Path(__file__).resolve().parents[2]
Row = tuple[str, str, str, str, str, str]  # user_id, ts, kind, category, product_id, amount


def src(text: str, name: str = "log.csv") -> Source:
    return Source(name, io.StringIO(text, newline=""))


def rows(events: list[Event]) -> list[Row]:
    return [(c[0], c[1], c[2], c[3], c[4], c[5]) for c in map(event_cells, events)]


# --- REES46 --------------------------------------------------------------------------------------

REES46 = ("event_time,event_type,product_id,category_id,category_code,brand,price,user_id,"
          "user_session\n")
PHONE = "2053013555631882655,electronics.smartphone,apple"


@dataclass(frozen=True)
class ConvertCase:
    name: str
    text: str
    expected: list[Row]
    notes: dict[str, int] = field(default_factory=dict)


REES46_CASES = [
    ConvertCase(
        "a view, a cart and a purchase become product_view, cart_add and a purchase with its price",
        REES46 + f"2019-10-01 00:00:00 UTC,view,1004767,{PHONE},463.07,541312140,s1\n"
        f"2019-10-01 00:00:05 UTC,cart,1004767,{PHONE},463.07,541312140,s1\n"
        f"2019-10-01 00:01:00 UTC,purchase,1004767,{PHONE},463.07,541312140,s1\n",
        [("541312140", "2019-10-01 00:00:00", "product_view", "electronics.smartphone",
          "1004767", ""),
         ("541312140", "2019-10-01 00:00:05", "cart_add", "electronics.smartphone", "1004767", ""),
         ("541312140", "2019-10-01 00:01:00", "purchase", "electronics.smartphone", "1004767",
          "463.07")]),
    ConvertCase(
        "remove_from_cart has no counterpart, so it is dropped and counted",
        REES46 + f"2019-10-01 00:00:00 UTC,cart,1004767,{PHONE},463.07,7,s\n"
        f"2019-10-01 00:00:09 UTC,remove_from_cart,1004767,{PHONE},463.07,7,s\n"
        f"2019-10-01 00:00:10 UTC,remove_from_cart,1004767,{PHONE},463.07,7,s\n",
        [("7", "2019-10-01 00:00:00", "cart_add", "electronics.smartphone", "1004767", "")],
        {"dropped_remove_from_cart": 2}),
    ConvertCase(
        "a line cut off at the end of the file is skipped and counted",
        REES46 + f"2019-10-01 00:00:00 UTC,view,1004767,{PHONE},463.07,7,s\n"
        "2019-10-01 02:50:00 UTC,view,10900305,2053013555069845885,appliances.kitchen.mixer,"
        "elenberg,25.71,52040330",
        [("7", "2019-10-01 00:00:00", "product_view", "electronics.smartphone", "1004767", "")],
        {"skipped_malformed": 1}),
    ConvertCase(
        "the category id stands in when category_code is empty",
        REES46 + "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,"
        "541312140,s\n",
        [("541312140", "2019-10-01 00:00:00", "product_view", "2103807459595387724", "44600062",
          "")]),
    ConvertCase(
        "an unreadable time is skipped and counted",
        REES46 + f"yesterday,view,1004767,{PHONE},463.07,7,s\n",
        [], {"skipped_bad_time": 1}),
    ConvertCase(
        "a purchase without a price has no amount, and an unreadable price is counted",
        REES46 + f"2019-10-01 00:00:00 UTC,purchase,1,{PHONE},,7,s\n"
        f"2019-10-01 00:00:01 UTC,purchase,2,{PHONE},-3,7,s\n"
        f"2019-10-01 00:00:02 UTC,purchase,3,{PHONE},nan,7,s\n",
        [("7", f"2019-10-01 00:00:0{i}", "purchase", "electronics.smartphone", str(i + 1), "")
         for i in range(3)],
        {"amount_left_empty": 2}),
    ConvertCase(
        "a row without a user is skipped and counted",
        REES46 + f"2019-10-01 00:00:00 UTC,view,1004767,{PHONE},463.07, ,s\n",
        [], {"skipped_unusable_cell": 1}),
    ConvertCase(
        "rows come out in time order, ties by user and then as read",
        REES46 + f"2019-10-01 00:00:09 UTC,view,1,{PHONE},1,b,s\n"
        f"2019-10-01 00:00:00 UTC,view,2,{PHONE},1,b,s\n"
        f"2019-10-01 00:00:00 UTC,view,3,{PHONE},1,a,s\n"
        f"2019-10-01 00:00:00 UTC,cart,4,{PHONE},1,b,s\n",
        [("a", "2019-10-01 00:00:00", "product_view", "electronics.smartphone", "3", ""),
         ("b", "2019-10-01 00:00:00", "product_view", "electronics.smartphone", "2", ""),
         ("b", "2019-10-01 00:00:00", "cart_add", "electronics.smartphone", "4", ""),
         ("b", "2019-10-01 00:00:09", "product_view", "electronics.smartphone", "1", "")]),
]


@pytest.mark.parametrize("case", REES46_CASES, ids=lambda c: c.name)
def test_rees46(case: ConvertCase) -> None:
    notes: Notes = Counter()
    assert rows(in_time_order(rees46_events([src(case.text)], notes))) == case.expected
    assert dict(notes) == case.notes


# --- RetailRocket --------------------------------------------------------------------------------

RR = "timestamp,visitorid,event,itemid,transactionid\n"
PROPS = "timestamp,itemid,property,value\n"
TREE = "categoryid,parentid\n1,\n3,1\n7,3\n"
T_MS = 1433221332117  # 2015-06-02 05:02:12.117 UTC
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class RetailRocketCase:
    name: str
    events: str
    expected: list[Row]
    properties: str | None = None
    tree: str | None = None
    prices: bool = False
    notes: dict[str, int] = field(default_factory=dict)


RR_CASES = [
    RetailRocketCase(
        "view, addtocart and transaction become product_view, cart_add and purchase in whole "
        "seconds",
        RR + f"{T_MS},257597,view,355908,\n{T_MS + HOUR_MS},257597,addtocart,355908,\n"
        f"{T_MS + 2 * HOUR_MS},257597,transaction,355908,4000\n",
        [("257597", "2015-06-02 05:02:12", "product_view", "", "355908", ""),
         ("257597", "2015-06-02 06:02:12", "cart_add", "", "355908", ""),
         ("257597", "2015-06-02 07:02:12", "purchase", "", "355908", "")]),
    RetailRocketCase(
        "an event with no counterpart is dropped and counted, a broken line skipped and counted",
        RR + f"{T_MS},1,view,5,\n{T_MS},1,wishlist,5,\n{T_MS},1,view\nsoon,1,view,5,\n",
        [("1", "2015-06-02 05:02:12", "product_view", "", "5", "")],
        notes={"dropped_wishlist": 1, "skipped_malformed": 1, "skipped_bad_time": 1}),
    RetailRocketCase(
        "the category in force at the event is written as the path of ids from the tree's root",
        RR + f"{T_MS - 1},1,view,5,\n{T_MS + 10},1,view,5,\n{T_MS + 2 * HOUR_MS},1,view,5,\n",
        [("1", "2015-06-02 05:02:12", "product_view", "1.3", "5", ""),
         ("1", "2015-06-02 05:02:12", "product_view", "1.3", "5", ""),
         ("1", "2015-06-02 07:02:12", "product_view", "1.3.7", "5", "")],
        properties=PROPS + f"{T_MS + HOUR_MS},5,categoryid,7\n{T_MS},5,categoryid,3\n"
        f"{T_MS},5,available,1\n",
        tree=TREE),
    RetailRocketCase(
        "without a tree, or for an id the tree does not know, the category is the id",
        RR + f"{T_MS},1,view,5,\n{T_MS},1,view,6,\n",
        [("1", "2015-06-02 05:02:12", "product_view", "3", "5", ""),
         ("1", "2015-06-02 05:02:12", "product_view", "99", "6", "")],
        properties=PROPS + f"{T_MS},5,categoryid,3\n{T_MS},6,categoryid,99\n"),
    RetailRocketCase(
        "a tree whose parents loop ends the path where the loop closes",
        RR + f"{T_MS},1,view,5,\n",
        [("1", "2015-06-02 05:02:12", "product_view", "8.9", "5", "")],
        properties=PROPS + f"{T_MS},5,categoryid,9\n", tree="categoryid,parentid\n8,9\n9,8\n"),
    RetailRocketCase(
        "purchase amounts are left empty unless the price property is asked for",
        RR + f"{T_MS},1,transaction,5,77\n",
        [("1", "2015-06-02 05:02:12", "purchase", "", "5", "")],
        properties=PROPS + f"{T_MS},5,790,n552.000\n"),
    RetailRocketCase(
        "asked for, a purchase takes property 790 as of its time, and a view takes no amount",
        RR + f"{T_MS},1,view,5,\n{T_MS},1,transaction,5,77\n"
        f"{T_MS + 2 * HOUR_MS},1,transaction,5,78\n",
        [("1", "2015-06-02 05:02:12", "product_view", "", "5", ""),
         ("1", "2015-06-02 05:02:12", "purchase", "", "5", "552.0"),
         ("1", "2015-06-02 07:02:12", "purchase", "", "5", "600.5")],
        properties=PROPS + f"{T_MS},5,790,n552.000\n{T_MS + HOUR_MS},5,790,n600.500\n"
        f"{T_MS},5,888,1 n3 424\n{T_MS + HOUR_MS},5,790,\n",
        prices=True),
]


@pytest.mark.parametrize("case", RR_CASES, ids=lambda c: c.name)
def test_retailrocket(case: RetailRocketCase) -> None:
    notes: Notes = Counter()
    props = (rr_item_properties([src(case.properties)], notes, prices=case.prices)
             if case.properties else None)
    tree = rr_category_paths(src(case.tree)) if case.tree else None
    converted = in_time_order(retailrocket_events([src(case.events)], notes, props, tree))
    assert rows(converted) == case.expected
    assert dict(notes) == case.notes


# --- CDNOW ---------------------------------------------------------------------------------------

CDNOW_CASES = [
    ConvertCase(
        "each line is a purchase at midnight UTC of its day, for its dollar value",
        " 00001 19970101  1   11.77\n 00002 19970112  2   89.00\n 00002 19970112  1    0.00\n",
        [("1", "1997-01-01 00:00:00", "purchase", "", "", "11.77"),
         ("2", "1997-01-12 00:00:00", "purchase", "", "", "89.0"),
         ("2", "1997-01-12 00:00:00", "purchase", "", "", "0.0")]),
    ConvertCase(
        "the header line is skipped and counted",
        " customer_id  date number_of_cds  dollar_value\n 00003 19970102  1   20.76\n",
        [("3", "1997-01-02 00:00:00", "purchase", "", "", "20.76")],
        {"skipped_header_or_malformed": 1}),
    ConvertCase(
        "a line with three fields, an impossible date or an unreadable value is skipped",
        " 00004 19970102  1\n 00004 19971302  1   2.00\n 00004 19970102  1   free\n"
        " 00004 19970102  1   2.00\n",
        [("4", "1997-01-02 00:00:00", "purchase", "", "", "2.0")],
        {"skipped_header_or_malformed": 3}),
]


@pytest.mark.parametrize("case", CDNOW_CASES, ids=lambda c: c.name)
def test_cdnow(case: ConvertCase) -> None:
    notes: Notes = Counter()
    assert rows(in_time_order(cdnow_events([src(case.text)], notes))) == case.expected
    assert dict(notes) == case.notes


# --- files that are not the named format ---------------------------------------------------------


@dataclass(frozen=True)
class RefusalCase:
    name: str
    read: Callable[[Source], object]
    text: str
    says: str


def _all(events: Iterator[Event]) -> list[Event]:
    return list(events)


REFUSAL_CASES = [
    RefusalCase("a REES46 file without user_id is refused naming the column",
                lambda s: _all(rees46_events([s], Counter())),
                REES46.replace(",user_id", ",visitor") + "x\n", "missing column 'user_id'"),
    RefusalCase("an empty RetailRocket events file is refused",
                lambda s: _all(retailrocket_events([s], Counter())), "", "the file is empty"),
    RefusalCase("item properties without a value column are refused",
                lambda s: rr_item_properties([s], Counter()), "timestamp,itemid,property\n",
                "missing column 'value'"),
    RefusalCase("a category tree without parentid is refused",
                lambda s: rr_category_paths(s), "categoryid\n1\n", "missing column 'parentid'"),
    RefusalCase("a field longer than the CSV reader's limit is refused as not CSV",
                lambda s: _all(rees46_events([s], Counter())),
                REES46 + 'x,"' + "y" * 200_000 + "\n", "not CSV"),
]


@pytest.mark.parametrize("case", REFUSAL_CASES, ids=lambda c: c.name)
def test_a_file_of_another_format_is_refused_naming_it(case: RefusalCase) -> None:
    with pytest.raises(InvalidLog, match=case.says) as err:
        case.read(src(case.text, name="upload/part1.csv"))
    assert str(err.value).startswith("upload/part1.csv: ")


# --- the command, end to end ---------------------------------------------------------------------

RAW = {
    "rees46": ("2019-Oct.csv", REES46 + "".join(
        f"2019-10-01 00:{m:02d}:00 UTC,{kind},100{u},{PHONE},10.50,{u},s\n"
        for m in range(0, 40, 3) for u in range(1, 6)
        for kind in (["view", "cart", "purchase"] if (m + u) % 4 == 0 else ["view"]))
        + f"2019-10-01 00:59:00 UTC,remove_from_cart,1001,{PHONE},10.50,1,s\n"
        "2019-10-01 01:00:00 UTC,view,1001,205301"),
    "retailrocket": ("events.csv", RR + "".join(
        f"{T_MS + m * 60_000},{u},{'transaction' if (m + u) % 5 == 0 else 'view'},{u % 3},\n"
        for m in range(30) for u in range(1, 6))),
    "cdnow": ("CDNOW_master.txt.gz", " customer_id  date number_of_cds  dollar_value\n" + "".join(
        f" {u:05d} 199701{d:02d}  1   {u + d}.25\n" for d in range(1, 29, 3)
        for u in range(1, 6))),
}


def _write_raw(fmt: str, folder: Path) -> tuple[Path, list[str]]:
    name, text = RAW[fmt]
    path = folder / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    extra: list[str] = []
    if fmt == "retailrocket":
        (folder / "props.csv").write_text(PROPS + f"{T_MS},1,categoryid,7\n{T_MS},2,categoryid,3\n"
                                          f"{T_MS},1,790,n12.000\n")
        (folder / "tree.csv").write_text(TREE)
        extra = ["--item-properties", str(folder / "props.csv"), "--category-tree",
                 str(folder / "tree.csv"), "--rr-price"]
    return path, extra


@pytest.mark.parametrize("fmt", list(RAW))
def test_the_command_writes_files_that_the_evaluation_reads(fmt: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            ) -> None:
    raw, extra = _write_raw(fmt, tmp_path)
    out = tmp_path / "out"
    assert main(["--format", fmt, "--out-dir", str(out), *extra, str(raw)]) == 0
    events, train, test, sample = (read_events(out / f"{n}.csv")
                                   for n in ("events", "train", "test", "sample"))
    assert (len(train) > 0, len(test) > 0, len(sample) > 0) == (True, True, True)
    assert sorted(rows(train + test)) == sorted(rows(events))  # every user has >= 2 events
    assert max(e.signal.at for e in train) < min(e.signal.at for e in test)
    assert (out / "SUMMARY.txt").read_text() == capsys.readouterr().out
    assert intent_eval.main(["evaluate", "--train", str(out / "train.csv"),
                             "--test", str(out / "test.csv")]) == 0


def test_it_runs_as_a_module(tmp_path: Path) -> None:
    raw, _ = _write_raw("rees46", tmp_path)
    done = subprocess.run([sys.executable, "-m", "customers.eventlogs", "--format", "rees46",
                           "--out-dir", str(tmp_path / "out"), str(raw)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert "conversion notes: dropped_remove_from_cart=1, skipped_malformed=1" in done.stdout


@dataclass(frozen=True)
class CommandRefusal:
    name: str
    fmt: str
    options: list[str]
    says: str
    raw: str | None = None  # replaces the format's raw text


COMMAND_REFUSALS = [
    CommandRefusal("a train share above 1 is refused naming the option", "cdnow",
                   ["--train-frac", "1.5"], "--train-frac: '1.5' must be >= 0 and <= 1"),
    CommandRefusal("min events of 0 is refused naming the option", "cdnow",
                   ["--min-events", "0"], "--min-events: '0' must be >= 1"),
    CommandRefusal("RetailRocket's options with another format are refused", "rees46",
                   ["--category-tree", "tree.csv"], "--category-tree applies to --format "
                   "retailrocket only"),
    CommandRefusal("prices without item properties are refused", "retailrocket",
                   ["--rr-price"], "--rr-price needs --item-properties"),
    CommandRefusal("a file missing a needed column is refused naming the file and column",
                   "rees46", [], "2019-Oct.csv: missing column 'event_type'",
                   raw="event_time,user_id\n2019-10-01 00:00:00,1\n"),
    CommandRefusal("a file that is not UTF-8 is refused naming the file", "rees46", [],
                   "2019-Oct.csv: not UTF-8", raw=REES46 + "2019-10-01 00:00:00 UTC,view,\udcff\n"),
    CommandRefusal("a log where no user has enough events is refused", "cdnow",
                   ["--min-events", "1000"], "no user has 1000 or more events"),
]


@pytest.mark.parametrize("case", COMMAND_REFUSALS, ids=lambda c: c.name)
def test_the_command_refuses_and_writes_nothing(case: CommandRefusal, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    raw, _ = _write_raw(case.fmt, tmp_path)
    if case.raw is not None:
        raw.write_bytes(case.raw.encode("utf-8", "surrogateescape"))
    out = tmp_path / "out"
    try:
        code = main(["--format", case.fmt, "--out-dir", str(out), *case.options, str(raw)])
    except SystemExit as exit_:  # argparse's own refusals
        code = int(str(exit_.code))
    assert (code, case.says in capsys.readouterr().err, out.exists()) == (2, True, False)
