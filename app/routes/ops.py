"""Operations: liveness, readiness, metrics."""

from __future__ import annotations

import asyncpg
from litestar import Response, get
from litestar.datastructures import State

from app.errors import problem

PUBLIC = {"public": True}


@get("/healthz", operation_id="healthz", tags=["operations"], opt=PUBLIC)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", operation_id="readyz", tags=["operations"], opt=PUBLIC)
async def readyz(pool: asyncpg.Pool, state: State) -> Response[bytes] | dict[str, object]:
    """The database answers and the geofence index is loaded."""
    try:
        await pool.fetchval("SELECT 1", timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return problem(503, f"the database does not answer: {exc}")
    catalog = getattr(state, "catalog", None)
    if catalog is not None and not catalog.loaded:
        return problem(503, "the geofence index is not loaded yet")
    return {"status": "ready", "geofence_index_version": catalog.version if catalog else None}


@get("/metrics", operation_id="metrics", tags=["operations"], opt=PUBLIC,
     media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> bytes:
    """Prometheus text exposition."""
    data: bytes = state.metrics.render()
    return data
