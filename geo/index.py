"""Geofence index: for a batch of pings, the fences each ping is in or near, with signed distances.

One rule: geometry is only computed where a cell's precomputed distance bounds cannot decide the
answer; everything is built once, never mutated, and a whole batch is answered by one compiled
loop (numba), never Python per ping.

How it works. The world is cut into a grid of cells about `cell_m` metres square (rows of
latitude, each cut into columns of its own width in longitude; see `geo.index_kernels`). Every
enabled fence gets an entry in each cell some point of which may come within `max_margin_m` of
it, with bounds `lo <= d <= hi` on the signed distance d (metres, negative inside) of any point of
the cell to the fence's border: d at the cell's centre ∓ half the cell's diagonal. A polygon's
entry also keeps the run of its edges among which any point of the cell finds its nearest. At
query time, for a margin m:
  - `hi <= -m`: the ping is inside by at least m: reported inside at -m, no geometry
    ("deep" cells, which every entry of a fence's interior is);
  - `lo > m`: the ping is farther than m outside: not reported, no geometry;
  - otherwise the exact signed distance is computed: circles by haversine distance to their
    centre, polygons by the distance to the nearest edge of the entry's run, signed by the side
    of that edge (see `geo.index_kernels`), in the fence's local metric frame.
A ping is looked up by its cell's key in an open-addressing hash table. Pings are still bucketed
into H3 cells for storage and the heat map (`geo.cells`); the matcher does not need them.

Changes without rebuilding everything: a `LayeredIndex` is an immutable view of a big *base*
`FenceIndex`, a small *delta* `FenceIndex` of fences added or changed since, and the base fences
that are *dead* (changed, deleted or disabled). It answers exactly like a fresh build of its live
fences, because a fence's cells, bounds and exact tests depend on that fence alone.

Where each part lives: `geo.index_types` the values (fences in, matches out),
`geo.index_kernels` the grid and the exact signed distances (compiled), `geo.index_geometry`
the fences as arrays, `geo.index_build` the cells and their bounds, `geo.index_query`
`FenceIndex` and its `match`, `geo.index_edit` `LayeredIndex`. This module gathers them: import
from here.
"""

from __future__ import annotations

from geo.index_edit import LayeredIndex
from geo.index_geometry import Geometry, haversine_array
from geo.index_query import FenceIndex
from geo.index_types import (
    DEFAULT_CELL_M,
    DEFAULT_MAX_MARGIN_M,
    FenceHit,
    FenceMatches,
    IndexedFence,
)

__all__ = [
    "DEFAULT_CELL_M",
    "DEFAULT_MAX_MARGIN_M",
    "FenceHit",
    "FenceIndex",
    "FenceMatches",
    "Geometry",
    "IndexedFence",
    "LayeredIndex",
    "haversine_array",
]
