"""POST /v1/transactions/import: a CSV of past purchases, all or nothing. Each bad file is
refused with a problem naming the row (the header is row 1), the column and the reason, and
leaves nothing stored; a good one is counted, stored and tiered."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from app.routes.transactions import CHUNK_ROWS, Importer
from tests.api.conftest import ADMIN_TOKEN, Api
from tests.clock import CLOCK, ago

CSV = {"content-type": "text/csv"}
STORE = "5f0c6c0e-4f7e-4a52-9d6b-0f3b1a2c3d4e"


def ts(days: int = 1) -> str:
    return ago(days=days).isoformat()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


BAD: list[Any] = [
    pytest.param("", "body", "empty", id="an empty body is refused"),
    pytest.param("customer,ts,amount\n", "body.row[1].header", "customer_id,ts,amount",
                 id="a header without customer_id is refused naming the header row"),
    pytest.param(f"customer_id,ts,amount\nc1,{ts()},10\nc2,yesterday,10\n", "body.row[3].ts",
                 "not an RFC 3339", id="an unreadable ts is refused naming its row"),
    pytest.param(f"customer_id,ts,amount\nc1,{ts()[:19]},10\n", "body.row[2].ts",
                 "time zone", id="a ts without an offset is refused"),
    pytest.param(f"customer_id,ts,amount\nc1,{(CLOCK() + timedelta(days=1)).isoformat()},10\n",
                 "body.row[2].ts", "future", id="a ts after now is refused"),
    pytest.param(f"customer_id,ts,amount\nc1,{ts()},-3\n", "body.row[2].amount", "at least 0",
                 id="a negative amount is refused"),
    pytest.param(f"customer_id,ts,amount\nc1,{ts()},NaN\n", "body.row[2].amount", "at least 0",
                 id="a NaN amount is refused"),
    pytest.param(f"customer_id,ts,amount\nc1,{ts()},ten\n", "body.row[2].amount",
                 "not a number", id="a word for an amount is refused"),
    pytest.param(f"customer_id,ts,amount\n,{ts()},10\n", "body.row[2].customer_id",
                 "1 to 200", id="a blank customer is refused"),
    pytest.param(f"customer_id,ts,amount,store_id\nc1,{ts()},10,shop-1\n",
                 "body.row[2].store_id", "UUID", id="a store_id that is no UUID is refused"),
    pytest.param(f"customer_id,ts,amount\nc1,{ts()},10,extra\n", "body.row[2].row",
                 "expected 3 fields", id="a row with too many fields is refused"),
    pytest.param(b"customer_id,ts,amount\nc\xff,2026-01-01T00:00:00Z,1\n", "body", "UTF-8",
                 id="a body that is not UTF-8 is refused"),
]


@pytest.mark.parametrize(("body", "field", "reason"), BAD)
async def test_a_bad_file_is_refused_naming_the_row_and_nothing_is_stored(
        api: Api, db: asyncpg.Connection, body: str | bytes, field: str, reason: str) -> None:
    response = await api.call("POST", "/v1/transactions/import", ADMIN_TOKEN, content=body,
                              headers=CSV)
    problem = response.json()
    assert response.status_code == 400, problem
    assert [(e["field"], reason in e["message"]) for e in problem["errors"]] == [
        (field, True)], problem
    assert await db.fetchval("SELECT count(*) FROM transactions") == 0


async def test_a_bad_row_after_the_first_chunk_rolls_back_the_chunks_already_copied(
        api: Api, db: asyncpg.Connection) -> None:
    good = "".join(f"c{i % 50},{ts(1 + i % 300)},{i % 90}.25\n" for i in range(CHUNK_ROWS + 5))
    body = f"customer_id,ts,amount\n{good}c-last,{ts()},-1\n"
    response = await api.call("POST", "/v1/transactions/import", ADMIN_TOKEN, content=body,
                              headers=CSV)
    assert response.status_code == 400, response.text
    assert f"body.row[{CHUNK_ROWS + 7}].amount" in response.text
    assert await db.fetchval("SELECT count(*) FROM transactions") == 0


async def test_a_good_file_is_stored_whole_with_its_store_and_counted(
        api: Api, db: asyncpg.Connection) -> None:
    body = ("\ufeffcustomer_id,ts,amount,store_id\r\n"
            f"c1,{ts(3)},10.5,{STORE}\r\nc1,{ts(2)},4,\r\n\r\nc2,{ts(1)},0.999,\r\n")
    answer = await api.ok("POST", "/v1/transactions/import", content=body.encode(),
                          headers=CSV)
    rows = await db.fetch("SELECT customer_id, amount::text, store_id::text, source "
                          "FROM transactions ORDER BY ts")
    assert answer == {"received": 3, "imported": 3, "refit": "scheduled"}
    assert [tuple(r) for r in rows] == [("c1", "10.50", STORE, "import"),
                                        ("c1", "4.00", None, "import"),
                                        ("c2", "1.00", None, "import")]


def test_a_body_handed_over_in_one_piece_is_checked_one_chunk_at_a_time() -> None:
    importer = Importer(CLOCK())
    body = ("customer_id,ts,amount\n"
            + f"customer-000001,{ts()},1.00\n" * (20 * CHUNK_ROWS + 123)).encode()
    chunks = []
    tracemalloc.start()
    try:
        for rows in importer.feed(body):
            chunks.append(len(rows))
        chunks.append(len(importer.finish()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunks == [CHUNK_ROWS] * 20 + [123]
    # One chunk of lines and rows at a time (~8 MB): all of the body's would take ~90 MB.
    assert peak < len(body), (peak, len(body))
