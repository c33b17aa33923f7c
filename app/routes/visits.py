"""Visit history for the next-place model: imported from CSV by admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State

from app.auth import admits
from app.openapi import CsvBodyOperation
from geo.errors import InvalidField
from geo.predict import InvalidVisits, read_visits_csv

IMPORT_LIMIT_BYTES = 64 * 1024 * 1024
CHUNK = 10_000

STORE_BY_EXTERNAL_ID = "SELECT external_id, id FROM stores WHERE external_id IS NOT NULL"
INSERT_IMPORTED = """
INSERT INTO visits (customer_key, place_id, arrived_at, departed_at, lat, lng, source, created_at)
SELECT u, p, a, d, la, ln, 'import', $7
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::float8[],
            $6::float8[]) AS t(u, p, a, d, la, ln)
ON CONFLICT (customer_key, place_id, arrived_at) DO NOTHING
"""


class VisitsImported(msgspec.Struct, frozen=True):
    received: int
    imported: int
    duplicates: int
    mapped_to_stores: int  # rows whose place_id was a store's external_id
    refit: str


class ModelStatus(msgspec.Struct, frozen=True):
    fitted_at: datetime | None  # the last fit from stored visits (None: loaded from a file)
    fitted_on_visits: int
    learned_online: int  # visits learned as they ended since the process started
    refit_pending: bool


class VisitController(Controller):
    path = "/v1/visits"
    tags = ["visits"]

    @post("/import", operation_id="importVisits", request_max_body_size=IMPORT_LIMIT_BYTES,
          operation_class=CsvBodyOperation, opt=admits("admin", action="import visits"))
    async def import_visits(self, request: Request[Any, Any, Any], pool: asyncpg.Pool,
                            state: State, now: datetime) -> VisitsImported:
        """Import visit history as CSV (`Content-Type: text/csv`) with header
        `user_id,place_id,ts` and optional `lat,lng`; `ts` is RFC 3339 or Unix seconds.
        `user_id` is the customer id the app sends as the device's `customer_id`; a `place_id`
        equal to a store's `external_id` is stored as that store. All rows or none; the model
        is refitted in the background afterwards."""
        raw = await request.body()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidField("body", "the CSV must be UTF-8") from exc
        if not text.strip():
            raise InvalidField("body", "the CSV is empty; expected a header user_id,place_id,ts")
        try:
            # A trailing newline makes sure the reader takes this as CSV text, never a path.
            visits = read_visits_csv(text if text.endswith("\n") else text + "\n")
        except InvalidVisits as exc:
            raise InvalidField(f"body.line[{exc.line}].{exc.column}", str(exc)) from exc
        async with pool.acquire() as conn, conn.transaction():
            stores = {r["external_id"]: str(r["id"])
                      for r in await conn.fetch(STORE_BY_EXTERNAL_ID)}
            mapped = sum(1 for v in visits if v.place_id in stores)
            imported = 0
            for start in range(0, len(visits), CHUNK):
                chunk = visits[start:start + CHUNK]
                status = await conn.execute(
                    INSERT_IMPORTED, [v.user_id for v in chunk],
                    [stores.get(v.place_id, v.place_id) for v in chunk],
                    [v.arrived_at for v in chunk], [v.departed_at for v in chunk],
                    [v.lat for v in chunk], [v.lng for v in chunk], now)
                imported += int(status.rsplit(" ", 1)[-1])
        state.predictor.refit_requested.set()
        return VisitsImported(len(visits), imported, len(visits) - imported, mapped, "scheduled")

    @get("/model", operation_id="getVisitModel", opt=admits("admin", action="inspect the model"))
    async def model_status(self, state: State) -> ModelStatus:
        """The next-place model this process serves: when it was fitted, on how many visits."""
        p = state.predictor
        return ModelStatus(p.fitted_at, p.fitted_on, p.visits_learned,
                           p.refit_requested.is_set())
