"""Feedback from the device on the pushes it received."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from litestar import Controller, post

from app.auth import Principal, admits
from campaigns import reports
from campaigns.reports import FeedbackIn, FeedbackRecorded


class DeliveryController(Controller):
    path = "/v1/deliveries"
    tags = ["deliveries"]

    @post("/{delivery_id:uuid}/events", operation_id="postDeliveryEvent", status_code=202,
          opt=admits("device", action="report on deliveries"))
    async def event(self, delivery_id: UUID, data: FeedbackIn, pool: asyncpg.Pool,
                    principal: Principal) -> FeedbackRecorded:
        """Report that the person opened, dismissed or redeemed an offer this device got.
        Each kind is recorded once; repeats answer `recorded: false`."""
        async with pool.acquire() as conn, conn.transaction():
            return await reports.record_feedback(conn, principal.device, delivery_id, data)
