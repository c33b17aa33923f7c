"""The heat of recent pings around a store, per H3 cell (`GET /v1/reports/heat`), for the
console's heat layer; a cell with fewer than 5 distinct devices is never revealed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

import asyncpg
import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.params import Parameter

from app.auth import Principal, admits
from geo import heat as geo_heat
from geo import store as geo_store
from geo.errors import InvalidField

Window = Literal["hour", "day", "week"]
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}


class Heat(msgspec.Struct, kw_only=True, frozen=True):
    store_id: UUID
    window: str
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    resolution: int
    min_devices: int
    cells: list[geo_heat.HeatCell]


@get("/v1/reports/heat", operation_id="getHeat", tags=["reports"],
     opt=admits("campaign_manager", "store_manager", action="read the heat of pings"))
async def heat(
    store_id: Annotated[UUID, Parameter(description="around this store's fences")],
    pool: asyncpg.Pool, principal: Principal, state: State, now: datetime,
    window: Annotated[Window, Parameter(description="the last hour, day or week")] = "day",
    resolution: Annotated[int, Parameter(ge=5, le=15, description=(
        "H3 resolution of the cells (no finer than the service's H3_RESOLUTION)"))] = 9,
    margin_m: Annotated[int, Parameter(ge=0, le=5000, description=(
        "how far around the store's fences, in metres"))] = 1000,
) -> Heat:
    """Pings per H3 cell around the store's fences over the last hour, day or week, busiest
    first: each cell with its ping count and distinct devices. A cell seen by fewer than
    `min_devices` (5) devices is left out."""
    principal.require_store(store_id)
    finest: int = state.settings.h3_resolution
    if resolution > finest:
        raise InvalidField("resolution", f"must be at most {finest}, the resolution pings are "
                                         "stored at")
    start = now - WINDOWS[window]
    async with pool.acquire() as conn:
        await geo_store.get_store(conn, store_id)
        box = await geo_heat.store_box(conn, store_id, margin_m)
        cells = [] if box is None else await geo_heat.heat(conn, box, start, now, resolution)
    return Heat(store_id=store_id, window=window, start=start, end=now, resolution=resolution,
                min_devices=geo_heat.MIN_DEVICES, cells=cells)
