"""Reading visits: a CSV of `user_id,place_id,ts[,lat,lng]` into `Visit`s, or a clear refusal.

One rule: a file is read whole or refused whole — `InvalidVisits` names the first bad line and
column, and no partial list is ever returned.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from _csv import Reader


class Visit(msgspec.Struct, frozen=True):
    user_id: str
    place_id: str
    arrived_at: datetime
    departed_at: datetime | None = None
    lat: float | None = None
    lng: float | None = None


class InvalidVisits(ValueError):
    """Visit CSV input that cannot be read; names the line (1-based) and the column."""

    def __init__(self, line: int, column: str, message: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


REQUIRED_COLUMNS = ("user_id", "place_id", "ts")


def _parse_ts(text: str) -> datetime:
    """RFC 3339 keeps its own offset (it sets the local time of day); Unix seconds are UTC."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    dt = datetime.fromisoformat(text)  # raises ValueError for anything else
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def csv_reader(path_or_text: str | Path) -> Reader:
    """A CSV reader over a file (a `Path`, or a string without a newline, is a file name) or
    over CSV text (any other string)."""
    if isinstance(path_or_text, Path) or "\n" not in path_or_text:
        text = Path(path_or_text).read_text(encoding="utf-8-sig")
    else:
        text = path_or_text
    # newline="": the csv module reads the line ends itself, a lone CR included, as its docs ask
    return csv.reader(io.StringIO(text, newline=""))


def read_visits_csv(path_or_text: str | Path) -> list[Visit]:
    """Visits from a CSV with header `user_id,place_id,ts` and optional `lat,lng`, in file order.

    A `Path`, or a string without a newline, is a file name; any other string is the CSV text.
    `ts` is RFC 3339 (a missing offset means UTC) or Unix seconds. Empty lat and lng are allowed;
    one without the other is not. Raises `InvalidVisits` naming the line and column.
    """
    reader = csv_reader(path_or_text)
    try:
        return _read_visit_rows(reader)
    except csv.Error as exc:  # e.g. a field past the module's limit: this is not CSV to us
        raise InvalidVisits(reader.line_num or 1, "row", f"not CSV: {exc}") from None


def _read_visit_rows(reader: Reader) -> list[Visit]:
    header = next(reader, None)
    if header is None:
        raise InvalidVisits(1, "header", "the file is empty; expected user_id,place_id,ts")
    names = [h.strip() for h in header]
    for col in REQUIRED_COLUMNS:
        if col not in names:
            raise InvalidVisits(1, col, f"missing column {col!r} in header {','.join(names)!r}")
    if ("lat" in names) != ("lng" in names):
        raise InvalidVisits(1, "lat" if "lat" not in names else "lng",
                            "lat and lng columns must come together")
    iu, ip, it = (names.index(c) for c in REQUIRED_COLUMNS)
    ilat = names.index("lat") if "lat" in names else -1
    ilng = names.index("lng") if "lng" in names else -1
    out: list[Visit] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(names):
            raise InvalidVisits(line, names[min(len(row), len(names) - 1)],
                                f"expected {len(names)} fields, got {len(row)}")
        user, place, ts = row[iu].strip(), row[ip].strip(), row[it].strip()
        if not user:
            raise InvalidVisits(line, "user_id", "empty user_id")
        if not place:
            raise InvalidVisits(line, "place_id", "empty place_id")
        for column, cell in (("user_id", user), ("place_id", place)):
            if "\x00" in cell:  # the ids are stored as text, which PostgreSQL refuses NUL in
                raise InvalidVisits(line, column, "must not contain NUL (U+0000)")
        try:
            arrived = _parse_ts(ts)
        except ValueError:
            raise InvalidVisits(
                line, "ts", f"{ts!r} is neither RFC 3339 nor Unix seconds"
            ) from None
        lat = lng = None
        if ilat >= 0:
            lat = _coordinate(row[ilat], line, "lat", 90.0)
            lng = _coordinate(row[ilng], line, "lng", 180.0)
            if (lat is None) != (lng is None):
                raise InvalidVisits(line, "lat" if lat is None else "lng",
                                    "lat and lng must both be given or both be empty")
        out.append(Visit(user, place, arrived, lat=lat, lng=lng))
    return out


def _coordinate(text: str, line: int, column: str, bound: float) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidVisits(line, column, f"{text!r} is not a number") from None
    if not (math.isfinite(value) and -bound <= value <= bound):
        raise InvalidVisits(line, column, f"{value} is outside -{bound:g}..{bound:g}")
    return value
