"""Feedback from the device on the pushes it received, and why each push went out (for staff,
and for the person on the device: their own pushes only)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
from litestar import Controller, get, post
from litestar.datastructures import State

from app.auth import Principal, admits
from campaigns import reports
from campaigns.reports import FeedbackIn, FeedbackRecorded
from campaigns.why import Why


class DeliveryController(Controller):
    path = "/v1/deliveries"
    tags = ["deliveries"]

    @post("/{delivery_id:uuid}/events", operation_id="postDeliveryEvent", status_code=202,
          opt=admits("device", action="report on deliveries"))
    async def event(self, delivery_id: UUID, data: FeedbackIn, pool: asyncpg.Pool,
                    principal: Principal, state: State, now: datetime) -> FeedbackRecorded:
        """Report that the person opened, dismissed or redeemed an offer this device got.
        Each kind is recorded once; repeats answer `recorded: false`."""
        async with pool.acquire() as conn, conn.transaction():
            recorded = await reports.record_feedback(conn, principal.device, delivery_id, data,
                                                     now)
        if recorded.recorded:
            state.catalog.learner.learned()
        return recorded

    @get("/{delivery_id:uuid}/why", operation_id="getDeliveryWhy",
         opt=admits("campaign_manager", "admin", "device", action="read why an offer was sent"))
    async def why(self, delivery_id: UUID, pool: asyncpg.Pool, principal: Principal) -> Why:
        """Why this offer went out: every campaign the moment matched (eligible or the rule it
        failed; the survivors' learned P(conversion), value and drawn score), the chosen one
        with the rule or draw that decided, the moment and its context. A device reads only
        its own deliveries."""
        device = principal.device if principal.role == "device" else None
        async with pool.acquire() as conn:
            return await reports.why(conn, delivery_id, device)
