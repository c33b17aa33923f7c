"""Location pings and app signals from a device."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from litestar import Controller, post
from litestar.datastructures import State
from litestar.exceptions import PermissionDeniedException

from app.auth import Principal, admits
from app.ingest import ingest_pings
from campaigns import devices
from campaigns.webhooks import events as webhook_events
from geo import store as geo_store
from geo.pings import Accepted, PingBatch, SignalBatch, split_pings, split_signals


class PingController(Controller):
    path = "/v1"
    tags = ["pings"]

    @post("/pings", operation_id="postPings", status_code=202,
          opt=admits("device", action="send pings", budget="pings"))
    async def post_pings(self, data: PingBatch, pool: asyncpg.Pool, principal: Principal,
                         state: State, now: datetime) -> Accepted:
        """Send 1 to 500 location pings, in any order. Each bad ping is rejected alone with
        its reason; without location consent nothing is stored (403). A device sending more
        than its budget (a burst of 30 batches, then one every 2 s) gets 429 with `Retry-After`."""
        accepted, rejected = split_pings(data.pings, now)
        async with pool.acquire() as conn, conn.transaction():
            device = await devices.get_device(conn, principal.device, lock=True)
            if not device.consent.location:
                raise PermissionDeniedException("this device has not consented to location use")
            outcome = await ingest_pings(conn, state.catalog, state.predictor,
                                         state.intent_model, device, accepted, now,
                                         context=not state.settings.bench_skip_context,
                                         arbitration=not state.settings.bench_skip_arbitration,
                                         value_model=state.value_model)
        state.predictor.learn(outcome.visits)
        state.live.batch(state.catalog.view, device.id, outcome.events, outcome.decisions)
        state.metrics.pings(len(accepted), len(rejected), len(outcome.events), outcome.queued)
        return Accepted(len(accepted), rejected)

    @post("/signals", operation_id="postSignals", status_code=202,
          opt=admits("device", action="send signals", budget="signals"))
    async def post_signals(self, data: SignalBatch, pool: asyncpg.Pool,
                           principal: Principal, state: State, now: datetime) -> Accepted:
        """Send 1 to 500 app signals (search, product_view, store_locator, directions,
        cart_add, checkout, purchase, …); each bad one is rejected alone."""
        accepted, rejected = split_signals(data.signals, now)
        device_id = principal.device
        records = [(device_id, s.ts, s.kind, s.attributes, now)
                   for s in accepted]
        purchases = [(s.ts, s.attributes) for s in accepted if s.kind == "purchase"]
        async with pool.acquire() as conn, conn.transaction():
            await devices.get_device(conn, device_id)
            if records:
                await geo_store.copy_signals(conn, records)
            # Purchases credited to a push, on the webhook stream with the signals themselves.
            await webhook_events.record_conversions(conn, device_id, purchases, now)
        if any(s.kind == "purchase" for s in accepted):
            state.catalog.learner.learned()  # a purchase may convert an offer: see app/learning.py
        return Accepted(len(records), rejected)
