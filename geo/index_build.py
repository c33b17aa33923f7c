"""Building the geofence index's cell tables: which H3 cells reach each fence, with distance bounds.

One rule: a cell is stored with bounds lo <= d <= hi on the signed distance of any of its points
to the fence's border, conservative everywhere (see `geo.index` for how queries use them).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import h3
import numpy as np
import shapely
from h3.api import numpy_int as h3n
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from geo.cells import (
    Cells,
    CellTable,
    cell_centres,
    cells_of,
    children,
    circumradius_m,
    compact,
    disk,
    parents_of,
    polyfill,
)
from geo.fences import FenceShape, from_local_metres, within_world
from geo.index_geometry import DEG_M, Geometry, haversine_array, ragged
from geo.index_types import F64, I32, I64

# H3 cells vary in size (smoothly, by < 1 % across a 25 km² fence) and their edges are
# great-circle arcs, not straight lines in the local frame; measuring one cell per fence and
# inflating its circumradius by 15 % keeps every stored bound conservative.
CELL_RADIUS_SAFETY = 1.15
# Fences whose cover reaches at most this far from their centre are covered with a grid disk
# (cheap), bigger ones with a polygon fill (a fixed ~150 µs but proportional to the area).
DISK_COVER_LIMIT_M = 800.0

# Coarse cells with points closer than this to the border are split to the index resolution:
# most pings ask for margins of about this much (geo.presence.match_margin_m gives 25 m to every
# fix accurate to 25 m or better).
FINE_BAND_M = 25.0
# Cell radii are measured once per cell of this resolution (see `_region_radii`): H3 cell sizes
# vary smoothly, by far less than CELL_RADIUS_SAFETY across such a region (~250 km²).
RADII_REGION_RES = 5


# A cell near the border is split to the query resolution only when its run holds more edges.
FINEST_MIN_EDGES = 24
# Pairs per pass of the bounds computation (each reads up to all its fence's edges).
BOUNDS_CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class Edges:
    """Per (cell, fence) pair, a run of consecutive polygon edges (global ids start .. start +
    count - 1) holding every edge that can be nearest to a point of the cell; none (count 0)
    for circles and deep cells. One run per pair, not a list: 8 bytes an entry, and the edges
    an exact test reads lie side by side in memory."""

    start: I64
    count: I64

    def take(self, pairs: I64) -> Edges:
        """The edges of these pairs, in this order."""
        return Edges(self.start[pairs], self.count[pairs])

    @staticmethod
    def none(n: int) -> Edges:
        return Edges(np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))

    @staticmethod
    def join(parts: Sequence[Edges]) -> Edges:
        return Edges(np.concatenate([p.start for p in parts]),
                     np.concatenate([p.count for p in parts]))


@dataclass(frozen=True, slots=True)
class Tables:
    """A built index's arrays: the cell table, and per cell row its (fence, lo, hi) entries."""

    geometry: Geometry
    table: CellTable
    starts: I64  # row r's entries are starts[r]:starts[r + 1]
    entry_fence: I32
    entry_lo: NDArray[np.float32]
    entry_hi: NDArray[np.float32]
    # The edges an exact test of entry i reads: edge_start[i] .. edge_start[i] + edge_count[i].
    edge_start: NDArray[np.int32]
    edge_count: NDArray[np.int32]
    levels: list[int]  # the resolutions present, finest first


def build_tables(shapes: Sequence[FenceShape], resolution: int, max_margin_m: float) -> Tables:
    """The cell tables of these fences (numbered in this order).

    Three levels: fences are covered at `resolution` - 1 (7x fewer h3 calls than at
    `resolution`, and less memory); cells that may hold points within FINE_BAND_M of the border
    (or deeper) are split to `resolution`, and those again to `resolution` + 1 (the query
    resolution), whose tight bounds and short edge runs spare most pings most of the exact
    work; the outer ring stays coarse, as only wide (inaccurate) margins look there.
    """
    geometry = Geometry(shapes)
    coarse = max(0, resolution - 1)
    finest = min(15, resolution + 1)
    covers = _covers(shapes, geometry, (coarse, resolution, finest), max_margin_m)
    rho = [np.array([c.rho[k] for c in covers]) for k in range(3)]
    counts = np.fromiter((len(c.cells) for c in covers), dtype=np.int64, count=len(shapes))
    cand = np.concatenate([c.cells for c in covers]) if shapes else np.zeros(0, np.uint64)
    cand_fence = np.repeat(np.arange(len(shapes), dtype=np.int32), counts)
    # A cover is a disk of whole cells (or a fill of a grown area), most of which lie beyond
    # reach: a cell whose centre is farther from the fence's centre than `reach` cannot hold a
    # point within the widest margin, and is dropped before any exact geometry.
    lat, lng = _centres(cand)
    reach = np.array([c.reach_m for c in covers])
    within = haversine_array(lat, lng, geometry.lat0[cand_fence],
                             geometry.lng0[cand_fence]) <= reach[cand_fence]
    cand, cand_fence, lat, lng = cand[within], cand_fence[within], lat[within], lng[within]
    lo, hi, edges = _bounds(geometry, lat, lng, cand_fence, rho[0], None)
    out = _Entries([], [], [], [], [], [])
    _descend(geometry, out, [resolution, finest][:2 if finest > resolution else 1], rho[1:],
             max_margin_m, cand, cand_fence, lo, hi, edges, coarse < resolution)
    cell_parts, fence_parts, lo_parts, hi_parts, edge_parts = (
        out.cells, out.fences, out.lo, out.hi, out.edges)
    for deep_cells, deep_fence in out.deep:
        if not len(deep_cells):
            continue
        bounds = np.flatnonzero(np.diff(deep_fence)) + 1
        for run in np.split(np.arange(len(deep_cells)), bounds):
            packed = compact(deep_cells[run])
            cell_parts.append(packed)
            fence_parts.append(np.full(len(packed), deep_fence[run[0]], dtype=np.int32))
            # Deep cells only ever answer "inside by at least the margin".
            lo_parts.append(np.full(len(packed), -np.inf))
            hi_parts.append(np.full(len(packed), -max_margin_m))
            edge_parts.append(Edges.none(len(packed)))
    entry_cell = np.concatenate(cell_parts)
    order = np.argsort(entry_cell, kind="stable")
    entry_cell = entry_cell[order]
    fresh = np.ones(len(entry_cell), dtype=bool)
    fresh[1:] = entry_cell[1:] != entry_cell[:-1]
    row_start = np.flatnonzero(fresh)
    keys = entry_cell[row_start]
    levels = np.unique((keys >> np.uint64(52)) & np.uint64(0xF)).astype(int).tolist()
    # float32 halves the memory; the 1 cm nudge outwards keeps computed bounds conservative.
    entry_lo = (np.concatenate(lo_parts)[order] - 0.01).astype(np.float32)
    entry_hi = (np.concatenate(hi_parts)[order] + 0.01).astype(np.float32)
    # Deep cells are not a computed bound but a fact (inside by at least the widest margin):
    # nudged, a query at that margin would run exact geometry deep inside big fences.
    entry_hi[np.isneginf(entry_lo)] = -max_margin_m
    entry_edges = Edges.join(edge_parts)
    geometry.drop_shapes()
    return Tables(
        geometry,
        CellTable(keys, np.arange(len(keys), dtype=np.int32)),
        np.append(row_start, len(entry_cell)).astype(np.int64),
        np.concatenate(fence_parts)[order].astype(np.int32),
        entry_lo,
        entry_hi,
        entry_edges.start[order].astype(np.int32),
        entry_edges.count[order].astype(np.int32),
        sorted(set(levels) | {finest}, reverse=True),
    )


@dataclass(frozen=True, slots=True)
class _Entries:
    cells: list[Cells]
    fences: list[I32]
    lo: list[F64]
    hi: list[F64]
    edges: list[Edges]
    deep: list[tuple[Cells, I32]]


def _descend(
    geometry: Geometry, out: _Entries, finer: list[int], rho: list[F64], margin: float,
    cells: Cells, fence: I32, lo: F64, hi: F64, edges: Edges, may_split: bool,
) -> None:
    """Store cells with bounds (lo, hi) as entries, deep or not, or split those near the border
    into their children at finer[0] (radii rho[0]), and so on down."""
    near = lo <= margin
    deep = near & (hi <= -margin)
    split = near & ~deep & (lo <= FINE_BAND_M) & may_split & bool(finer)
    if len(finer) == 1:
        # The query resolution only pays where an exact test would read many edges: circles
        # and long straight borders are cheap as they are, and finer cells cost memory.
        split &= edges.count > FINEST_MIN_EDGES
    exact = np.flatnonzero(near & ~deep & ~split)
    out.cells.append(cells[exact])
    out.fences.append(fence[exact])
    out.lo.append(lo[exact])
    out.hi.append(hi[exact])
    out.edges.append(edges.take(exact))
    out.deep.append((cells[deep], fence[deep]))
    parents = np.flatnonzero(split)
    for part in np.array_split(parents, max(1, -(-len(parents) // BOUNDS_CHUNK))):
        if not len(part):
            continue
        kids, per_cell = children(cells[part], finer[0])
        parent = np.repeat(part, per_cell)
        kid_fence = fence[parent]
        klat, klng = _centres(kids)
        # A kid's nearest edges are among its parent's (computed for any point of the parent).
        klo, khi, kedges = _bounds(geometry, klat, klng, kid_fence, rho[0], edges.take(parent))
        _descend(geometry, out, finer[1:], rho[1:], margin, kids, kid_fence, klo, khi, kedges,
                 True)


@dataclass(frozen=True, slots=True)
class _Cover:
    cells: Cells  # at the coarse resolution
    # Per level (coarse, the index's, the query's): no point of a cell's descendants at the
    # query resolution is farther from the cell's centre, in the fence's local metres.
    rho: tuple[float, float, float]
    reach_m: float  # no coarse cell whose centre is farther (true metres) from the fence's
    # centre has a point within the margin of the fence


def _covers(
    shapes: Sequence[FenceShape], geometry: Geometry, levels: tuple[int, int, int],
    margin: float,
) -> list[_Cover]:
    """Coarse cells covering each fence and everything within `margin` of it, and cell radii
    (in the fence's local metres, see `_distortion`); all but the grid disks in numpy."""
    n = len(shapes)
    if not n:
        return []
    coarse = levels[0]
    centre = cells_of(geometry.lat0, geometry.lng0, coarse)
    region = parents_of(centre, RADII_REGION_RES) if coarse >= RADII_REGION_RES else centre
    distinct, at = np.unique(region, return_inverse=True)
    radii = np.array([_region_radii(int(r), levels) for r in distinct.tolist()]).reshape(-1, 4)
    edge, rho_coarse = radii[at, 0], radii[at, 1]
    bounds = shapely.bounds(np.array([sh.area for sh in shapes], dtype=object))
    band = (margin + 3.0 * rho_coarse) / DEG_M  # the cover reaches no farther north or south
    s = _distortion(geometry.lat0, bounds[:, 1] - band, bounds[:, 3] + band)
    rho_local = radii[at, 1:] * s[:, None]
    # A cell with a point within `margin` (local metres) of the fence has its centre within
    # s × (reach + margin) + rho_coarse true metres of the fence's centre.
    reach = s * (geometry.reach + margin) + rho_coarse
    # Centres of cells k grid steps apart are at least 1.5 edges (= circumradii) apart; the 5 %
    # allow for the cells' size varying across the disk.
    k = np.ceil((reach + edge) / (1.5 * edge / 1.05)).astype(np.int64) + 1
    covers = []
    for i in range(n):
        if reach[i] <= DISK_COVER_LIMIT_M:
            cells = disk(int(centre[i]), int(k[i]))
        else:
            cells = _fill(shapes[i], geometry, i, coarse, margin, float(rho_local[i, 0]),
                          float(s[i]))
        r0, r1, r2 = rho_local[i].tolist()
        covers.append(_Cover(cells, (r0, r1, r2), float(reach[i])))
    return covers


def _fill(shape: FenceShape, geometry: Geometry, i: int, coarse: int, margin: float,
          rho_coarse_local: float, s: float) -> Cells:
    """The cover of a big fence: the coarse cells whose centre lies in the fence grown enough."""
    fence_reach = float(geometry.reach[i])
    local = geometry.local[i]
    if local is None:  # a circle
        local = shapely.Point(0.0, 0.0).buffer(float(geometry.radius[i]), quad_segs=16)
    # 2 % + 2 m covers the buffer's chords and, for circles (tested by haversine), the local
    # frame's distortion over up to 10 km at mid latitudes; the last term, its growth nearer
    # the poles.
    grow = ((margin + rho_coarse_local) * 1.02 + 2.0 + 0.02 * fence_reach
            + (s - 1.0) * (fence_reach + margin))
    area = from_local_metres(shapely.buffer(local, grow), shape.center_lng, shape.center_lat)
    return polyfill(_to_h3shape(within_world(area)), coarse)


def _distortion(lat0: F64, lat_lo: F64, lat_hi: F64) -> F64:
    """How much the local frame around latitude `lat0` may stretch or shrink a distance between
    latitudes `lat_lo` and `lat_hi` (≥ 1): its metres east are true at `lat0` only, and scale
    with cos(latitude) elsewhere. Under 1.001 for a fence of a few km below 60°; it grows
    toward the poles, where cell bounds widen by it so that they stay conservative."""
    def cos(lat: F64) -> F64:
        out: F64 = np.cos(np.radians(np.minimum(90.0, np.abs(lat))))
        return out

    nearest_equator = np.where((lat_lo <= 0.0) & (lat_hi >= 0.0), 0.0,
                               np.minimum(np.abs(lat_lo), np.abs(lat_hi)))
    farthest = np.maximum(np.abs(lat_lo), np.abs(lat_hi))
    out: F64 = np.maximum(cos(lat0) / np.maximum(cos(farthest), 1e-12),
                          cos(nearest_equator) / cos(lat0))
    return out


@functools.lru_cache(maxsize=4096)
def _region_radii(region: int, levels: tuple[int, int, int]) -> tuple[float, float, float, float]:
    """(coarse edge, and the radius of a cell at each of `levels` to its descendants at the
    last, with safety) measured around the centre of `region`."""
    coarse, mid, finest = levels
    centre = int(h3n.cell_to_center_child(region, coarse))
    edge = circumradius_m(centre)
    # Descendants stick out of their ancestor's hexagon: measure how far.
    kids, _ = children(np.array([centre], dtype=np.uint64), finest)
    rho_coarse = max(circumradius_m(centre, int(k)) for k in kids)
    middle = int(h3n.cell_to_center_child(centre, mid))
    kids, _ = children(np.array([middle], dtype=np.uint64), finest)
    rho_mid = max(circumradius_m(middle, int(k)) for k in kids)
    rho_finest = max(circumradius_m(int(k)) for k in kids)
    return (edge, rho_coarse * CELL_RADIUS_SAFETY, rho_mid * CELL_RADIUS_SAFETY,
            rho_finest * CELL_RADIUS_SAFETY)


def _centres(cells: Cells) -> tuple[F64, F64]:
    """`cell_centres`, each distinct cell asked once: neighbouring fences share most cells."""
    distinct, at = np.unique(cells, return_inverse=True)
    lat, lng = cell_centres(distinct)
    return lat[at], lng[at]


def _bounds(
    geometry: Geometry, lat: F64, lng: F64, fence: I32, rho: F64, edges: Edges | None,
) -> tuple[F64, F64, Edges]:
    """Bounds (lo, hi) on the signed distance to each fence of any point of each cell, from the
    cells' centres (lat, lng), and the run of edges holding those that can be nearest to a
    point of each cell: within |d| + 2 rho of the centre (a point of the cell is within rho of
    it, so its nearest edge is within |d| + rho of it, hence within |d| + 2 rho of the centre).
    `edges` (default: all of the fence's) holds each pair's nearest edge."""
    n = len(fence)
    d = np.zeros(n)
    start = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    for p0 in range(0, n, BOUNDS_CHUNK):
        at = slice(p0, min(n, p0 + BOUNDS_CHUNK))
        f = fence[at]
        circle = geometry.kind[f] == 0
        ci = np.flatnonzero(circle)
        if len(ci):
            _, d[p0 + ci] = geometry.signed_distance(f[ci], lat[at][ci], lng[at][ci])
        poly = np.flatnonzero(~circle)
        if not len(poly):
            continue
        if edges is None:
            ps, pc = geometry.first_edge[f[poly]], geometry.edge_count[f[poly]]
        else:
            ps, pc = edges.start[p0 + poly], edges.count[p0 + poly]
        ids = ragged(ps, pc)
        x, y = geometry.local_xy(f[poly], lat[at][poly], lng[at][poly])
        _, dp, kept = geometry.nearest_edge(x, y, pc, ids, 2.0 * rho[f[poly]])
        d[p0 + poly] = dp
        # Every pair keeps at least its nearest edge; kept positions come in pair order.
        kept_ids = ids[kept]
        first = np.searchsorted(kept, np.cumsum(pc) - pc)
        lo = np.minimum.reduceat(kept_ids, first)
        start[p0 + poly] = lo
        count[p0 + poly] = np.maximum.reduceat(kept_ids, first) - lo + 1
    return d - rho[fence], d + rho[fence], Edges(start, count)


def _to_h3shape(area: BaseGeometry) -> h3.H3Shape:
    polys = []
    for part in shapely.get_parts(area):
        outer = [(lat, lng) for lng, lat in shapely.get_coordinates(part.exterior)]
        holes = [[(lat, lng) for lng, lat in shapely.get_coordinates(r)] for r in part.interiors]
        polys.append(h3.LatLngPoly(outer, *holes))
    return polys[0] if len(polys) == 1 else h3.LatLngMultiPoly(*polys)
