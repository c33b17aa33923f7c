"""Public e-commerce event logs (REES46, RetailRocket, CDNOW) converted to the shape the intent
evaluation reads (`customers/intent_events.py`): `user_id,ts,kind,category,product_id,amount`.

One rule: each output row is one source row. A source row the shape cannot hold (an event kind
with no counterpart, a cut-off line, an unreadable time) is left out and counted in the notes of
SUMMARY.txt, never silently; a file that is not the named format (no header, a needed column
missing, not UTF-8, not CSV) is refused naming the file, before anything is written.

  kind      product_view | cart_add | purchase
  ts        whole seconds, UTC
  category  a dotted path (REES46 category_code, RetailRocket category-tree path), else the
            source's category id, else empty
  amount    on purchases whose price is known (a finite number >= 0), else empty

Sources (--format):

  rees46        REES46 "eCommerce behavior data from multi category store" (or the cosmetics
                shop) monthly CSVs: event_time,event_type,product_id,category_id,category_code,
                brand,price,user_id,user_session. view -> product_view, cart -> cart_add,
                purchase -> purchase (amount = price); remove_from_cart is dropped (counted).
  retailrocket  RetailRocket events.csv: timestamp (ms),visitorid,event,itemid,transactionid.
                view -> product_view, addtocart -> cart_add, transaction -> purchase.
                --item-properties (item_properties_part*.csv) gives each item's categoryid as
                of the event (and, with --rr-price, the obfuscated price property 790 as the
                amount); --category-tree (category_tree.csv) turns the id into the dotted
                path of ids from the root.
  cdnow         CDNOW_master.txt (customer_id date(YYYYMMDD) number_of_cds dollar_value,
                whitespace separated) -> purchases at 00:00:00, amount = dollar_value.

The converted log is sorted by time (ties: by user, then source order), then split by time and
sampled (`customers/eventlogs_split.py`). Everything is held in memory: fine for RetailRocket's
2.7 M events or a slice of a REES46 month; filter a full month (40-70 M rows) first.

CLI:
    python -m customers.eventlogs --format rees46|retailrocket|cdnow --out-dir DIR FILE [FILE ...]
        [--item-properties F [F ...]] [--category-tree F] [--rr-price]   (retailrocket only)
        [--train-frac 0.75] [--min-events 2] [--sample-users 300] [--sample-max-bytes 300000]
writes DIR/events.csv, train.csv, test.csv, sample.csv and SUMMARY.txt (also printed);
`.gz` inputs are read as gzip.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, TypeVar

from customers.eventlogs_split import EmptySplit, report, sample_users, time_split
from customers.intent_events import MAX_TEXT, Event, parse_ts, write_events
from customers.model import CART_ADD, PRODUCT_VIEW, PURCHASE, Signal

FORMATS = ("rees46", "retailrocket", "cdnow")
REES46_KINDS = {"view": PRODUCT_VIEW, "cart": CART_ADD, "purchase": PURCHASE}
REES46_COLUMNS = ("event_time", "event_type", "product_id", "category_id", "category_code",
                  "price", "user_id")
RR_KINDS = {"view": PRODUCT_VIEW, "addtocart": CART_ADD, "transaction": PURCHASE}
RR_COLUMNS = ("timestamp", "visitorid", "event", "itemid")
RR_PROPERTY_COLUMNS = ("timestamp", "itemid", "property", "value")
RR_TREE_COLUMNS = ("categoryid", "parentid")
RR_PRICE = "790"  # the one numeric property that behaves like a price (values "n<number>")

Notes = Counter[str]  # what was left out or emptied, and why: name -> rows
T = TypeVar("T")


class InvalidLog(ValueError):
    """A source file that is not the format it was named as."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


class Source(NamedTuple):
    """A file's name (for errors) and its text, line by line."""

    name: str
    lines: Iterable[str]


def _rows(source: Source, columns: Sequence[str]) -> Iterator[tuple[dict[str, int], list[str]]]:
    """The data rows, each with the needed columns' positions, or a refusal naming the file."""
    reader = csv.reader(source.lines)
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidLog(source.name, f"the file is empty; expected {','.join(columns)}")
        names = [h.strip() for h in header]
        for col in columns:
            if col not in names:
                raise InvalidLog(source.name, f"missing column {col!r} in header "
                                              f"{','.join(names)!r}")
        idx = {col: names.index(col) for col in columns}
        for row in reader:
            if len(row) != len(names):
                row = []  # a cut-off or run-on line; the caller counts it
            yield idx, row
    except csv.Error as exc:
        raise InvalidLog(source.name, f"line {reader.line_num}: not CSV: {exc}") from None


def _event(user: str, at: datetime, kind: str, category: str, product: str,
           amount: float | None, notes: Notes) -> Event | None:
    """The row as an Event, or None (counted) when a cell is one the evaluation refuses."""
    user, category, product = user.strip(), category.strip(), product.strip()
    cells = (user, category, product)
    if not user or any("\x00" in c or len(c) > MAX_TEXT for c in cells):
        notes["skipped_unusable_cell"] += 1
        return None
    return Event(user, Signal(at=at, kind=kind, category=category or None,
                              product_id=product or None, amount=amount))


def _amount(text: str, notes: Notes) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        notes["amount_left_empty"] += 1
        return None
    return value


# --- REES46 --------------------------------------------------------------------------------------


def rees46_events(sources: Iterable[Source], notes: Notes) -> Iterator[Event]:
    for source in sources:
        for idx, row in _rows(source, REES46_COLUMNS):
            if not row:
                notes["skipped_malformed"] += 1
                continue
            event_type = row[idx["event_type"]]
            kind = REES46_KINDS.get(event_type)
            if kind is None:
                notes[f"dropped_{event_type}"] += 1
                continue
            try:
                at = parse_ts(row[idx["event_time"]].strip()).replace(microsecond=0)
            except ValueError:
                notes["skipped_bad_time"] += 1
                continue
            # category_code is empty for many products; the id still groups them
            category = row[idx["category_code"]] or row[idx["category_id"]]
            amount = _amount(row[idx["price"]], notes) if kind == PURCHASE else None
            event = _event(row[idx["user_id"]], at, kind, category, row[idx["product_id"]],
                           amount, notes)
            if event is not None:
                yield event


# --- RetailRocket --------------------------------------------------------------------------------


@dataclass
class ItemProperties:
    """Each item's snapshots (ms since the epoch, value), in time order."""

    categories: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    prices: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def rr_item_properties(sources: Iterable[Source], notes: Notes, *,
                       prices: bool = False) -> ItemProperties:
    cats: defaultdict[str, list[tuple[int, str]]] = defaultdict(list)
    price: defaultdict[str, list[tuple[int, float]]] = defaultdict(list)
    for source in sources:
        for idx, row in _rows(source, RR_PROPERTY_COLUMNS):
            if not row:
                notes["item_properties_skipped_malformed"] += 1
                continue
            prop, item = row[idx["property"]], row[idx["itemid"]]
            if prop != "categoryid" and not (prices and prop == RR_PRICE):
                continue
            try:
                ts_ms = int(row[idx["timestamp"]])
            except ValueError:
                notes["item_properties_skipped_bad_time"] += 1
                continue
            value = row[idx["value"]].strip()
            if prop == "categoryid":
                cats[item].append((ts_ms, value))
                continue
            # e.g. "n552.000"; the leading "n" marks a number, other values are hashed words
            first = value.split()[0] if value else ""
            amount = _amount(first[1:], notes) if first.startswith("n") else None
            if amount is not None:
                price[item].append((ts_ms, amount))
    for series in cats.values():
        series.sort()
    for prices_of_item in price.values():
        prices_of_item.sort()
    return ItemProperties(dict(cats), dict(price))


def as_of(series: Sequence[tuple[int, T]] | None, ts_ms: int) -> T | None:
    """The value in force at ts_ms (the latest snapshot at or before it), else the earliest one:
    the snapshots begin after some events, and an item's category rarely changes."""
    if not series:
        return None
    i = bisect.bisect_right(series, ts_ms, key=lambda snapshot: snapshot[0])
    return series[i - 1][1] if i > 0 else series[0][1]


def rr_category_paths(source: Source) -> Callable[[str], str]:
    """category id -> the dotted path of ids from its root to it (a cycle ends the walk)."""
    parent: dict[str, str | None] = {}
    for idx, row in _rows(source, RR_TREE_COLUMNS):
        if row:
            parent[row[idx["categoryid"]].strip()] = row[idx["parentid"]].strip() or None
    cache: dict[str, str] = {}

    def path_of(category: str) -> str:
        if category not in cache:
            chain: list[str] = []
            current: str | None = category
            while current is not None and current not in chain:
                chain.append(current)
                current = parent.get(current)
            cache[category] = ".".join(reversed(chain))
        return cache[category]

    return path_of


def retailrocket_events(sources: Iterable[Source], notes: Notes,
                        properties: ItemProperties | None = None,
                        category_path: Callable[[str], str] | None = None) -> Iterator[Event]:
    """Amounts come from `properties.prices`, filled only when asked for (--rr-price)."""
    props = properties or ItemProperties()
    for source in sources:
        for idx, row in _rows(source, RR_COLUMNS):
            if not row:
                notes["skipped_malformed"] += 1
                continue
            kind = RR_KINDS.get(row[idx["event"]])
            if kind is None:
                notes[f"dropped_{row[idx['event']]}"] += 1
                continue
            try:
                ts_ms = int(row[idx["timestamp"]])
                at = datetime.fromtimestamp(ts_ms // 1000, UTC)
            except (ValueError, OverflowError, OSError):
                notes["skipped_bad_time"] += 1
                continue
            item = row[idx["itemid"]].strip()
            category = as_of(props.categories.get(item), ts_ms) or ""
            if category and category_path is not None:
                category = category_path(category)
            amount = as_of(props.prices.get(item), ts_ms) if kind == PURCHASE else None
            event = _event(row[idx["visitorid"]], at, kind, category, item, amount, notes)
            if event is not None:
                yield event


# --- CDNOW ---------------------------------------------------------------------------------------


def cdnow_events(sources: Iterable[Source], notes: Notes) -> Iterator[Event]:
    for source in sources:
        for line in source.lines:
            parts = line.split()
            try:
                if len(parts) != 4 or not parts[1].isdigit():
                    raise ValueError(line)
                customer, day, _cds, dollars = parts
                at = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
                user = str(int(customer))  # "00001" and "1" are one customer
                float(dollars)
            except ValueError:
                notes["skipped_header_or_malformed"] += 1
                continue
            event = _event(user, at, PURCHASE, "", "", _amount(dollars, notes), notes)
            if event is not None:
                yield event


# --- the command ---------------------------------------------------------------------------------


def in_time_order(events: Iterable[Event]) -> list[Event]:
    """By time; ties by user, then in source order (the sort is stable)."""
    return sorted(events, key=lambda e: (e.signal.at, e.user_id))


def _lines(path: Path) -> Iterator[str]:
    with (gzip.open(path, "rt", encoding="utf-8-sig", newline="") if path.suffix == ".gz"
          else path.open(encoding="utf-8-sig", newline="")) as f:
        try:
            yield from f
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
            raise InvalidLog(str(path), f"not UTF-8 text (or a damaged .gz): {exc}") from None


def _sources(paths: Sequence[Path]) -> list[Source]:
    return [Source(str(p), _lines(p)) for p in paths]


def convert(args: argparse.Namespace) -> tuple[list[Event], Notes]:
    notes: Notes = Counter()
    events: Iterable[Event]
    if args.format == "rees46":
        events = rees46_events(_sources(args.inputs), notes)
    elif args.format == "retailrocket":
        props = rr_item_properties(_sources(args.item_properties), notes, prices=args.rr_price)
        tree = (rr_category_paths(Source(str(args.category_tree), _lines(args.category_tree)))
                if args.category_tree else None)
        events = retailrocket_events(_sources(args.inputs), notes, props, tree)
    else:
        events = cdnow_events(_sources(args.inputs), notes)
    return in_time_order(events), notes


def _ranged(cast: Callable[[str], float], low: float, high: float = math.inf,
            ) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            upper = "" if high == math.inf else f" and <= {high:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {low:g}{upper}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m customers.eventlogs", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a public e-commerce event log to user_id,ts,kind,category,"
                    "product_id,amount; split it by time; sample it.")
    ap.add_argument("inputs", nargs="+", type=Path, help="the log's files (.csv, .txt, .gz)")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--item-properties", nargs="+", type=Path, default=[],
                    help="retailrocket: item_properties_part*.csv")
    ap.add_argument("--category-tree", type=Path, help="retailrocket: category_tree.csv")
    ap.add_argument("--rr-price", action="store_true",
                    help="retailrocket: purchase amount from the obfuscated property 790")
    ap.add_argument("--train-frac", type=_ranged(float, 0.0, 1.0), default=0.75,
                    help="share of the time range that goes to train.csv (default 0.75)")
    ap.add_argument("--min-events", type=_ranged(int, 1), default=2,
                    help="keep users with at least this many events (default 2)")
    ap.add_argument("--sample-users", type=_ranged(int, 0), default=300)
    ap.add_argument("--sample-max-bytes", type=_ranged(int, 0), default=300_000)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.format != "retailrocket":
        for option, given in (("--item-properties", args.item_properties),
                              ("--category-tree", args.category_tree),
                              ("--rr-price", args.rr_price)):
            if given:
                ap.error(f"{option} applies to --format retailrocket only")
    if args.rr_price and not args.item_properties:
        ap.error("--rr-price needs --item-properties (the prices are item properties)")
    try:
        events, notes = convert(args)
        split = time_split(events, args.train_frac, int(args.min_events))
        sample = sample_users(split.kept, int(args.sample_users), int(args.sample_max_bytes))
    except (InvalidLog, EmptySplit, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = report(f"source format: {args.format}; inputs: "
                  f"{', '.join(str(p) for p in args.inputs)}", notes, events, split, sample)
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        for name, part in (("events.csv", events), ("train.csv", split.train),
                           ("test.csv", split.test), ("sample.csv", sample)):
            with (args.out_dir / name).open("w", encoding="utf-8", newline="") as f:
                write_events(f, part)
        (args.out_dir / "SUMMARY.txt").write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
