"""The service's purchase-intent model: the shipped prior at start-up, then a model fitted on the
shop's own stored signals as soon as there are enough purchases, refitted on a schedule in a
worker thread, never blocking a request.

One rule: the hot path only reads the model in hand; a refit builds a new model aside and swaps it
in whole. A refit that cannot fit (too few purchases, no signal) keeps the model in hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import asyncpg

from app.clock import Clock
from app.tasks import running
from customers import store as customer_store
from customers.intent_fit import CannotFit, fit
from customers.pbuy import PBuyModel, load_prior

log = logging.getLogger("contexto.intent")

# What a refit learns from: the signals of this many days (retention keeps 30 by default).
FIT_WINDOW = timedelta(days=30)


class IntentModel:
    """The p_buy model this process serves, and what it knows about its last refit."""

    def __init__(self, model: PBuyModel | None = None) -> None:
        self.model = model or load_prior()
        self.fitted_at: datetime | None = None
        self.last_refit: str = "not yet refitted: the prior answers"

    async def refit(self, pool: asyncpg.Pool, now: datetime) -> bool:
        """Fit on the stored signals of the last FIT_WINDOW in a thread; swap it in when it
        could be fitted. Returns whether the model changed."""
        async with pool.acquire() as conn:
            histories = await customer_store.all_signals(conn, now - FIT_WINDOW, now)
        try:
            model = await asyncio.to_thread(fit, histories, now)
        except CannotFit as reason:
            self.last_refit = f"{now.isoformat()}: kept the {self.model.name} model ({reason})"
            log.info("p_buy refit: %s", self.last_refit)
            return False
        self.model, self.fitted_at = model, now
        self.last_refit = f"{now.isoformat()}: fitted on {len(histories)} customers"
        log.info("p_buy model fitted on the stored signals of %d customers", len(histories))
        return True


@asynccontextmanager
async def serving(intent_model: IntentModel, pool: asyncpg.Pool, *, refit_seconds: float,
                  clock: Clock) -> AsyncIterator[None]:
    """Refit from the stored signals at start-up and then every `refit_seconds`."""

    async def refit_forever() -> None:
        while True:
            try:
                await intent_model.refit(pool, clock())
            except (asyncpg.PostgresError, OSError):  # keep serving; try again next period
                log.exception("p_buy refit failed")
            await asyncio.sleep(refit_seconds)

    async with running(refit_forever(), "intent-refit"):
        yield
