"""Exact signed distances from points to fence borders, for whole arrays of (fence, point) pairs.

One rule: every fence's shape is turned once into flat arrays (a frame row per fence, padded edge
tables per polygon size), so a batch of pairs is answered by a few numpy passes, never a Python
loop per pair: circles by haversine distance to their centre, polygons by point-to-segment
distances and ray-crossing parity in the fence's local metric frame, and polygons with very many
edges by shapely, one call per fence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from geo.fences import EARTH_RADIUS_M, FenceShape, short_way, to_local_metres
from geo.index_types import F64, I32, Bools

# Polygons with more edges than this are tested by shapely (one call per fence per batch) rather
# than by the all-pairs numpy kernel, whose cost grows with the edge count.
VECTOR_EDGE_LIMIT = 256
# (pair, edge) evaluations per numpy pass: bounds the kernel's temporary memory to ~30 MB.
KERNEL_CHUNK = 250_000
# Polygons are padded to the next of these edge counts (the last one is VECTOR_EDGE_LIMIT).
EDGE_WIDTHS = (4, 8, 16, 32, 64, 128, 256)

_CIRCLE, _POLYGON, _BIG_POLYGON = 0, 1, 2
DEG_M = math.radians(1.0) * EARTH_RADIUS_M  # metres per degree of latitude


def haversine_array(lat1: F64, lng1: F64, lat2: F64, lng2: F64) -> F64:
    """`geo.fences.haversine_m`, vectorised (same formula, so both agree to the last bit)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lng2 - lng1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: F64 = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return out



class Geometry:
    """Exact signed distances to every fence's border, for arrays of (fence, point) pairs."""

    def __init__(self, shapes: Sequence[FenceShape]) -> None:
        n = len(shapes)
        self.kind = np.zeros(n, dtype=np.int8)
        self.lng0 = np.array([s.center_lng for s in shapes], dtype=np.float64)
        self.lat0 = np.array([s.center_lat for s in shapes], dtype=np.float64)
        self.kx = DEG_M * np.cos(np.radians(self.lat0))
        self.ky = np.full(n, DEG_M)
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

