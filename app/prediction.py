"""The service's next-place model: fitted at start-up (or loaded from a file), updated online as
visits end, refitted on a schedule in a worker thread, never blocking a request.

One rule: the hot path only calls `predict` on the model in hand; a refit builds a new model
aside and swaps it in whole, replaying the visits that ended while it was being built.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime

import asyncpg

from app.clock import Clock, system_clock
from app.tasks import running
from geo.predict import NextPlaceModel, Visit, load_model
from geo.store import Connection

log = logging.getLogger("contexto.predict")

ALL_VISITS = """
SELECT customer_key, place_id, arrived_at, departed_at, lat, lng FROM visits
ORDER BY arrived_at, id
"""
RECENT_VISITS = """
SELECT customer_key, place_id, arrived_at, departed_at, lat, lng FROM visits
WHERE customer_key = $1 ORDER BY arrived_at DESC LIMIT $2
"""
HISTORY_LENGTH = 20


def _visit(row: asyncpg.Record) -> Visit:
    return Visit(user_id=row["customer_key"], place_id=row["place_id"],
                 arrived_at=row["arrived_at"], departed_at=row["departed_at"],
                 lat=row["lat"], lng=row["lng"])


async def recent_visits(conn: Connection, customer_key: str) -> list[Visit]:
    """The customer's latest visits, oldest first (the model's `history`)."""
    rows = await conn.fetch(RECENT_VISITS, customer_key, HISTORY_LENGTH)
    return [_visit(r) for r in reversed(rows)]


class Predictor:
    def __init__(self, model: NextPlaceModel | None = None) -> None:
        self.model = model or NextPlaceModel()
        self.visits_learned = 0
        self.fitted_at: datetime | None = None
        self.fitted_on = 0
        self._pending: list[Visit] | None = None  # visits learned during a refit
        self.refit_requested = asyncio.Event()

    def predict(self, customer_key: str, history: Sequence[Visit], now: datetime,
                k: int = 5) -> list[tuple[str, float]]:
        return self.model.predict(customer_key, history, now, k)

    def learn(self, visits: Sequence[Visit]) -> None:
        """Online update with visits that just ended."""
        for v in visits:
            self.model.update(v)
        if self._pending is not None:
            self._pending.extend(visits)
        self.visits_learned += len(visits)

    async def refit(self, pool: asyncpg.Pool, now: datetime) -> int:
        """Fit a new model from every stored visit in a thread, then swap it in."""
        async with pool.acquire() as conn:
            visits = [_visit(r) for r in await conn.fetch(ALL_VISITS)]
        self._pending = []
        try:
            model = await asyncio.to_thread(NextPlaceModel.fit, visits)
            for v in self._pending:  # ended while fitting; `fit` saw only the stored ones
                model.update(v)
        finally:
            self._pending = None
        self.model, self.fitted_at, self.fitted_on = model, now, len(visits)
        log.info("next-place model fitted on %d visits", len(visits))
        return len(visits)


@asynccontextmanager
async def serving(predictor: Predictor, pool: asyncpg.Pool, *, model_path: str | None,
                  refit_seconds: float, clock: Clock = system_clock) -> AsyncIterator[None]:
    """Load or fit the model, then refit it every `refit_seconds` in the background."""
    if model_path:
        predictor.model = await asyncio.to_thread(load_model, model_path)
        log.info("next-place model loaded from %s; not refitted from stored visits", model_path)
    else:
        await predictor.refit(pool, clock())

    async def refit_forever() -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(predictor.refit_requested.wait(), refit_seconds)
            requested = predictor.refit_requested.is_set()
            predictor.refit_requested.clear()
            if model_path and not requested:
                continue  # a model from a file is only refitted when asked (after an import)
            try:
                await predictor.refit(pool, clock())
            except Exception:  # keep serving the current model; try again next period
                log.exception("next-place refit failed")

    async with running(refit_forever(), "predict-refit"):
        yield
