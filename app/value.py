"""The value matrix this process serves: every customer's tier held in memory, refitted from
the stored purchases in a worker thread at start-up, every `value_refit_seconds`, and soon after
a transactions import.

One rule: a ping batch only looks a customer up in the matrix in hand (a dict); a refit reads
the purchases, fits aside and swaps the whole matrix in. A refit that cannot fit the BTYD models
(too few customers or repeat purchases) keeps the parameters in hand — the shipped prior until a
fit succeeds — and still re-tiers everyone on them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime

import asyncpg

from app.clock import Clock
from app.tasks import running
from customers.value import PRIOR, Params, Value, ValueMatrix, value_matrix
from customers.value_fit import CannotFit, fit
from customers.value_store import purchase_histories

log = logging.getLogger("contexto.value")


class ValueModel:
    """The value matrix in hand and what its last refit did."""

    def __init__(self, params: Params = PRIOR) -> None:
        self.params = params
        self.matrix: ValueMatrix = value_matrix(params, {})
        self.fitted_at: datetime | None = None
        self.last_refit = "not yet refitted: the prior answers"
        self.refit_requested = asyncio.Event()

    def of(self, customer: str) -> Value:
        return self.matrix.of(customer)

    async def refit(self, pool: asyncpg.Pool, now: datetime) -> None:
        async with pool.acquire() as conn:
            customers = await purchase_histories(conn, now)

        def build() -> tuple[Params, ValueMatrix, str]:
            try:
                params = fit(customers)
                note = f"fitted on {len(customers)} customers"
            except CannotFit as reason:
                params, note = self.params, f"kept the {self.params.source} parameters ({reason})"
            return params, value_matrix(params, customers), note

        params, matrix, note = await asyncio.to_thread(build)
        self.params, self.matrix, self.fitted_at = params, matrix, now
        self.last_refit = f"{now.isoformat()}: {note}; {len(customers)} customers tiered"
        log.info("value refit: %s", self.last_refit)


@asynccontextmanager
async def serving(model: ValueModel, pool: asyncpg.Pool, *, refit_seconds: float,
                  clock: Clock) -> AsyncIterator[None]:
    """Refit at start-up, then every `refit_seconds` or as soon as one is requested."""

    async def refit_forever() -> None:
        while True:
            try:
                await model.refit(pool, clock())
            except (asyncpg.PostgresError, OSError):  # keep serving; try again next period
                log.exception("value refit failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(model.refit_requested.wait(), refit_seconds)
            model.refit_requested.clear()

    async with running(refit_forever(), "value-refit"):
        yield
