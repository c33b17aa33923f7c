"""Exact signed distances from points to fence borders, for whole arrays of (fence, point) pairs.

One rule: every fence's shape is turned once into flat arrays (a frame row per fence, one edge
table for every polygon), so a batch of pairs is answered by a few numpy passes over (pair, edge)
elements, never a Python loop per pair or per fence.

Circles are tested by haversine distance to their centre. A polygon's signed distance is the
distance to its nearest edge, in the fence's local metric frame, signed by which side of that
nearest edge the point lies on: rings are oriented with the area on their left (shells
counter-clockwise, holes clockwise), so a point nearest to an edge's inside is on its left; a point
nearest to a vertex is inside when it is left of both edges there (a convex vertex) or of either
(a reflex one). No ray has to cross the whole polygon, so a pair need not read every edge: the
index hands each cell's pairs only the edges that can be nearest to a point of that cell
(`candidate_edges`), a handful instead of every edge of the fence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from geo.fences import EARTH_RADIUS_M, FenceShape, short_way
from geo.index_types import F64, I32, I64, Bools

Ids = NDArray[np.signedinteger[Any]]  # edge ids, int32 or int64

# (pair, edge) elements per numpy pass: bounds the kernel's temporary memory to ~40 MB.
KERNEL_CHUNK = 400_000

_CIRCLE, _POLYGON = 0, 1
DEG_M = math.radians(1.0) * EARTH_RADIUS_M  # metres per degree of latitude


def haversine_array(lat1: F64, lng1: F64, lat2: F64, lng2: F64) -> F64:
    """`geo.fences.haversine_m`, vectorised (same formula, so both agree to the last bit)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lng2 - lng1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: F64 = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return out


def ragged(starts: I64, counts: I64) -> I64:
    """The concatenated ranges starts[i] .. starts[i] + counts[i] (a CSR gather)."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    out: I64 = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - counts), counts)
    return out


class Geometry:
    """Exact signed distances to every fence's border, for arrays of (fence, point) pairs."""

    def __init__(self, shapes: Sequence[FenceShape]) -> None:
        n = len(shapes)
        self.lng0 = np.array([s.center_lng for s in shapes], dtype=np.float64)
        self.lat0 = np.array([s.center_lat for s in shapes], dtype=np.float64)
        self.kx = DEG_M * np.cos(np.radians(self.lat0))
        self.ky = np.full(n, DEG_M)
        circle = np.array([s.kind == "circle" and s.radius_m is not None for s in shapes],
                          dtype=bool)
        self.kind = np.where(circle, _CIRCLE, _POLYGON).astype(np.int8)
        self.radius = np.array([s.radius_m if c else 0.0 for s, c in zip(shapes, circle,
                                                                        strict=True)])
        self.local: list[BaseGeometry | None] = [None] * n
        polygons = np.flatnonzero(~circle)
        # Every polygon into its local frame at once (`geo.fences.to_local_metres`, vectorised).
        areas = np.array([shapes[i].area for i in polygons.tolist()], dtype=object)
        xy, owner = shapely.get_coordinates(areas, return_index=True)
        fence = polygons[owner]
        xy = np.column_stack((short_way(xy[:, 0] - self.lng0[fence]) * self.kx[fence],
                              (xy[:, 1] - self.lat0[fence]) * self.ky[fence]))
        for i, local in zip(polygons.tolist(), shapely.set_coordinates(areas.copy(), xy).tolist(),
                            strict=True):
            self.local[i] = local
        self._edges(polygons)
        lat0_rad = np.radians(self.lat0)
        # Everything the exact tests read about a fence, in one 64-byte row: one cache line per
        # (ping, fence) pair instead of one per array.
        self.frame = np.ascontiguousarray(np.column_stack((
            self.lat0, self.lng0, self.kx, self.ky, lat0_rad, np.radians(self.lng0),
            np.cos(lat0_rad), self.radius,
        )))

    def _edges(self, polygons: I64) -> None:
        """The edge table of every polygon: all in one pass over their coordinates."""
        n = len(self.kind)
        self.reach = self.radius.copy()  # farthest border point from the centre, metres
        self.first_edge = np.zeros(n, dtype=np.int64)
        self.edge_count = np.zeros(n, dtype=np.int64)
        locals_ = np.array([self.local[i] for i in polygons.tolist()], dtype=object)
        oriented = shapely.orient_polygons(locals_, exterior_cw=False)
        parts, part_of = shapely.get_parts(oriented, return_index=True)
        rings, ring_of = shapely.get_rings(parts, return_index=True)
        xy, point_of = shapely.get_coordinates(rings, return_index=True)
        ring_fence = polygons[part_of[ring_of]] if len(polygons) else np.zeros(0, np.int64)
        if len(xy):
            np.maximum.at(self.reach, ring_fence[point_of], np.hypot(xy[:, 0], xy[:, 1]))
        # An edge joins consecutive points of one ring (rings are closed: last = first);
        # zero-length edges (repeated points) are left out.
        joined = point_of[1:] == point_of[:-1]
        a, b = xy[:-1][joined], xy[1:][joined]
        d = b - a
        len2 = d[:, 0] ** 2 + d[:, 1] ** 2
        real = len2 > 0
        a, d, len2 = a[real], d[real], len2[real]
        ring = point_of[:-1][joined][real]
        fence = ring_fence[ring]
        m = len(a)
        # Each edge's neighbours around its ring (cyclic).
        idx = np.arange(m)
        new_ring = np.ones(m, dtype=bool)
        new_ring[1:] = ring[1:] != ring[:-1]
        ring_first = np.flatnonzero(new_ring)
        ring_len = np.diff(np.append(ring_first, m))
        first = np.repeat(ring_first, ring_len)
        last = first + np.repeat(ring_len, ring_len) - 1
        prev = np.where(idx == first, last, idx - 1)
        nxt = np.where(idx == last, first, idx + 1)
        # (ax, ay, dx, dy, 1/len²): what every (pair, edge) element reads, a contiguous array each.
        self.edge_columns = (np.ascontiguousarray(a[:, 0]), np.ascontiguousarray(a[:, 1]),
                             np.ascontiguousarray(d[:, 0]), np.ascontiguousarray(d[:, 1]),
                             1.0 / len2)
        # What the nearest edge's vote reads: the edges before and after it (for their
        # directions), and whether its start vertex turns left (convex; straight counts as convex).
        self.prev = prev.astype(np.int32)
        self.next = nxt.astype(np.int32)
        self.convex_start = d[prev, 0] * d[:, 1] - d[prev, 1] * d[:, 0] >= 0
        if m:
            starts = np.flatnonzero(np.append(True, fence[1:] != fence[:-1]))
            self.first_edge[fence[starts]] = starts
            self.edge_count[fence[starts]] = np.diff(np.append(starts, m))

    def drop_shapes(self) -> None:
        """Forget the polygons' local-frame shapely geometries once the cells are built (queries
        read only the arrays)."""
        self.local = [None] * len(self.local)

    @property
    def nbytes(self) -> int:
        return int(sum(c.nbytes for c in self.edge_columns) + self.prev.nbytes
                   + self.next.nbytes + self.convex_start.nbytes
                   + self.frame.nbytes)

    def all_edges(self, f: I32) -> tuple[I64, I64]:
        """(counts, edge ids) of every edge of each pair's fence (CSR; circles have none)."""
        counts = self.edge_count[f]
        return counts, ragged(self.first_edge[f], counts)

    def local_xy(self, f: I32, lat: F64, lng: F64) -> tuple[F64, F64]:
        """Points in their fence's local metric frame."""
        fr = self.frame[f]
        return short_way(lng - fr[:, 1]) * fr[:, 2], (lat - fr[:, 0]) * fr[:, 3]

    def signed_distance(
        self, f: I32, lat: F64, lng: F64, edges: tuple[I64, Ids] | None = None,
    ) -> tuple[Bools, F64]:
        """(inside, signed distance in metres) of each point to its fence's border.

        `edges` may give, per polygon pair, the edges among which its nearest is (CSR counts and
        ids, as `candidate_edges` keeps them); by default every edge of the fence.
        """
        inside = np.zeros(len(f), dtype=bool)
        dist = np.zeros(len(f))
        kind = self.kind[f]
        circ = np.flatnonzero(kind == _CIRCLE)
        if len(circ):
            fr = self.frame[f[circ]]
            p = np.radians(lat[circ])
            h = np.sin((p - fr[:, 4]) * 0.5) ** 2 + np.cos(p) * fr[:, 6] * (
                np.sin((np.radians(lng[circ]) - fr[:, 5]) * 0.5) ** 2)
            centre = (2 * EARTH_RADIUS_M) * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
            inside[circ] = centre <= fr[:, 7]
            dist[circ] = centre - fr[:, 7]
        poly = np.flatnonzero(kind == _POLYGON)
        if len(poly):
            if edges is None:
                counts, ids = self.all_edges(f[poly])
            else:
                counts, ids = edges
            x, y = self.local_xy(f[poly], lat[poly], lng[poly])
            ins, d, _ = self.nearest_edge(x, y, counts, ids)
            inside[poly] = ins
            dist[poly] = d
        return inside, dist

    def nearest_edge(
        self, x: F64, y: F64, counts: I64, ids: Ids, keep_within: F64 | None = None,
    ) -> tuple[Bools, F64, I64]:
        """(inside, signed distance, kept) of local points to the nearest of their edges.

        Pair i reads edges ids[sum(counts[:i]) : sum(counts[:i + 1])] (at least one). With
        `keep_within`, `kept` is the element positions (into `ids`) of the edges within
        |distance| + keep_within[i] of each point, in order; otherwise empty.
        """
        n = len(x)
        inside = np.zeros(n, dtype=bool)
        dist = np.zeros(n)
        kept_parts = []
        ends = np.cumsum(counts)
        # Chunks of whole pairs, about KERNEL_CHUNK elements each.
        cuts = np.searchsorted(ends, np.arange(KERNEL_CHUNK, int(ends[-1]) if n else 0,
                                               KERNEL_CHUNK), side="right")
        bounds = np.unique(np.concatenate(([0], cuts, [n])))
        for p0, p1 in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            if p0 == p1:
                continue
            e0 = int(ends[p0 - 1]) if p0 else 0
            c = counts[p0:p1]
            e = ids[e0:int(ends[p1 - 1])]
            pair = np.repeat(np.arange(p1 - p0), c)
            # One contiguous gather per edge field, then in-place arithmetic: twice as fast as
            # reading strided columns of gathered rows.
            ax, ay, dx, dy, inv_len2 = (column.take(e) for column in self.edge_columns)
            px, py = x[p0:p1], y[p0:p1]
            rx = px.take(pair)
            rx -= ax
            ry = py.take(pair)
            ry -= ay
            t = rx * dx
            t += ry * dy
            t *= inv_len2
            np.clip(t, 0.0, 1.0, out=t)
            dx *= t
            dy *= t
            rx -= dx
            ry -= dy
            rx *= rx
            ry *= ry
            rx += ry
            d2 = rx
            seg = np.concatenate(([0], np.cumsum(c)[:-1]))
            best = np.minimum.reduceat(d2, seg)
            near = np.flatnonzero(d2 == best.take(pair))
            en, pn = e[near], pair[near]
            vote = self._vote(en, px[pn] - ax[near], py[pn] - ay[near])
            ins = np.zeros(p1 - p0, dtype=bool)
            ins[pair[near[vote]]] = True
            d = np.sqrt(best)
            inside[p0:p1] = ins
            dist[p0:p1] = np.where(ins, -d, d)
            if keep_within is not None:
                reach = d + keep_within[p0:p1]
                kept_parts.append(e0 + np.flatnonzero(d2 <= (reach * reach)[pair]))
        kept = np.concatenate(kept_parts) if kept_parts else np.zeros(0, dtype=np.int64)
        return inside, dist, kept

    def _vote(self, e: Ids, rx: F64, ry: F64) -> Bools:
        """Whether a point is inside, from its nearest edge e (r = point - edge start)."""
        _, _, dx, dy, inv_len2 = (column.take(e) for column in self.edge_columns)
        t = (rx * dx + ry * dy) * inv_len2
        left = dx * ry - dy * rx > 0
        at_start, at_end = t <= 0.0, t >= 1.0
        out: Bools = left.copy()
        s = np.flatnonzero(at_start)
        if len(s):
            pe = self.prev[e[s]]
            before = self.edge_columns[2][pe] * ry[s] - self.edge_columns[3][pe] * rx[s] > 0
            out[s] = np.where(self.convex_start[e[s]], before & left[s], before | left[s])
        s = np.flatnonzero(at_end)
        if len(s):
            vx, vy = rx[s] - dx[s], ry[s] - dy[s]  # from the end vertex
            ne = self.next[e[s]]
            here = dx[s] * vy - dy[s] * vx > 0
            after = self.edge_columns[2][ne] * vy - self.edge_columns[3][ne] * vx > 0
            out[s] = np.where(self.convex_start[ne], here & after, here | after)
        return out
