"""Geofence index: for a batch of pings, the fences each ping is in or near, with signed distances.

One rule: geometry is only computed where a cell's precomputed distance bounds cannot decide the
answer; everything is built once, never mutated, and a whole batch is answered by one compiled
loop (numba), never Python per ping.

How it works. The world is cut into a grid of cells about `cell_m` metres square (rows of
latitude, each cut into columns of its own width in longitude; see `geo.index_kernels`). A
(cell, fence) entry holds bounds `lo <= d <= hi` on the signed distance d (metres, negative
inside) of any point of the cell to the fence's border: d at the cell's centre ∓ half the cell's
diagonal; a polygon's entry also keeps the run of its edges among which any point of the cell
finds its nearest. A cell holds every fence within `max_margin_m` of some point of it, in the
order of their `lo`; a polygon's cells farther than 25 m (the margin of every accurate fix) from
its border keep only a lower bound from the polygon's reach and its whole run of edges, which
only the wide margins of inaccurate fixes read. At query time, for a margin m, a ping reads its
cell's entries up to the first with `lo > m`, and for each:
  - `hi <= -m`: the ping is inside by at least m: reported inside at -m, no geometry
    ("deep" cells, which every entry of a fence's interior is);
  - `lo > m`: the ping is farther than m outside, and so from every entry after: done;
  - otherwise the exact signed distance is computed: circles by haversine distance to their
    centre, polygons by the distance to the nearest edge of the entry's run, signed by the side
    of that edge (see `geo.index_kernels`), in the fence's local metric frame.
A cell is found by its key in an open-addressing hash table. Fences are kept in the order of a
Z-curve over their centres, so that a ping's fences lie side by side in memory. Pings are still
bucketed into H3 cells for storage and the heat map (`geo.cells`); the matcher does not use them.

Changes without rebuilding everything: a `LayeredIndex` is an immutable view of a big *base*
`FenceIndex`, a small *delta* `FenceIndex` of fences added or changed since, and the base fences
that are *dead* (changed, deleted or disabled). It answers exactly like a fresh build of its live
fences, because a fence's cells, bounds and exact tests depend on that fence alone.

Where each part lives: `geo.index_types` the values (fences in, matches out),
`geo.index_kernels` the grid and the exact signed distances (compiled), `geo.index_geometry`
the fences as arrays, `geo.index_build` the cells and their bounds, `geo.index_query`
`FenceIndex` and its `match`, `geo.index_edit` `LayeredIndex`, `geo.index_share` one base
index mapped by every worker process. This module gathers them: import from here.
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
