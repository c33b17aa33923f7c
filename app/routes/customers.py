"""What contexto knows about a customer right now: their intent, the kind of moment they are in,
their likely next place. Staff read any customer; a device reads its own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import Parameter

from app.auth import admits
from app.context import CustomerContext, customer_context
from geo.errors import NotFound

CustomerId = Annotated[str, Parameter(
    min_length=1, max_length=200,
    description="the customer_id devices give, or `device:<uuid>` for a device without one")]


class CustomerController(Controller):
    path = "/v1/customers"
    tags = ["customers"]

    @get("/{customer_id:str}/context", operation_id="getCustomerContext",
         opt=admits("campaign_manager", action="read customer context"))
    async def context(self, customer_id: CustomerId, pool: asyncpg.Pool, state: State,
                      now: datetime) -> CustomerContext:
        """The customer's context at this instant: calibrated p_buy with the model that gave
        it, intent by category, a spike against their own baseline, the micromoment their
        recent signals show, and their likely next store."""
        async with pool.acquire() as conn:
            found = await customer_context(conn, customer_id, state.intent_model,
                                           state.value_model, state.predictor, now)
        if found is None:
            raise NotFound("customer", customer_id)
        return found
