"""Past purchases for the value matrix, imported from CSV by admins: streamed, all or nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State

from app.auth import admits
from app.openapi import CsvBodyOperation
from customers.transactions_csv import InvalidTransaction, columns_of, parse_rows
from customers.value_store import Row, copy_transactions
from geo.errors import InvalidField

log = logging.getLogger("contexto.value")

IMPORT_LIMIT_BYTES = 1024 * 1024 * 1024  # a million rows is ~60 MB; it is streamed, not held
CHUNK_ROWS = 10_000
PROGRESS_EVERY = 100_000
SLICE_BYTES = 256 * 1024


class TransactionsImported(msgspec.Struct, frozen=True):
    received: int
    imported: int
    refit: str


class TransactionController(Controller):
    path = "/v1/transactions"
    tags = ["transactions"]

    @post("/import", operation_id="importTransactions", request_max_body_size=IMPORT_LIMIT_BYTES,
          operation_class=CsvBodyOperation, opt=admits("admin", action="import transactions"))
    async def import_transactions(self, request: Request[Any, Any, Any], pool: asyncpg.Pool,
                                  state: State, now: datetime) -> TransactionsImported:
        """Import past purchases as CSV (`Content-Type: text/csv`) with header
        `customer_id,ts,amount` and optional `store_id`; `ts` is RFC 3339 with an offset,
        `amount` a number ≥ 0 in the store's currency. All rows or none: a bad row refuses the
        whole file, naming its row number (the header is row 1), column and reason. The body is
        read, checked and copied in chunks inside one transaction; the value matrix is refitted
        in the background afterwards."""
        importer = Importer(now)
        async with pool.acquire() as conn, conn.transaction():
            try:
                async for part in request.stream():
                    for rows in importer.feed(part):
                        await copy_transactions(conn, rows, now)
                        importer.stored(len(rows))
                rows = importer.finish()
                if rows:
                    await copy_transactions(conn, rows, now)
                    importer.stored(len(rows))
            except InvalidTransaction as exc:
                raise InvalidField(f"body.row[{exc.row}].{exc.column}", str(exc)) from exc
            except UnicodeDecodeError as exc:
                raise InvalidField("body", "the CSV must be UTF-8") from exc
            if importer.columns is None:
                raise InvalidField("body", "the CSV is empty; expected a header "
                                           "customer_id,ts,amount[,store_id]")
        log.info("transactions import: %d rows imported", importer.imported)
        state.value_model.refit_requested.set()
        return TransactionsImported(importer.imported, importer.imported, "scheduled")


class Importer:
    """Bytes in, chunks of checked rows out; holds at most one chunk of lines and rows."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.columns: tuple[str, ...] | None = None
        self.pending = b""
        self.lines: list[str] = []
        self.next_row = 2  # the row number of self.lines[0]
        self.imported = 0

    def feed(self, data: bytes) -> Iterator[list[Row]]:
        """The chunks of checked rows `data` completes. A server may hand the body over in one
        piece (a test client does): it is taken a slice at a time, so only one chunk of lines
        is ever decoded and held."""
        for start in range(0, len(data), SLICE_BYTES):
            yield from self._feed(data[start:start + SLICE_BYTES])

    def _feed(self, data: bytes) -> list[list[Row]]:
        buffer = self.pending + data
        complete, newline, self.pending = buffer.rpartition(b"\n")
        if not newline:  # no line ended yet: keep it all (splitting at a newline byte never
            self.pending = buffer  # cuts a UTF-8 character in two)
            return []
        return self._lines(complete.decode("utf-8").split("\n"))

    def finish(self) -> list[Row]:
        tail = self.pending.decode("utf-8")
        self.pending = b""
        chunks = self._lines([tail] if tail.strip() else [])
        rows = [r for chunk in chunks for r in chunk]
        if self.lines:
            rows += self._parse()
        return rows

    def stored(self, n: int) -> None:
        before, self.imported = self.imported, self.imported + n
        if before // PROGRESS_EVERY != self.imported // PROGRESS_EVERY:
            log.info("transactions import: %d rows checked and copied", self.imported)

    def _lines(self, lines: list[str]) -> list[list[Row]]:
        out = []
        for line in lines:
            text = line.removesuffix("\r")
            if self.columns is None:
                self.columns = columns_of(text.removeprefix("\ufeff"))
                continue
            self.lines.append(text)
            if len(self.lines) >= CHUNK_ROWS:
                out.append(self._parse())
        return out

    def _parse(self) -> list[Row]:
        assert self.columns is not None
        rows = parse_rows(self.lines, self.next_row, self.columns, self.now)
        self.next_row += len(self.lines)
        self.lines = []
        return rows
