"""Resources that live as long as the app: the database pool (migrated on start), the in-memory
catalog (fence index, campaigns, policy) kept fresh by NOTIFY, the FCM gateway, the
dispatcher worker, the webhook relay and the retention loop.

One rule: each resource is an async context manager that puts itself on `app.state`, and is
closed in the reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from datetime import timedelta
from pathlib import Path

import asyncpg
from litestar import Litestar

from app import collector
from app.catalog import Catalog, watching
from app.clock import Clock, system_clock
from app.db import open_pool
from app.intent import IntentModel
from app.intent import serving as intent_serving
from app.partitions import keeping_ahead
from app.prediction import Predictor, serving
from app.relay import relay_of
from app.retention import purging
from app.settings import Settings
from app.value import ValueModel
from app.value import serving as value_serving
from campaigns.dispatch import Backoff, Dispatcher, PushRecorded
from campaigns.fcm import FcmGateway
from campaigns.fcm_emulator import run_emulator
from geo.retention import Purged

log = logging.getLogger("contexto")

DISPATCH_POOL_SIZE = 3  # a batch's claim, its records and its lease renewals


@asynccontextmanager
async def database(app: Litestar) -> AsyncIterator[None]:
    settings = app.state.settings
    pool = await open_pool(settings.database_url, min_size=settings.pool_min_size,
                           max_size=settings.pool_max_size)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


@asynccontextmanager
async def ping_partitions(app: Litestar) -> AsyncIterator[None]:
    """Today's and the next days' partitions of pings, created at start and kept ahead."""
    async with keeping_ahead(app.state.pool, app.state.clock):
        yield


@asynccontextmanager
async def catalog(app: Litestar) -> AsyncIterator[None]:
    settings = app.state.settings
    app.state.catalog = Catalog(
        resolution=settings.h3_resolution,
        index_dir=None if settings.index_dir is None else Path(settings.index_dir))
    async with watching(app.state.catalog, settings.database_url):
        yield


@asynccontextmanager
async def prediction(app: Litestar) -> AsyncIterator[None]:
    settings = app.state.settings
    app.state.predictor = Predictor()
    async with serving(app.state.predictor, app.state.pool, model_path=settings.model_path,
                       refit_seconds=settings.predict_refit_seconds, clock=app.state.clock):
        yield


@asynccontextmanager
async def intent(app: Litestar) -> AsyncIterator[None]:
    """The purchase-intent model: the prior, then refitted from the stored signals."""
    app.state.intent_model = IntentModel()
    async with intent_serving(app.state.intent_model, app.state.pool,
                              refit_seconds=app.state.settings.intent_refit_seconds,
                              clock=app.state.clock):
        yield


@asynccontextmanager
async def value(app: Litestar) -> AsyncIterator[None]:
    """The customer value matrix: the prior, then refitted from the stored purchases."""
    app.state.value_model = ValueModel()
    async with value_serving(app.state.value_model, app.state.pool,
                             refit_seconds=app.state.settings.value_refit_seconds,
                             clock=app.state.clock):
        yield


@asynccontextmanager
async def retention(app: Litestar) -> AsyncIterator[None]:
    """Pings and signals past `retention_days` deleted in the background (whole days of pings
    dropped)."""
    settings = app.state.settings
    deleted = app.state.metrics.retention_deleted
    dropped = app.state.metrics.retention_days_dropped

    def count(purged: Purged) -> None:
        deleted.labels(purged.table).inc(purged.rows)
        dropped.inc(purged.days_dropped)

    async with purging(app.state.pool, app.state.clock, days=settings.retention_days,
                       interval_seconds=settings.retention_interval_seconds,
                       batch=settings.retention_batch, on_purged=count):
        yield


@asynccontextmanager
async def settled(app: Litestar) -> AsyncIterator[None]:
    """Last of the resources: what the process holds once started is moved out of the garbage
    collector's way (`app.collector.settled`)."""
    with collector.settled():
        yield


@asynccontextmanager
async def push_delivery(app: Litestar) -> AsyncIterator[None]:
    """The FCM gateway, and the dispatcher worker unless it runs elsewhere."""
    settings = app.state.settings
    if not settings.run_dispatcher:
        yield
        return
    async with AsyncExitStack() as stack:
        endpoint = settings.fcm_endpoint
        if settings.embedded_emulator_port is not None:
            endpoint = await stack.enter_async_context(
                run_emulator("127.0.0.1", settings.embedded_emulator_port))
            log.info("FCM emulator on %s (no Firebase credentials configured)", endpoint)
        gateway = gateway_of(settings, endpoint)
        stack.push_async_callback(gateway.close)
        # Connections of its own: on the requests' pool, a claim or a record waited behind every
        # ping batch in flight for a connection (~100 ms a step at 32 in flight).
        pool = await open_pool(settings.database_url, min_size=1,
                               max_size=DISPATCH_POOL_SIZE, migrate_first=False)
        stack.push_async_callback(pool.close)
        dispatcher = dispatcher_of(
            settings, pool, gateway,
            on_result=lambda outcome: app.state.metrics.push_results.labels(outcome).inc(),
            on_latency=app.state.metrics.push_latency.observe,
            on_recorded=lambda outcomes: app.state.live.recorded(app.state.catalog.view,
                                                                 outcomes),
            clock=app.state.clock,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(settings.database_url, stop), name="dispatch")
        app.state.fcm_endpoint = endpoint
        try:
            yield
        finally:
            stop.set()
            try:
                with suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
            except TimeoutError:
                # A send hanging on FCM: give up on it; the rows it claimed go back to the
                # outbox when their lease ends, and the next worker sends them.
                log.warning("the dispatcher did not stop within 10 s; it was cancelled")


@asynccontextmanager
async def webhook_delivery(app: Litestar) -> AsyncIterator[None]:
    """The webhook relay, beside the dispatcher (and turned off with it); none without a
    WEBHOOK_SECRET_KEY, since no subscription can exist then."""
    settings = app.state.settings
    if not settings.run_dispatcher or not settings.webhook_secret_key:
        yield
        return
    relay = relay_of(settings, app.state.pool, clock=app.state.clock,
                     on_attempt=lambda outcome: app.state.metrics.webhook_attempts.labels(
                         outcome).inc())
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(settings.database_url, stop), name="webhooks")
    try:
        yield
    finally:
        stop.set()
        try:
            with suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=settings.webhook_timeout_seconds + 5)
        except TimeoutError:
            log.warning("the webhook relay did not stop in time; it was cancelled")


def gateway_of(settings: Settings, endpoint: str | None) -> FcmGateway:
    """The FCM gateway `settings` describe, sending to `endpoint` (None: Google's FCM)."""
    return FcmGateway(project_id=settings.firebase_project_id, endpoint=endpoint,
                      credentials_path=settings.google_application_credentials,
                      quota_retry_floor_seconds=settings.fcm_quota_retry_floor_seconds)


def dispatcher_of(settings: Settings, pool: asyncpg.Pool, gateway: FcmGateway, *,
                  on_result: Callable[[str], None] | None = None,
                  on_latency: Callable[[float], None] | None = None,
                  on_recorded: Callable[[list[PushRecorded]], None] | None = None,
                  clock: Clock = system_clock) -> Dispatcher:
    """The dispatcher `settings` describe (lease, backoff), in the server or alone
    (`python -m campaigns.dispatch`)."""
    return Dispatcher(
        pool, gateway, lease=timedelta(seconds=settings.dispatch_lease_seconds),
        backoff=Backoff(base_seconds=settings.dispatch_backoff_base_seconds,
                        cap_seconds=settings.dispatch_backoff_cap_seconds,
                        max_attempts=settings.dispatch_max_attempts),
        on_result=on_result, on_latency=on_latency, on_recorded=on_recorded, clock=clock)
