"""Operations: liveness, readiness, metrics."""

from __future__ import annotations

from typing import Literal

import asyncpg
import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException

from app.openapi import problem_response

PUBLIC = {"public": True}


class Liveness(msgspec.Struct, frozen=True):
    status: Literal["ok"]


class Readiness(msgspec.Struct, frozen=True):
    status: Literal["ready"]
    geofence_index_version: int | None


@get("/healthz", operation_id="healthz", tags=["operations"], opt=PUBLIC)
async def healthz() -> Liveness:
    """The process is up."""
    return Liveness("ok")


@get("/readyz", operation_id="readyz", tags=["operations"], opt=PUBLIC,
     responses={503: problem_response("The database does not answer, or the geofence index "
                                      "is not loaded yet.")})
async def readyz(pool: asyncpg.Pool, state: State) -> Readiness:
    """The database answers and the geofence index is loaded."""
    try:
        await pool.fetchval("SELECT 1", timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ServiceUnavailableException(f"the database does not answer: {exc}") from exc
    catalog = getattr(state, "catalog", None)
    if catalog is not None and not catalog.loaded:
        raise ServiceUnavailableException("the geofence index is not loaded yet")
    return Readiness("ready", catalog.version if catalog else None)


@get("/metrics", operation_id="metrics", tags=["operations"], opt=PUBLIC,
     media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> bytes:
    """Prometheus text exposition."""
    data: bytes = state.metrics.render()
    return data
