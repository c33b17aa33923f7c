"""Geofence index: for a batch of pings, the fences each ping is in or near, with signed distances.

One rule: geometry is only computed where a cell's precomputed distance bounds cannot decide the
answer; everything is built once, never mutated, and queried a whole batch at a time.

How it works. Every enabled fence is covered by H3 cells whose points may come within
`max_margin_m` of it: first at `resolution` - 1, then, near the border, at `resolution` (default
11, ~25 m edge), and where the border is intricate (a long run of edges) at `resolution` + 1, the
query resolution. For each covered cell we store bounds `lo <= d <= hi` on the signed distance d
(metres, negative inside) of any point of the cell to the fence border: d(centre) ∓ the cell's
radius, and the run of consecutive edges among which any point of the cell finds its nearest.
At query time, for a margin m:
  - `hi <= -m`: the ping is inside by at least m: reported inside at -m, no geometry
    ("deep" cells; they are compacted with `h3.compact_cells`, so big fences stay small);
  - `lo > m`: the ping is farther than m outside: not reported, no geometry;
  - otherwise the exact signed distance is computed, vectorised over the whole batch: circles by
    haversine distance to their centre, polygons by the distance to the nearest edge of the
    cell's run, signed by the side of that edge (see `geo.index_geometry`), in the fence's local
    metric frame.
A ping is looked up by its cell at the query resolution and that cell's parents at the
resolutions present in the index (compacted cells), all in one bulk hash lookup.

Changes without rebuilding everything: a `LayeredIndex` is an immutable view of a big *base*
`FenceIndex`, a small *delta* `FenceIndex` of fences added or changed since, and the base fences
that are *dead* (changed, deleted or disabled). It answers exactly like a fresh build of its live
fences, because a fence's cells, bounds and exact tests depend on that fence alone.

Where each part lives: `geo.index_types` the values (fences in, matches out),
`geo.index_geometry` the exact signed distances, `geo.index_build` the cells and their bounds,
`geo.index_query` `FenceIndex` and its `match`, `geo.index_edit` `LayeredIndex`. This module
gathers them: import from here.
"""

from __future__ import annotations

from h3.api import numpy_int as h3n

from geo.index_edit import LayeredIndex
from geo.index_geometry import Geometry, haversine_array
from geo.index_query import FenceIndex
from geo.index_types import (
    DEFAULT_MAX_MARGIN_M,
    DEFAULT_RESOLUTION,
    FenceHit,
    FenceMatches,
    IndexedFence,
)

# The exact-distance engine under its former name (tests patch it to count exact tests).
_Geometry = Geometry

__all__ = [
    "DEFAULT_MAX_MARGIN_M",
    "DEFAULT_RESOLUTION",
    "FenceHit",
    "FenceIndex",
    "FenceMatches",
    "Geometry",
    "IndexedFence",
    "LayeredIndex",
    "h3n",
    "haversine_array",
]
