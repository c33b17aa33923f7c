"""How a backtest reads a chunk's pings and signals: a binary COPY decoded into arrays in batch
order, PostgreSQL's microsecond timestamps turned into exact datetimes, and the signal
attributes the context engine reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from app.backtest_store import (
    PG_EPOCH,
    PING_ROW,
    SIGNAL_ATTRIBUTES,
    datetimes,
    decode_pings,
    pg_micros,
)
from customers.store import signal_of

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def copy_of(rows: list[tuple[int, datetime, datetime, float, float, float, int]]) -> bytes:
    """A binary COPY of PINGS rows: (device, received_at, ts, lat, lng, accuracy, cell)."""
    out = np.zeros(len(rows), dtype=PING_ROW)
    out["count"] = 7
    for i, width in enumerate((4, 8, 8, 8, 8, 8, 8)):
        out[f"length{i}"] = width
    for k, (device, received, ts, lat, lng, accuracy, cell) in enumerate(rows):
        out[k]["device"] = device
        out[k]["received_at"], out[k]["ts"] = pg_micros(received), pg_micros(ts)
        out[k]["lat"], out[k]["lng"], out[k]["accuracy"], out[k]["cell"] = lat, lng, accuracy, cell
    return HEADER + out.tobytes() + TRAILER


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_pings_come_out_by_device_then_arrival_then_time() -> None:
    rows = [
        (2, at(60), at(10), 48.1, 2.1, 10.0, 11),
        (1, at(120), at(100), 48.2, 2.2, float("nan"), 12),
        (1, at(60), at(50), 48.3, 2.3, 5.0, 13),
        (1, at(60), at(20), 48.4, 2.4, 7.5, 14),
    ]
    pings = decode_pings(copy_of(rows))
    assert pings.device.tolist() == [0, 0, 0, 1]
    assert pings.cell.tolist() == [14, 13, 12, 11]
    assert datetimes(pings.ts) == [at(20), at(50), at(100), at(10)]
    assert datetimes(pings.received_at) == [at(60), at(60), at(120), at(60)]
    assert np.isnan(pings.accuracy[2]) and pings.accuracy[0] == 7.5
    assert pings.lat.tolist() == [48.4, 48.3, 48.2, 48.1]


def test_an_empty_copy_is_no_pings() -> None:
    assert len(decode_pings(HEADER + TRAILER)) == 0


@pytest.mark.parametrize("data", [
    b"COPY" + bytes(30),
    HEADER + b"\x00" * 5 + TRAILER,
    # a row whose accuracy is NULL (length -1): the query must never send one
    HEADER + copy_of([(1, at(0), at(0), 48.0, 2.0, 5.0, 1)])[len(HEADER):-2].replace(
        b"\x00\x00\x00\x08@\x14", b"\xff\xff\xff\xff@\x14") + TRAILER,
])
def test_a_stream_of_another_layout_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="binary COPY"):
        decode_pings(data)


def test_microseconds_become_the_exact_instant_across_the_years() -> None:
    rng = np.random.default_rng(3)
    micros = rng.integers(pg_micros(datetime(2000, 1, 1, tzinfo=UTC)),
                          pg_micros(datetime(2100, 1, 1, tzinfo=UTC)), 20_000)
    expected = [PG_EPOCH + timedelta(microseconds=m) for m in micros.tolist()]
    assert datetimes(micros) == expected


class Reads(dict[str, str]):
    """Attributes that remember which keys were asked for."""

    def __init__(self) -> None:
        super().__init__(category="a.b", product_id="p", store_id=str(uuid.UUID(int=1)),
                         amount="2.50", query="q", extra="x")
        self.asked: set[str] = set()

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def test_the_backtest_reads_every_signal_attribute_the_context_engine_reads() -> None:
    attributes = Reads()
    signal_of(T0, "purchase", attributes)
    assert attributes.asked <= set(SIGNAL_ATTRIBUTES)
    assert signal_of(T0, "purchase", attributes) == signal_of(
        T0, "purchase", {k: attributes[k] for k in SIGNAL_ATTRIBUTES})
