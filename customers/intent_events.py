"""Event CSVs for offline work on intent: `user_id,ts,kind,category,product_id,amount`.

One rule: a file is read whole or refused with the line (1-based, the header is line 1) and the
column that is wrong; nothing is half-read. Extra columns are ignored; `category`, `product_id`
and `amount` may be absent or empty. `ts` is RFC 3339 (a missing offset means UTC) or
`YYYY-MM-DD HH:MM:SS` (UTC; a trailing ` UTC` is accepted too, as REES46 writes it).
`write_events` writes the same shape: all six columns, `ts` as `YYYY-MM-DD HH:MM:SS` in UTC.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import msgspec

from customers.model import Signal
from geo.visits_csv import csv_reader

if TYPE_CHECKING:
    from _csv import Reader

REQUIRED = ("user_id", "ts", "kind")
OPTIONAL = ("category", "product_id", "amount")
COLUMNS = (*REQUIRED, *OPTIONAL)
TS_FORMAT = "%Y-%m-%d %H:%M:%S"  # as written: whole seconds, UTC
KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # the signals' own rule for kinds
MAX_TEXT = 500


class InvalidEvents(ValueError):
    """An event CSV that cannot be read; names the line (1-based) and the column."""

    def __init__(self, line: int, column: str, message: str, path: str = "") -> None:
        super().__init__(f"{path + ': ' if path else ''}line {line}, column {column}: {message}")
        self.line = line
        self.column = column
        self.message = message


class Event(msgspec.Struct, frozen=True):
    """One row: whose it is, and the signal it stands for."""

    user_id: str
    signal: Signal


def parse_ts(text: str) -> datetime:
    """Raises ValueError for anything but RFC 3339 or `YYYY-MM-DD HH:MM:SS[ UTC]`."""
    if text.endswith(" UTC"):
        text = text[:-4]
    if len(text) < 19 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt ":
        raise ValueError(text)
    dt = datetime.fromisoformat(text)
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


def read_events(path_or_text: str | Path) -> list[Event]:
    """Events in file order. A `Path`, or a string without a newline, is a file name."""
    reader = csv_reader(path_or_text)
    try:
        return _rows(reader)
    except csv.Error as exc:
        raise InvalidEvents(reader.line_num or 1, "row", f"not CSV: {exc}") from None


def _text(row: list[str], i: int, line: int, column: str) -> str:
    cell = row[i].strip() if i >= 0 else ""
    if "\x00" in cell:
        raise InvalidEvents(line, column, "must not contain NUL (U+0000)")
    if len(cell) > MAX_TEXT:
        raise InvalidEvents(line, column, f"longer than {MAX_TEXT} characters")
    return cell


def _rows(reader: Reader) -> list[Event]:
    header = next(reader, None)
    if header is None:
        raise InvalidEvents(1, "header", f"the file is empty; expected {','.join(COLUMNS)}")
    names = [h.strip() for h in header]
    for col in REQUIRED:
        if col not in names:
            raise InvalidEvents(1, col, f"missing column {col!r} in header {','.join(names)!r}")
    iu, it, ik = (names.index(c) for c in REQUIRED)
    ic, ip, ia = (names.index(c) if c in names else -1 for c in OPTIONAL)
    out: list[Event] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(names):
            raise InvalidEvents(line, "row", f"expected {len(names)} fields, got {len(row)}")
        user = _text(row, iu, line, "user_id")
        if not user:
            raise InvalidEvents(line, "user_id", "empty user_id")
        ts = _text(row, it, line, "ts")
        try:
            at = parse_ts(ts)
        except ValueError:
            raise InvalidEvents(line, "ts", f"{ts!r} is neither RFC 3339 nor "
                                            "'YYYY-MM-DD HH:MM:SS' (UTC)") from None
        kind = _text(row, ik, line, "kind")
        if not KIND_RE.match(kind):
            raise InvalidEvents(line, "kind", f"{kind!r} is not a snake_case kind "
                                              "(a-z, 0-9, _; up to 64)")
        amount_text = _text(row, ia, line, "amount")
        amount: float | None = None
        if amount_text:
            try:
                amount = float(amount_text)
            except ValueError:
                raise InvalidEvents(line, "amount", f"{amount_text!r} is not a number") from None
            if not math.isfinite(amount) or amount < 0:
                raise InvalidEvents(line, "amount", f"{amount_text!r} must be a finite number "
                                                    ">= 0")
        out.append(Event(user, Signal(
            at=at, kind=kind, category=_text(row, ic, line, "category") or None,
            product_id=_text(row, ip, line, "product_id") or None, amount=amount)))
    return out


def histories(events: list[Event]) -> dict[str, list[Signal]]:
    """Each user's signals, in file order."""
    out: dict[str, list[Signal]] = {}
    for e in events:
        out.setdefault(e.user_id, []).append(e.signal)
    return out


def event_cells(event: Event) -> list[str]:
    """One row's cells in `COLUMNS` order; the amount as the shortest decimal that reads back
    as the same number."""
    s = event.signal
    return [event.user_id, s.at.astimezone(UTC).strftime(TS_FORMAT), s.kind, s.category or "",
            s.product_id or "", "" if s.amount is None else repr(s.amount)]


def write_events(out: TextIO, events: Iterable[Event]) -> None:
    """The header and one row per event, in the given order."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows(event_cells(e) for e in events)


def events_csv(events: Iterable[Event]) -> str:
    out = io.StringIO()
    write_events(out, events)
    return out.getvalue()
