"""Geofence index: for a batch of pings, the fences each ping is in or near, with signed distances.

One rule: geometry is only computed where a cell's precomputed distance bounds cannot decide the
answer; everything is built once, never mutated, and queried a whole batch at a time.

How it works. Every enabled fence is covered by the H3 cells (at `resolution`, default 11, ~25 m
edge) whose hexagon comes within `max_margin_m` of it. For each covered cell we store bounds
`lo <= d <= hi` on the signed distance d (metres, negative inside) of any point of the cell to the
fence border: d(centre) ∓ the cell's circumradius. At query time, for a margin m:
  - `hi <= -m`: the ping is inside by at least m: reported inside at -m, no geometry
    ("deep" cells; they are compacted with `h3.compact_cells`, so big fences stay small);
  - `lo > m`: the ping is farther than m outside: not reported, no geometry;
  - otherwise the exact signed distance is computed, vectorised over the whole batch: circles by
    haversine distance to their centre, polygons by point-to-segment distances and ray-crossing
    parity in the fence's local metric frame (one numpy pass over every (ping, edge) pair), and
    polygons with very many edges by shapely, one call per fence.
A ping is looked up by its cell at `resolution` and that cell's parents at the resolutions present
in the index (compacted cells), all in one bulk hash lookup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from uuid import UUID

import h3
import msgspec
import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from geo.cells import (
    Cells,
    CellTable,
    cell_centres,
    cell_of,
    cells_of,
    circumradius_m,
    compact,
    disk,
    parents_of,
    polyfill,
)
from geo.fences import EARTH_RADIUS_M, FenceShape, from_local_metres, to_local_metres

F64 = NDArray[np.float64]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]

DEFAULT_RESOLUTION = 11
# The widest margin a query may ask for. Presence needs margins up to its enter cap and its exit
# threshold for ordinary fixes (see geo.presence.MATCH_MARGIN_M); a wider margin costs memory
# (a ring of cells of that width around every fence) and build time.
DEFAULT_MAX_MARGIN_M = 100.0
# H3 cells vary in size (smoothly, by < 1 % across a 25 km² fence) and their edges are
# great-circle arcs, not straight lines in the local frame; measuring one cell per fence and
# inflating its circumradius by 15 % keeps every stored bound conservative.
CELL_RADIUS_SAFETY = 1.15
# Polygons with more edges than this are tested by shapely (one call per fence per batch) rather
# than by the all-pairs numpy kernel, whose cost grows with the edge count.
VECTOR_EDGE_LIMIT = 256
# (pair, edge) evaluations per numpy pass: bounds the kernel's temporary memory to ~200 MB.
KERNEL_CHUNK = 2_000_000
# Fences whose cover reaches at most this far from their centre are covered with a grid disk
# (cheap), bigger ones with a polygon fill (a fixed ~150 µs but proportional to the area).
DISK_COVER_LIMIT_M = 800.0

_CIRCLE, _POLYGON, _BIG_POLYGON = 0, 1, 2
_DEG = math.radians(1.0) * EARTH_RADIUS_M  # metres per degree of latitude


class IndexedFence(msgspec.Struct, frozen=True):
    fence_id: UUID
    store_id: UUID
    shape: FenceShape
    dwell_seconds: int
    tags: tuple[str, ...]
    enabled: bool


class FenceHit(msgspec.Struct, frozen=True):
    """A fence near one ping: `distance_m` is signed (negative inside), clamped to ±margin."""

    fence_id: UUID
    inside: bool
    distance_m: float


@dataclass(frozen=True, slots=True)
class FenceMatches:
    """Every (ping, fence) pair within the margin, as parallel arrays sorted by ping."""

    ping: I64  # position of the ping in the batch
    fence: I32  # position of the fence in `fence_ids`
    inside: Bools
    distance_m: F64
    fence_ids: Sequence[UUID]
    pings: int  # batch size

    def __len__(self) -> int:
        return len(self.ping)

    def hits(self) -> list[list[FenceHit]]:
        """The hits of each ping of the batch, in batch order."""
        out: list[list[FenceHit]] = [[] for _ in range(self.pings)]
        ids = self.fence_ids
        for p, f, ins, d in zip(
            self.ping.tolist(), self.fence.tolist(), self.inside.tolist(),
            self.distance_m.tolist(), strict=True,
        ):
            out[p].append(FenceHit(ids[f], ins, d))
        return out


def haversine_array(lat1: F64, lng1: F64, lat2: F64, lng2: F64) -> F64:
    """`geo.fences.haversine_m`, vectorised (same formula, so both agree to the last bit)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lng2 - lng1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: F64 = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return out


class _Geometry:
    """Exact signed distances to every fence's border, for arrays of (fence, point) pairs."""

    def __init__(self, shapes: Sequence[FenceShape]) -> None:
        n = len(shapes)
        self.kind = np.zeros(n, dtype=np.int8)
        self.lng0 = np.array([s.center_lng for s in shapes], dtype=np.float64)
        self.lat0 = np.array([s.center_lat for s in shapes], dtype=np.float64)
        self.kx = _DEG * np.cos(np.radians(self.lat0))
        self.ky = np.full(n, _DEG)
        self.radius = np.zeros(n)
        self.reach = np.zeros(n)  # farthest border point from the centre, metres
        self.e0 = np.zeros(n, dtype=np.int64)
        self.ne = np.zeros(n, dtype=np.int64)
        self.big: dict[int, tuple[BaseGeometry, BaseGeometry]] = {}
        self.local: list[BaseGeometry | None] = [None] * n
        segments: list[NDArray[np.float64]] = []
        count = 0
        for i, s in enumerate(shapes):
            if s.kind == "circle" and s.radius_m is not None:
                self.kind[i] = _CIRCLE
                self.radius[i] = s.radius_m
                self.reach[i] = s.radius_m
                continue
            local = to_local_metres(s.area, s.center_lng, s.center_lat)
            self.local[i] = local
            self.reach[i] = float(np.hypot(*shapely.get_coordinates(local).T).max())
            rings = shapely.get_rings(shapely.get_parts(local))
            seg = np.concatenate([_ring_segments(r) for r in rings])
            if len(seg) > VECTOR_EDGE_LIMIT:
                self.kind[i] = _BIG_POLYGON
                shapely.prepare(local)
                self.big[i] = (local, local.boundary)
                continue
            self.kind[i] = _POLYGON
            self.e0[i], self.ne[i] = count, len(seg)
            count += len(seg)
            segments.append(seg)
        seg = np.concatenate(segments) if segments else np.zeros((0, 4))
        self.ax, self.ay, self.dx, self.dy = (seg[:, j].copy() for j in range(4))
        len2 = self.dx**2 + self.dy**2
        self.inv_len2 = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)
        self.by = self.ay + self.dy
        # x of the crossing with a horizontal line = ax + (y - ay) * dx/dy; only used where the
        # edge spans that y, hence dy != 0.
        self.slope = np.divide(self.dx, self.dy, out=np.zeros_like(len2), where=self.dy != 0)

    def signed_distance(self, f: I32, lat: F64, lng: F64) -> tuple[Bools, F64]:
        """(inside, signed distance in metres) of each point to its fence's border."""
        inside = np.zeros(len(f), dtype=bool)
        dist = np.zeros(len(f))
        kind = self.kind[f]
        circ = np.flatnonzero(kind == _CIRCLE)
        if len(circ):
            fc = f[circ]
            centre = haversine_array(lat[circ], lng[circ], self.lat0[fc], self.lng0[fc])
            inside[circ] = centre <= self.radius[fc]
            dist[circ] = centre - self.radius[fc]
        poly = np.flatnonzero(kind == _POLYGON)
        if len(poly):
            fp = f[poly]
            x = (lng[poly] - self.lng0[fp]) * self.kx[fp]
            y = (lat[poly] - self.lat0[fp]) * self.ky[fp]
            ins, d = self._polygon_kernel(fp, x, y)
            inside[poly] = ins
            dist[poly] = d
        big = np.flatnonzero(kind == _BIG_POLYGON)
        if len(big):
            fb = f[big]
            for fence in np.unique(fb).tolist():
                at = big[fb == fence]
                x = (lng[at] - self.lng0[fence]) * self.kx[fence]
                y = (lat[at] - self.lat0[fence]) * self.ky[fence]
                area, border = self.big[fence]
                ins = shapely.contains_xy(area, x, y)
                d = shapely.distance(border, shapely.points(x, y))
                inside[at] = ins
                dist[at] = np.where(ins, -d, d)
        return inside, dist

    def _polygon_kernel(self, f: I32, x: F64, y: F64) -> tuple[Bools, F64]:
        counts = self.ne[f]
        inside = np.empty(len(f), dtype=bool)
        dist = np.empty(len(f))
        ends = np.cumsum(counts)
        lo = 0
        while lo < len(f):
            # The largest run of pairs whose edges fit in one chunk (at least one pair).
            base = ends[lo] - counts[lo]
            hi = max(lo + 1, int(np.searchsorted(ends, base + KERNEL_CHUNK, side="right")))
            c = counts[lo:hi]
            pair = np.repeat(np.arange(hi - lo), c)
            starts = np.cumsum(c) - c
            edge = np.arange(len(pair)) + np.repeat(self.e0[f[lo:hi]] - starts, c)
            px, py = x[lo:hi][pair], y[lo:hi][pair]
            ax, ay, dx, dy = self.ax[edge], self.ay[edge], self.dx[edge], self.dy[edge]
            rx, ry = px - ax, py - ay
            t = np.clip((rx * dx + ry * dy) * self.inv_len2[edge], 0.0, 1.0)
            qx, qy = rx - t * dx, ry - t * dy
            d2 = np.minimum.reduceat(qx * qx + qy * qy, starts)
            spans = (ay > py) != (self.by[edge] > py)
            crosses = spans & (px < ax + (py - ay) * self.slope[edge])
            odd = np.bitwise_xor.reduceat(crosses.view(np.uint8), starts).astype(bool)
            d = np.sqrt(d2)
            inside[lo:hi] = odd
            dist[lo:hi] = np.where(odd, -d, d)
            lo = hi
        return inside, dist


def _ring_segments(ring: BaseGeometry) -> NDArray[np.float64]:
    xy = shapely.get_coordinates(ring)
    return np.column_stack((xy[:-1], xy[1:] - xy[:-1]))


class FenceIndex:
    """An immutable index of the enabled fences; see the module docstring."""

    __slots__ = (
        "_by_id", "_entry_fence", "_entry_hi", "_entry_lo", "_fences", "_geometry", "_ids",
        "_levels", "_starts", "_table", "max_margin_m", "resolution", "version",
    )

    def __init__(
        self,
        fences: list[IndexedFence],
        geometry: _Geometry,
        table: CellTable,
        starts: I64,
        entry_fence: I32,
        entry_lo: NDArray[np.float32],
        entry_hi: NDArray[np.float32],
        levels: list[int],
        *,
        resolution: int,
        max_margin_m: float,
        version: int,
    ) -> None:
        """Assemble a built index; call `FenceIndex.build` instead."""
        self._fences = fences
        self._ids = [f.fence_id for f in fences]
        self._by_id = {fid: i for i, fid in enumerate(self._ids)}
        self._geometry = geometry
        self._table = table
        self._starts = starts
        self._entry_fence = entry_fence
        self._entry_lo = entry_lo
        self._entry_hi = entry_hi
        self._levels = levels
        self.resolution = resolution
        self.max_margin_m = max_margin_m
        self.version = version

    @classmethod
    def build(
        cls,
        fences: Iterable[IndexedFence],
        *,
        resolution: int = DEFAULT_RESOLUTION,
        max_margin_m: float = DEFAULT_MAX_MARGIN_M,
        version: int = 0,
    ) -> FenceIndex:
        """Index the enabled fences; disabled ones are left out."""
        if not 0 <= resolution <= 15:
            raise ValueError("resolution must be within 0..15")
        if not max_margin_m >= 0.0:
            raise ValueError("max_margin_m must be >= 0")
        kept = [f for f in fences if f.enabled]
        if len({f.fence_id for f in kept}) != len(kept):
            raise ValueError("fence ids must be unique")
        geometry = _Geometry([f.shape for f in kept])

        cover_cells: list[Cells] = []
        rho = np.zeros(len(kept))
        for i, fence in enumerate(kept):
            cells, rho[i] = _cover(fence.shape, geometry, i, resolution, max_margin_m)
            cover_cells.append(cells)
        counts = np.fromiter((len(c) for c in cover_cells), dtype=np.int64, count=len(kept))
        cand = np.concatenate(cover_cells) if kept else np.zeros(0, dtype=np.uint64)
        cand_fence = np.repeat(np.arange(len(kept), dtype=np.int32), counts)
        clat, clng = cell_centres(cand)
        _, centre_d = geometry.signed_distance(cand_fence, clat, clng)
        lo = centre_d - rho[cand_fence]
        hi = centre_d + rho[cand_fence]
        near = lo <= max_margin_m
        deep = near & (hi <= -max_margin_m)
        shallow = near & ~deep

        cell_parts = [cand[shallow]]
        fence_parts = [cand_fence[shallow]]
        lo_parts, hi_parts = [lo[shallow]], [hi[shallow]]
        deep_idx = np.flatnonzero(deep)
        if len(deep_idx):
            bounds = np.flatnonzero(np.diff(cand_fence[deep_idx])) + 1
            for run in np.split(deep_idx, bounds):
                packed = compact(cand[run])
                cell_parts.append(packed)
                fence_parts.append(np.full(len(packed), cand_fence[run[0]], dtype=np.int32))
                # Deep cells only ever answer "inside by at least the margin".
                lo_parts.append(np.full(len(packed), -np.inf))
                hi_parts.append(np.full(len(packed), -max_margin_m))
        entry_cell = np.concatenate(cell_parts)
        order = np.argsort(entry_cell, kind="stable")
        entry_cell = entry_cell[order]
        fresh = np.ones(len(entry_cell), dtype=bool)
        fresh[1:] = entry_cell[1:] != entry_cell[:-1]
        row_start = np.flatnonzero(fresh)
        keys = entry_cell[row_start]
        levels = np.unique((keys >> np.uint64(52)) & np.uint64(0xF)).astype(int).tolist()
        return cls(
            kept,
            geometry,
            CellTable(keys, np.arange(len(keys), dtype=np.int32)),
            np.append(row_start, len(entry_cell)).astype(np.int64),
            np.concatenate(fence_parts)[order].astype(np.int32),
            # float32 halves the memory; the 1 cm nudge outwards keeps the bounds conservative.
            (np.concatenate(lo_parts)[order] - 0.01).astype(np.float32),
            (np.concatenate(hi_parts)[order] + 0.01).astype(np.float32),
            sorted(set(levels) | {resolution}, reverse=True),
            resolution=resolution,
            max_margin_m=float(max_margin_m),
            version=version,
        )

    # --- queries -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._fences)

    @property
    def fences(self) -> Mapping[UUID, IndexedFence]:
        return MappingProxyType({f.fence_id: f for f in self._fences})

    def fence(self, fence_id: UUID) -> IndexedFence:
        """The indexed fence with this id; `KeyError` if it is not indexed (unknown or disabled)."""
        fence: IndexedFence = self._fences[self._by_id[fence_id]]
        return fence

    @property
    def entries(self) -> int:
        """Number of stored (cell, fence) pairs."""
        return len(self._entry_fence)

    @property
    def nbytes(self) -> int:
        """Approximate memory of the cell structures (geometry excluded)."""
        g = self._geometry
        return int(
            self._table.nbytes + self._starts.nbytes + self._entry_fence.nbytes
            + self._entry_lo.nbytes + self._entry_hi.nbytes
            + sum(a.nbytes for a in (g.ax, g.ay, g.dx, g.dy, g.by, g.slope, g.inv_len2))
        )

    def match(self, lat: F64, lng: F64, margin_m: float | None = None) -> FenceMatches:
        """Every fence each ping is inside of, or outside of by at most `margin_m` metres.

        Distances are exact within the margin and clamped to -margin deeper inside.
        """
        margin = self.max_margin_m if margin_m is None else float(margin_m)
        if not 0.0 <= margin <= self.max_margin_m:
            raise ValueError(f"margin_m must be within 0..{self.max_margin_m:g}")
        lat = np.asarray(lat, dtype=np.float64)
        lng = np.asarray(lng, dtype=np.float64)
        n = len(lat)
        cells = cells_of(lat, lng, self.resolution)
        levels = self._levels
        if len(levels) == 1:
            query = cells
        else:
            # Ping-major layout, so matches come out grouped by ping without a sort.
            query = np.stack([parents_of(cells, r) for r in levels], axis=1).ravel()
        rows_all = self._table.lookup(query)
        found = np.flatnonzero(rows_all >= 0)
        rows = rows_all[found]
        ping_of_row = found // len(levels)
        first = self._starts[rows]
        counts = self._starts[rows + 1] - first
        ping = np.repeat(ping_of_row, counts)
        entry = np.arange(len(ping)) + np.repeat(first - (np.cumsum(counts) - counts), counts)
        lo = self._entry_lo[entry]
        candidate = lo <= margin
        ping, entry = ping[candidate], entry[candidate]
        fence = self._entry_fence[entry]
        deep = self._entry_hi[entry] <= -margin
        inside = deep.copy()
        dist = np.full(len(ping), -margin)
        exact = np.flatnonzero(~deep)
        if len(exact):
            pe = ping[exact]
            ins, d = self._geometry.signed_distance(fence[exact], lat[pe], lng[pe])
            inside[exact] = ins
            dist[exact] = d
        keep = dist <= margin
        np.maximum(dist, -margin, out=dist)
        return FenceMatches(
            ping[keep], fence[keep], inside[keep], dist[keep], self._ids, n,
        )


def _cover(
    shape: FenceShape, geometry: _Geometry, i: int, resolution: int, margin: float,
) -> tuple[Cells, float]:
    """Candidate cells for fence i (a superset of those within `margin`) and its cell radius."""
    centre = cell_of(shape.center_lat, shape.center_lng, resolution)
    raw = circumradius_m(centre)
    rho = raw * CELL_RADIUS_SAFETY
    # Any point of a cell is within rho of its centre, so a cell that comes within `margin` of
    # the fence has its centre within reach + margin + rho of the fence's centre.
    reach = float(geometry.reach[i]) + margin + rho
    if reach <= DISK_COVER_LIMIT_M:
        # Centres of cells k grid steps apart are at least 1.5 edges (= circumradii) apart.
        edge = raw / CELL_RADIUS_SAFETY
        k = math.ceil((reach + rho) / (1.5 * edge)) + 1
        return disk(centre, k), rho
    local = geometry.local[i]
    if local is None:  # a circle
        local = shapely.Point(0.0, 0.0).buffer(float(geometry.radius[i]), quad_segs=16)
    # 2 % + 2 m covers the buffer's chords and, for circles (tested by haversine), the local
    # frame's distortion over up to 10 km.
    grown = shapely.buffer(local, (margin + rho) * 1.02 + 2.0 + 0.02 * float(geometry.reach[i]))
    area = from_local_metres(grown, shape.center_lng, shape.center_lat)
    return polyfill(_to_h3shape(area), resolution), rho


def _to_h3shape(area: BaseGeometry) -> h3.H3Shape:
    polys = []
    for part in shapely.get_parts(area):
        outer = [(lat, lng) for lng, lat in shapely.get_coordinates(part.exterior)]
        holes = [[(lat, lng) for lng, lat in shapely.get_coordinates(r)] for r in part.interiors]
        polys.append(h3.LatLngPoly(outer, *holes))
    return polys[0] if len(polys) == 1 else h3.LatLngMultiPoly(*polys)
