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

Changes without rebuilding everything: a `LayeredIndex` is an immutable view of a big *base*
`FenceIndex`, a small *delta* `FenceIndex` of fences added or changed since, and the base fences
that are *dead* (changed, deleted or disabled). It answers exactly like a fresh build of its live
fences, because a fence's cells, bounds and exact tests depend on that fence alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from uuid import UUID

import h3
import msgspec
import numpy as np
import shapely
from h3.api import numpy_int as h3n
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from geo.cells import (
    Cells,
    CellTable,
    cell_centres,
    cell_of,
    cells_of,
    children,
    circumradius_m,
    compact,
    disk,
    parents_of,
    polyfill,
)
from geo.fences import (
    EARTH_RADIUS_M,
    FenceShape,
    from_local_metres,
    short_way,
    to_local_metres,
    within_world,
)

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
# (pair, edge) evaluations per numpy pass: bounds the kernel's temporary memory to ~30 MB.
KERNEL_CHUNK = 250_000
# Polygons are padded to the next of these edge counts (the last one is VECTOR_EDGE_LIMIT).
EDGE_WIDTHS = (4, 8, 16, 32, 64, 128, 256)
# Fences whose cover reaches at most this far from their centre are covered with a grid disk
# (cheap), bigger ones with a polygon fill (a fixed ~150 µs but proportional to the area).
DISK_COVER_LIMIT_M = 800.0

# Coarse cells with points closer than this to the border are split to the index resolution:
# most pings ask for margins of about this much (geo.presence.match_margin_m gives 25 m to every
# fix accurate to 25 m or better).
FINE_BAND_M = 25.0
# Cell radii are measured once per cell of this resolution (see `_radii`).
RADII_REGION_RES = 5

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
        self.bucket = np.full(n, -1, dtype=np.int64)  # which edge table holds the polygon
        self.row = np.zeros(n, dtype=np.int64)  # its row there
        self.big: dict[int, tuple[BaseGeometry, BaseGeometry]] = {}
        self.local: list[BaseGeometry | None] = [None] * n
        segments: dict[int, list[NDArray[np.float64]]] = {w: [] for w in EDGE_WIDTHS}
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
            b = int(np.searchsorted(EDGE_WIDTHS, len(seg)))
            width = EDGE_WIDTHS[b]
            self.bucket[i], self.row[i] = b, len(segments[width])
            # Padding edges have zero length at the last vertex: a distance to a real vertex,
            # and never a crossing.
            pad = np.tile([seg[-1, 0] + seg[-1, 2], seg[-1, 1] + seg[-1, 3], 0.0, 0.0],
                          (width - len(seg), 1))
            segments[width].append(np.vstack((seg, pad)))
        # One table per width, shape (polygons, width, 7): a polygon's edges (ax, ay, dx, dy,
        # 1/len², ay+dy, dx/dy) are contiguous, so gathering a pair's edges touches a few cache
        # lines even when the table holds 100 k fences.
        self.tables: list[NDArray[np.float64]] = []
        for width in EDGE_WIDTHS:
            blocks = segments[width]
            seg = np.stack(blocks) if blocks else np.zeros((0, width, 4))
            dx, dy = seg[:, :, 2], seg[:, :, 3]
            len2 = dx**2 + dy**2
            inv_len2 = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)
            # x of the crossing with a horizontal line = ax + (y - ay) * dx/dy; only used where
            # the edge spans that y, hence dy != 0.
            slope = np.divide(dx, dy, out=np.zeros_like(len2), where=dy != 0)
            self.tables.append(np.ascontiguousarray(
                np.concatenate((seg, np.stack((inv_len2, seg[:, :, 1] + dy, slope), axis=2)),
                               axis=2)))
        lat0_rad = np.radians(self.lat0)
        # Everything the exact tests read about a fence, in one 64-byte row: one cache line per
        # (ping, fence) pair instead of one per array.
        self.frame = np.ascontiguousarray(np.column_stack((
            self.lat0, self.lng0, self.kx, self.ky, lat0_rad, np.radians(self.lng0),
            np.cos(lat0_rad), self.radius,
        )))

    def signed_distance(self, f: I32, lat: F64, lng: F64) -> tuple[Bools, F64]:
        """(inside, signed distance in metres) of each point to its fence's border."""
        inside = np.zeros(len(f), dtype=bool)
        dist = np.zeros(len(f))
        kind = self.kind[f]
        frame = self.frame[f]
        circ = np.flatnonzero(kind == _CIRCLE)
        if len(circ):
            fr = frame[circ]
            p = np.radians(lat[circ])
            h = np.sin((p - fr[:, 4]) * 0.5) ** 2 + np.cos(p) * fr[:, 6] * (
                np.sin((np.radians(lng[circ]) - fr[:, 5]) * 0.5) ** 2)
            centre = (2 * EARTH_RADIUS_M) * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
            inside[circ] = centre <= fr[:, 7]
            dist[circ] = centre - fr[:, 7]
        poly = np.flatnonzero(kind == _POLYGON)
        if len(poly):
            fp = f[poly]
            fr = frame[poly]
            x = short_way(lng[poly] - fr[:, 1]) * fr[:, 2]
            y = (lat[poly] - fr[:, 0]) * fr[:, 3]
            ins, d = self._polygon_kernel(fp, x, y)
            inside[poly] = ins
            dist[poly] = d
        big = np.flatnonzero(kind == _BIG_POLYGON) if self.big else np.zeros(0, dtype=np.int64)
        if len(big):
            fb = f[big]
            for fence in np.unique(fb).tolist():
                at = big[fb == fence]
                x = short_way(lng[at] - self.lng0[fence]) * self.kx[fence]
                y = (lat[at] - self.lat0[fence]) * self.ky[fence]
                area, border = self.big[fence]
                ins = shapely.contains_xy(area, x, y)
                d = shapely.distance(border, shapely.points(x, y))
                inside[at] = ins
                dist[at] = np.where(ins, -d, d)
        return inside, dist

    def _polygon_kernel(self, f: I32, x: F64, y: F64) -> tuple[Bools, F64]:
        inside = np.empty(len(f), dtype=bool)
        dist = np.empty(len(f))
        bucket = self.bucket[f]
        for b in np.unique(bucket).tolist():
            pairs = np.flatnonzero(bucket == b)
            table = self.tables[b]
            step = max(1, KERNEL_CHUNK // EDGE_WIDTHS[b])
            for lo in range(0, len(pairs), step):
                at = pairs[lo:lo + step]
                rows = self.row[f[at]]
                # Edge-major (7, width, pairs): reductions over edges become a few elementwise
                # operations on long rows, far faster in numpy than short inner axes.
                block = np.ascontiguousarray(table[rows].transpose(2, 1, 0))
                ax, ay, dx, dy, inv_len2, by, slope = block
                px, py = x[at], y[at]
                rx, ry = px - ax, py - ay
                t = np.clip((rx * dx + ry * dy) * inv_len2, 0.0, 1.0)
                qx, qy = rx - t * dx, ry - t * dy
                d = np.sqrt(np.minimum.reduce(qx * qx + qy * qy, axis=0))
                crosses = ((ay > py) != (by > py)) & (rx < (py - ay) * slope)
                odd = np.bitwise_xor.reduce(crosses, axis=0)
                inside[at] = odd
                dist[at] = np.where(odd, -d, d)
        return inside, dist


def _ring_segments(ring: BaseGeometry) -> NDArray[np.float64]:
    xy = shapely.get_coordinates(ring)
    return np.column_stack((xy[:-1], xy[1:] - xy[:-1]))


class FenceIndex:
    """An immutable index of the enabled fences; see the module docstring."""

    __slots__ = (
        "_by_id", "_entry_fence", "_entry_hi", "_entry_lo", "_fence_map", "_fences", "_geometry",
        "_ids",
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
        self._fence_map = MappingProxyType({f.fence_id: f for f in fences})
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

        # Covering cells one level coarser than `resolution` costs 7x fewer h3 calls (the build's
        # bottleneck) and memory. Coarse cells that may hold points within FINE_BAND_M of the
        # border (or deeper) are split to `resolution`, whose tighter bounds spare most pings an
        # exact test; the outer ring stays coarse, as only wide (inaccurate) margins look there.
        coarse = max(0, resolution - 1)
        covers = [_cover(f.shape, geometry, i, coarse, resolution, max_margin_m)
                  for i, f in enumerate(kept)]
        rho_coarse = np.array([c.rho_coarse for c in covers])
        rho_fine = np.array([c.rho_fine for c in covers])
        counts = np.fromiter((len(c.cells) for c in covers), dtype=np.int64, count=len(kept))
        cand = np.concatenate([c.cells for c in covers]) if kept else np.zeros(0, np.uint64)
        cand_fence = np.repeat(np.arange(len(kept), dtype=np.int32), counts)
        lo, hi = _bounds(geometry, cand, cand_fence, rho_coarse)
        near = lo <= max_margin_m
        deep = near & (hi <= -max_margin_m)
        split = near & ~deep & (lo <= FINE_BAND_M) & (coarse < resolution)
        exact = near & ~deep & ~split

        cell_parts = [cand[exact]]
        fence_parts = [cand_fence[exact]]
        lo_parts, hi_parts = [lo[exact]], [hi[exact]]
        deep_parts = [(cand[deep], cand_fence[deep])]
        if split.any():
            kids, per_cell = children(cand[split], resolution)
            kid_fence = np.repeat(cand_fence[split], per_cell)
            klo, khi = _bounds(geometry, kids, kid_fence, rho_fine)
            knear = klo <= max_margin_m
            kdeep = knear & (khi <= -max_margin_m)
            kexact = knear & ~kdeep
            cell_parts.append(kids[kexact])
            fence_parts.append(kid_fence[kexact])
            lo_parts.append(klo[kexact])
            hi_parts.append(khi[kexact])
            deep_parts.append((kids[kdeep], kid_fence[kdeep]))
        for deep_cells, deep_fence in deep_parts:
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
        return cls(
            kept,
            geometry,
            CellTable(keys, np.arange(len(keys), dtype=np.int32)),
            np.append(row_start, len(entry_cell)).astype(np.int64),
            np.concatenate(fence_parts)[order].astype(np.int32),
            entry_lo,
            entry_hi,
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
        """The indexed fences by id (read-only; what `geo.presence.advance` takes)."""
        return self._fence_map

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
        """Approximate memory of cell structures and polygon edges (shapely objects excluded)."""
        return int(
            self._table.nbytes + self._starts.nbytes + self._entry_fence.nbytes
            + self._entry_lo.nbytes + self._entry_hi.nbytes
            + sum(t.nbytes for t in self._geometry.tables)
        )

    def match(
        self, lat: F64, lng: F64, margin_m: float | F64 | None = None, *,
        cells: Cells | None = None,
    ) -> FenceMatches:
        """Every fence each ping is inside of, or outside of by at most `margin_m` metres.

        `margin_m` is one margin for the batch or one per ping (at most `max_margin_m`; default
        that). Distances are exact within the margin and clamped to -margin deeper inside.
        `cells` may pass the pings' `cells_of(lat, lng, index.resolution)` when the caller has
        them already (they are the largest share of the cost).
        """
        lat = np.asarray(lat, dtype=np.float64)
        lng = np.asarray(lng, dtype=np.float64)
        n = len(lat)
        per_ping = np.broadcast_to(
            np.asarray(self.max_margin_m if margin_m is None else margin_m, dtype=np.float64),
            (n,),
        )
        if n and not (per_ping.min() >= 0.0 and per_ping.max() <= self.max_margin_m):
            raise ValueError(f"margin_m must be within 0..{self.max_margin_m:g}")
        if cells is None:
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
        margin = per_ping[ping]
        candidate = self._entry_lo[entry] <= margin
        ping, entry, margin = ping[candidate], entry[candidate], margin[candidate]
        fence = self._entry_fence[entry]
        deep = self._entry_hi[entry] <= -margin
        inside = deep.copy()
        dist = -margin
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


class _LiveFences(Mapping[UUID, IndexedFence]):
    """The live fences of a `LayeredIndex`: the delta's, then the base's that are not shadowed.

    A view, not a copy: making it costs nothing however big the base is.
    """

    __slots__ = ("_base", "_delta", "_len", "_shadowed")

    def __init__(self, base: Mapping[UUID, IndexedFence], delta: Mapping[UUID, IndexedFence],
                 shadowed: frozenset[UUID]) -> None:
        self._base, self._delta, self._shadowed = base, delta, shadowed
        self._len = len(base) - len(shadowed) + len(delta)  # shadowed ⊆ base's ids

    def __getitem__(self, fence_id: UUID) -> IndexedFence:
        fence = self._delta.get(fence_id)
        if fence is not None:
            return fence
        if fence_id in self._shadowed:
            raise KeyError(fence_id)
        return self._base[fence_id]

    def __contains__(self, fence_id: object) -> bool:
        return fence_id in self._delta or (
            fence_id not in self._shadowed and fence_id in self._base)

    def __iter__(self) -> Iterator[UUID]:
        yield from self._delta
        for fence_id in self._base:
            if fence_id not in self._shadowed:
                yield fence_id

    def __len__(self) -> int:
        return self._len


@functools.lru_cache(maxsize=16)
def _empty_index(resolution: int, max_margin_m: float) -> FenceIndex:
    return FenceIndex.build([], resolution=resolution, max_margin_m=max_margin_m)


class LayeredIndex:
    """Base minus dead, plus delta: answers like `FenceIndex.build` of its live fences.

    Immutable like its parts; a change makes a new view (see the module docstring). A delta
    fence shadows its older version in the base, so `dead` need only name the fences that are
    gone or disabled, though naming changed ones too is harmless.
    """

    __slots__ = ("_base_dead", "_fences", "_ids", "base", "dead", "delta", "max_margin_m",
                 "resolution", "version")

    def __init__(
        self, base: FenceIndex, delta: FenceIndex | None = None, dead: Iterable[UUID] = (), *,
        version: int | None = None,
    ) -> None:
        if delta is None:
            delta = _empty_index(base.resolution, base.max_margin_m)
        if (delta.resolution, delta.max_margin_m) != (base.resolution, base.max_margin_m):
            raise ValueError("base and delta must share resolution and max_margin_m")
        by_id = base._by_id
        shadowed = frozenset(f for f in (*dead, *delta.fences) if f in by_id)
        self.base, self.delta, self.dead = base, delta, shadowed
        self._base_dead = np.zeros(len(base), dtype=bool)
        self._base_dead[[by_id[f] for f in shadowed]] = True
        # Delta fences are numbered after the base's in the matches' `fence_ids`.
        self._ids: Sequence[UUID] = [*base._ids, *delta._ids] if len(delta) else base._ids
        self._fences = _LiveFences(base.fences, delta.fences, shadowed)
        self.resolution = base.resolution
        self.max_margin_m = base.max_margin_m
        self.version = base.version if version is None else version

    def __len__(self) -> int:
        return len(self._fences)

    @property
    def fences(self) -> Mapping[UUID, IndexedFence]:
        """The live fences by id (read-only; what `geo.presence.advance` takes)."""
        return self._fences

    def fence(self, fence_id: UUID) -> IndexedFence:
        """The live fence with this id; `KeyError` if it is not (unknown, gone or disabled)."""
        return self._fences[fence_id]

    @property
    def entries(self) -> int:
        """Number of stored (cell, fence) pairs, dead ones included."""
        return self.base.entries + self.delta.entries

    @property
    def nbytes(self) -> int:
        """Approximate memory of both layers (see `FenceIndex.nbytes`)."""
        return self.base.nbytes + self.delta.nbytes

    def match(
        self, lat: F64, lng: F64, margin_m: float | F64 | None = None, *,
        cells: Cells | None = None,
    ) -> FenceMatches:
        """`FenceIndex.match` over the live fences: the base's matches of live fences, then
        each ping's delta matches, still grouped by ping."""
        lat = np.asarray(lat, dtype=np.float64)
        lng = np.asarray(lng, dtype=np.float64)
        if cells is None:
            cells = cells_of(lat, lng, self.resolution)
        found = self.base.match(lat, lng, margin_m, cells=cells)
        if self.dead:
            live = ~self._base_dead[found.fence]
            found = FenceMatches(found.ping[live], found.fence[live], found.inside[live],
                                 found.distance_m[live], found.fence_ids, found.pings)
        if not len(self.delta):
            return found
        extra = self.delta.match(lat, lng, margin_m, cells=cells)
        ping = np.concatenate((found.ping, extra.ping))
        # Stable, so each ping keeps its base matches first and the whole stays grouped by ping.
        order = np.argsort(ping, kind="stable")
        fence = np.concatenate((found.fence, extra.fence + np.int32(len(self.base))))
        return FenceMatches(
            ping[order],
            fence[order].astype(np.int32, copy=False),
            np.concatenate((found.inside, extra.inside))[order],
            np.concatenate((found.distance_m, extra.distance_m))[order],
            self._ids,
            found.pings,
        )


@dataclass(frozen=True, slots=True)
class _Cover:
    cells: Cells  # at the coarse resolution
    rho_coarse: float  # no point of a coarse cell's fine descendants is farther from its centre
    rho_fine: float  # the same for a fine cell


def _cover(
    shape: FenceShape, geometry: _Geometry, i: int, coarse: int, fine: int, margin: float,
) -> _Cover:
    """Coarse cells covering fence i and everything within `margin` of it, and cell radii
    (in the fence's local metres, see `_distortion`)."""
    centre = cell_of(shape.center_lat, shape.center_lng, coarse)
    edge, rho_coarse, rho_fine = _radii(centre, fine)
    _, lat_lo, _, lat_hi = shape.area.bounds
    band = (margin + 3.0 * rho_coarse) / _DEG  # the cover reaches no farther north or south
    s = _distortion(shape.center_lat, lat_lo - band, lat_hi + band)
    rho_coarse_local, rho_fine_local = rho_coarse * s, rho_fine * s
    fence_reach = float(geometry.reach[i])
    # A cell with a point within `margin` (local metres) of the fence has its centre within
    # s × (reach + margin) + rho_coarse true metres of the fence's centre.
    reach = s * (fence_reach + margin) + rho_coarse
    if reach <= DISK_COVER_LIMIT_M:
        # Centres of cells k grid steps apart are at least 1.5 edges (= circumradii) apart;
        # the 5 % allow for the cells' size varying across the disk.
        k = math.ceil((reach + edge) / (1.5 * edge / 1.05)) + 1
        return _Cover(disk(centre, k), rho_coarse_local, rho_fine_local)
    local = geometry.local[i]
    if local is None:  # a circle
        local = shapely.Point(0.0, 0.0).buffer(float(geometry.radius[i]), quad_segs=16)
    # 2 % + 2 m covers the buffer's chords and, for circles (tested by haversine), the local
    # frame's distortion over up to 10 km at mid latitudes; the last term, its growth nearer
    # the poles.
    grow = ((margin + rho_coarse_local) * 1.02 + 2.0 + 0.02 * fence_reach
            + (s - 1.0) * (fence_reach + margin))
    area = from_local_metres(shapely.buffer(local, grow), shape.center_lng, shape.center_lat)
    cells = polyfill(_to_h3shape(within_world(area)), coarse)
    return _Cover(cells, rho_coarse_local, rho_fine_local)


def _distortion(lat0: float, lat_lo: float, lat_hi: float) -> float:
    """How much the local frame around latitude `lat0` may stretch or shrink a distance between
    latitudes `lat_lo` and `lat_hi` (≥ 1): its metres east are true at `lat0` only, and scale
    with cos(latitude) elsewhere. Under 1.001 for a fence of a few km below 60°; it grows
    toward the poles, where cell bounds widen by it so that they stay conservative."""
    def cos(lat: float) -> float:
        return math.cos(math.radians(min(90.0, abs(lat))))

    nearest_equator = 0.0 if lat_lo <= 0.0 <= lat_hi else min(abs(lat_lo), abs(lat_hi))
    farthest = max(abs(lat_lo), abs(lat_hi))
    return max(cos(lat0) / max(cos(farthest), 1e-12), cos(nearest_equator) / cos(lat0))


@functools.lru_cache(maxsize=4096)
def _region_radii(region: int, fine: int) -> tuple[float, float, float]:
    centre = int(h3n.cell_to_center_child(region, max(0, fine - 1)))
    edge = circumradius_m(centre)
    # Fine descendants stick out of their coarse ancestor's hexagon: measure how far.
    kids, _ = children(np.array([centre], dtype=np.uint64), fine)
    rho_coarse = max(circumradius_m(centre, int(k)) for k in kids)
    rho_fine = circumradius_m(int(kids[0]))
    return edge, rho_coarse * CELL_RADIUS_SAFETY, rho_fine * CELL_RADIUS_SAFETY


def _radii(coarse_cell: int, fine: int) -> tuple[float, float, float]:
    """(coarse edge, coarse radius, fine radius) for cells around `coarse_cell`, with safety.

    Measured once per resolution-5 region (~250 km²): H3 cell sizes vary smoothly, by far less
    than CELL_RADIUS_SAFETY across such a region.
    """
    region = coarse_cell
    if fine > RADII_REGION_RES:
        region = int(parents_of(np.array([coarse_cell], dtype=np.uint64), RADII_REGION_RES)[0])
    return _region_radii(region, fine)


def _bounds(
    geometry: _Geometry, cells: Cells, fence: I32, rho: F64,
) -> tuple[F64, F64]:
    """Bounds (lo, hi) on the signed distance to each fence of any point of each cell."""
    lat, lng = cell_centres(cells)
    _, d = geometry.signed_distance(fence, lat, lng)
    return d - rho[fence], d + rho[fence]


def _to_h3shape(area: BaseGeometry) -> h3.H3Shape:
    polys = []
    for part in shapely.get_parts(area):
        outer = [(lat, lng) for lng, lat in shapely.get_coordinates(part.exterior)]
        holes = [[(lat, lng) for lng, lat in shapely.get_coordinates(r)] for r in part.interiors]
        polys.append(h3.LatLngPoly(outer, *holes))
    return polys[0] if len(polys) == 1 else h3.LatLngMultiPoly(*polys)
