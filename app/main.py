"""The app factory: every route, dependency, error mapping and lifespan wired in one place.

One rule: `create_app(settings)` is the only entry; nothing reads the environment here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from app.auth import budget_guard, provide_principal, role_guard, token_hash
from app.clock import Clock, system_clock
from app.console import console_routes, render_page
from app.errors import exception_handlers
from app.lifespan import (
    catalog,
    database,
    intent,
    ping_partitions,
    prediction,
    push_delivery,
    retention,
    settled,
    value,
    webhook_delivery,
)
from app.live import LiveFeed
from app.metrics import Metrics, count_unrouted, metrics_middleware
from app.openapi import BEARER, ProblemResponses, StrictStructSchemas
from app.ratelimit import DeviceBudget
from app.routes.audit import AuditController
from app.routes.campaigns import CampaignController, PolicyController
from app.routes.customers import CustomerController
from app.routes.deliveries import DeliveryController
from app.routes.devices import DeviceController
from app.routes.fence_activity import fences_report
from app.routes.heat import heat
from app.routes.keys import ApiKeyController
from app.routes.live import live
from app.routes.me import me
from app.routes.measurement import MeasurementController
from app.routes.ops import healthz, metrics, readyz
from app.routes.pings import PingController
from app.routes.stores import GeofenceController, StoreController
from app.routes.transactions import TransactionController
from app.routes.visits import VisitController
from app.routes.webhooks import WebhookController
from app.settings import Settings
from app.strict_body import strict_body


async def provide_pool(request: Request[Any, Any, Any]) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def provide_now(request: Request[Any, Any, Any]) -> datetime:
    """The request's instant, read once from the app's clock."""
    now: datetime = request.app.state.clock()
    return now


def create_app(settings: Settings, *, clock: Clock = system_clock) -> Litestar:
    """The service; `clock` answers every "what time is it" (tests pin it)."""
    metrics_ = Metrics()
    state = State({
        "settings": settings,
        "clock": clock,
        "metrics": metrics_,
        "live": LiveFeed(settings.live_queue_events, on_drop=metrics_.live_dropped.inc),
        "console_page": render_page(settings),
        "admin_token_hash": token_hash(settings.admin_token) if settings.admin_token else None,
        "device_budget": DeviceBudget(burst=settings.device_burst,
                                      per_second=settings.device_batches_per_second,
                                      clock=lambda: clock().timestamp()),
    })
    return Litestar(
        route_handlers=[
            ApiKeyController, StoreController, GeofenceController, DeviceController,
            PingController, CampaignController, PolicyController, CustomerController,
            DeliveryController, VisitController, TransactionController, AuditController,
            MeasurementController, WebhookController, healthz, readyz, metrics, me, heat,
            fences_report, live,
            *console_routes(settings),
        ],
        dependencies={
            "pool": Provide(provide_pool),
            "principal": Provide(provide_principal),
            "now": Provide(provide_now, sync_to_thread=False),
        },
        guards=[role_guard, budget_guard],
        before_request=strict_body,
        after_exception=[count_unrouted],
        exception_handlers=exception_handlers(),
        lifespan=[database, ping_partitions, catalog, prediction, intent, value, retention,
                  push_delivery, webhook_delivery, settled],
        plugins=[ProblemResponses(), StrictStructSchemas()],
        middleware=[metrics_middleware],
        state=state,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="contexto", version="1.0.0",
            description="Context marketing: location pings to time-boxed push offers.",
            path="/schema",
            # Each operation says whether it needs the token (see `app.openapi`).
            components=Components(security_schemes={
                BEARER: SecurityScheme(type="http", scheme="bearer"),
            }),
        ),
    )
