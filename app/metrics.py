"""Prometheus metrics: requests by route and status, latency, ping outcomes, and how long a
ping batch takes to become a push FCM accepted.

One rule: each app owns its registry, so several apps (tests) never share counters.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Ping received -> FCM accepted: tens of ms when the dispatcher is idle and FCM quick, seconds
# behind a backlog or a slow FCM, up to a minute and beyond when retries wait out a Retry-After.
PUSH_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("contexto_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("contexto_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.pings_accepted = Counter("contexto_pings_accepted", "pings accepted",
                                      registry=self.registry)
        self.pings_rejected = Counter("contexto_pings_rejected", "pings rejected",
                                      registry=self.registry)
        self.geo_events = Counter("contexto_geo_events", "presence events detected",
                                  registry=self.registry)
        self.deliveries_queued = Counter("contexto_deliveries_queued", "pushes queued",
                                         registry=self.registry)
        self.push_results = Counter("contexto_push_results", "FCM send outcomes",
                                    ["outcome"], registry=self.registry)
        # No labels: per campaign would grow without bound (campaigns come and go), and the
        # per-campaign figures are the stats' latency_ms, computed from the deliveries.
        self.push_latency = Histogram(
            "contexto_push_latency_seconds",
            "seconds from the receipt of a ping batch to FCM accepting the push it triggered, "
            "retries included (observed by the dispatcher running in this process)",
            buckets=PUSH_LATENCY_BUCKETS, registry=self.registry)
        self.live_dropped = Counter("contexto_live_dropped",
                                    "live feed events dropped for watchers too slow to take them",
                                    registry=self.registry)
        self.webhook_attempts = Counter("contexto_webhook_attempts",
                                        "webhook POSTs by outcome (delivered, retry, dead)",
                                        ["outcome"], registry=self.registry)
        self.retention_deleted = Counter("contexto_retention_deleted",
                                         "rows deleted by retention", ["table"],
                                         registry=self.registry)
        self.retention_days_dropped = Counter("contexto_retention_days_dropped",
                                              "day partitions of pings dropped by retention",
                                              registry=self.registry)

    def pings(self, accepted: int, rejected: int, events: int = 0, queued: int = 0) -> None:
        self.pings_accepted.inc(accepted)
        self.pings_rejected.inc(rejected)
        self.geo_events.inc(events)
        self.deliveries_queued.inc(queued)

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


def _route_of(scope: Scope) -> str:
    handler: Any = scope.get("route_handler")
    path_template = scope.get("path_template")
    if isinstance(path_template, str) and path_template:
        return path_template
    if handler is not None and getattr(handler, "paths", None):
        return str(sorted(handler.paths)[0])
    return "unmatched"


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        metrics: Metrics = scope["app"].state.metrics
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, record_status)
        finally:
            route = _route_of(scope)
            method = str(scope.get("method", ""))
            metrics.requests.labels(method, route, str(status)).inc()
            metrics.latency.labels(method, route).observe(time.perf_counter() - started)

    return middleware


async def count_unrouted(exc: Exception, scope: Scope) -> None:
    """Requests no route took (404 unknown path, 405 wrong method) never reach the route
    middleware above; count them here, under the route `unmatched`."""
    if scope.get("route_handler") is not None or scope["type"] != ScopeType.HTTP:
        return
    status = getattr(exc, "status_code", 500)
    metrics: Metrics = scope["app"].state.metrics
    metrics.requests.labels(str(scope.get("method", "")), "unmatched", str(status)).inc()
