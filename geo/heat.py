"""Where pings were around a store: ping counts per H3 cell over a recent window, for the
console's heat layer.

One rule: a cell seen by fewer than `MIN_DEVICES` distinct devices is never reported, not even
as a count of cells withheld, so no answer can single out a person's whereabouts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import h3
import msgspec
import shapely

from geo.store import Connection

MIN_DEVICES = 5
METRES_PER_DEG_LAT = 111_195.0

_STORE_AREAS = "SELECT area_wkb FROM geofences WHERE store_id = $1"
# One row per (cell, device): the devices are counted in Python, after the cells are coarsened.
_PINGS_IN_BOX = """
SELECT cell, device_id, count(*) AS pings FROM pings
WHERE ts >= $1 AND ts < $2 AND lat BETWEEN $3 AND $4 AND lng BETWEEN $5 AND $6
GROUP BY cell, device_id
"""


class HeatCell(msgspec.Struct, kw_only=True, frozen=True):
    cell: str
    pings: int
    devices: int


class Box(msgspec.Struct, frozen=True):
    south: float
    north: float
    west: float
    east: float


async def store_box(conn: Connection, store_id: UUID, margin_m: float) -> Box | None:
    """The bounding box of the store's fences widened by `margin_m`; None without fences."""
    areas = [shapely.from_wkb(r["area_wkb"]) for r in await conn.fetch(_STORE_AREAS, store_id)]
    if not areas:
        return None
    west, south, east, north = shapely.union_all(areas).bounds
    dlat = margin_m / METRES_PER_DEG_LAT
    dlng = margin_m / (METRES_PER_DEG_LAT * max(math.cos(math.radians((south + north) / 2)),
                                                0.01))
    return Box(max(south - dlat, -90.0), min(north + dlat, 90.0),
               max(west - dlng, -180.0), min(east + dlng, 180.0))


def aggregate(rows: Iterable[tuple[int, UUID, int]], resolution: int) -> list[HeatCell]:
    """Per cell at `resolution` (no finer than the stored cells): pings and distinct devices,
    busiest first; cells with fewer than MIN_DEVICES devices are dropped."""
    pings: dict[str, int] = defaultdict(int)
    devices: dict[str, set[UUID]] = defaultdict(set)
    for cell, device_id, count in rows:
        name = h3.int_to_str(cell)
        if h3.get_resolution(name) > resolution:
            name = h3.cell_to_parent(name, resolution)
        pings[name] += count
        devices[name].add(device_id)
    cells = [HeatCell(cell=c, pings=pings[c], devices=len(d))
             for c, d in devices.items() if len(d) >= MIN_DEVICES]
    return sorted(cells, key=lambda c: (-c.pings, c.cell))


async def heat(conn: Connection, box: Box, start: datetime, end: datetime,
               resolution: int) -> list[HeatCell]:
    rows = await conn.fetch(_PINGS_IN_BOX, start, end, box.south, box.north, box.west, box.east)
    return aggregate(((r["cell"], r["device_id"], r["pings"]) for r in rows), resolution)
