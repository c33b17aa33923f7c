"""Fences as flat arrays for the compiled kernels: a frame row per fence, one edge table for all.

One rule: shapes are read through shapely's vectorised calls and turned into arrays in one
compiled pass, never a Python loop per fence: a frame row per fence (centre, metres per degree of
longitude there, radius for circles), and for polygons their edges in the fence's local frame,
oriented with the area on their left (see `geo.index_kernels`), each fence's edges side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely

from geo.fences import EARTH_RADIUS_M, FenceShape
from geo.index_kernels import (
    CIRCLE,
    DEG_M,
    E_AX,
    E_AY,
    E_DX,
    E_DY,
    E_INV_LEN2,
    EDGE_WIDTH,
    F_COS_LAT0,
    F_KX,
    F_LAT0,
    F_LAT0_RAD,
    F_LNG0,
    F_LNG0_RAD,
    F_RADIUS,
    FRAME_WIDTH,
    POLYGON,
    circle_distance,
    jit,
    local_xy,
    polygon_test,
    short_way,
)
from geo.index_types import F64, I32, I64, Bools

__all__ = ["DEG_M", "PRECISION_M", "Geometry", "haversine_array"]

# Edges are kept in single precision, in metres from their fence's centre: a polygon's signed
# distances are exact to this within 1.5 km of its centre (0.5 mm at 6 km), where fixes are
# metres apart; containment is decided from the same edges, so it only differs from the exact
# shape's this close to the border.
PRECISION_M = 1e-4


def haversine_array(lat1: F64, lng1: F64, lat2: F64, lng2: F64) -> F64:
    """`geo.fences.haversine_m`, vectorised (same formula, so both agree to the last bit)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lng2 - lng1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: F64 = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return out


class Geometry:
    """Every fence's shape as arrays, and exact signed distances for arrays of (fence, point)."""

    __slots__ = ("bbox", "edge_count", "edges", "first_edge", "frame", "kind", "nxt", "prv",
                 "reach")

    def __init__(self, shapes: Sequence[FenceShape]) -> None:
        n = len(shapes)
        lat0 = np.fromiter((s.center_lat for s in shapes), dtype=np.float64, count=n)
        lng0 = np.fromiter((s.center_lng for s in shapes), dtype=np.float64, count=n)
        radius = np.fromiter((s.radius_m if s.kind == "circle" and s.radius_m is not None
                              else -1.0 for s in shapes), dtype=np.float64, count=n)
        circle = radius >= 0.0
        self.kind = np.where(circle, CIRCLE, POLYGON).astype(np.int8)
        frame = np.zeros((n, FRAME_WIDTH))
        frame[:, F_LAT0], frame[:, F_LNG0] = lat0, lng0
        frame[:, F_KX] = DEG_M * np.cos(np.radians(lat0))
        frame[:, F_LAT0_RAD], frame[:, F_LNG0_RAD] = np.radians(lat0), np.radians(lng0)
        frame[:, F_COS_LAT0] = np.cos(np.radians(lat0))
        frame[:, F_RADIUS] = np.where(circle, radius, 0.0)
        self.frame = frame
        polygons = np.flatnonzero(~circle)
        xy, ring_start, ring_fence, shell = _rings(shapes, polygons)
        (self.edges, self.nxt, self.prv, self.first_edge, self.edge_count, self.bbox,
         self.reach) = _edge_table(xy, ring_start, ring_fence, shell, frame, n)
        self.reach[circle] = radius[circle]
        self.bbox[circle] = np.column_stack((-radius, -radius, radius, radius))[circle]

    @property
    def nbytes(self) -> int:
        return int(self.edges.nbytes + self.nxt.nbytes + self.prv.nbytes
                   + self.frame.nbytes + self.kind.nbytes + self.first_edge.nbytes
                   + self.edge_count.nbytes + self.bbox.nbytes + self.reach.nbytes)

    def signed_distance(self, f: I32 | I64, lat: F64, lng: F64) -> tuple[Bools, F64]:
        """(inside, signed distance in metres, negative inside) of each point to its fence's
        border, reading every edge of the fence."""
        inside = np.zeros(len(f), dtype=bool)
        dist = np.zeros(len(f))
        _signed_distances(np.asarray(f, dtype=np.int64), np.asarray(lat, dtype=np.float64),
                          np.asarray(lng, dtype=np.float64), self.kind, self.frame,
                          self.first_edge, self.edge_count, self.edges, self.nxt, self.prv,
                          inside, dist)
        return inside, dist


def _rings(shapes: Sequence[FenceShape], polygons: I64) -> tuple[F64, I64, I64, Bools]:
    """The coordinates (lng, lat) of every ring of these fences, fence by fence (each part's
    shell, then its holes): (coordinates, where each ring starts (and the end), each ring's
    fence, whether it is a shell). Read without making a geometry per ring: a polygon's
    coordinates are cut into rings where each ring comes back to its first position (rings of
    valid polygons are simple); only multipolygons are split into parts first."""
    areas = np.array([shapes[i].area for i in polygons.tolist()], dtype=object)
    owner = np.arange(len(areas))
    multi = np.flatnonzero(shapely.get_type_id(areas) == shapely.GeometryType.MULTIPOLYGON)
    if len(multi):
        parts, part_of = shapely.get_parts(areas[multi], return_index=True)
        single = np.flatnonzero(np.isin(owner, multi, invert=True))
        owner = np.concatenate((single, multi[part_of]))
        order = np.argsort(owner, kind="stable")
        areas, owner = np.concatenate((areas[single], parts))[order], owner[order]
    xy, point_of = shapely.get_coordinates(areas, return_index=True)
    poly_start = np.searchsorted(point_of, np.arange(len(areas) + 1)).astype(np.int64)
    holes = shapely.get_num_interior_rings(areas).astype(np.int64)
    ring_start, ring_poly, shell, whole = _split_rings(xy, poly_start, holes)
    if not whole:  # a ring that touches its own start: ask shapely where each ring ends
        rings, ring_poly = shapely.get_rings(areas, return_index=True)
        xy, point_of = shapely.get_coordinates(rings, return_index=True)
        ring_start = np.searchsorted(point_of, np.arange(len(rings) + 1)).astype(np.int64)
        shell = np.ones(len(rings), dtype=bool)
        shell[1:] = ring_poly[1:] != ring_poly[:-1]
    return xy, ring_start, polygons[owner[ring_poly]].astype(np.int64), shell


@jit()
def _split_rings(xy: np.ndarray, poly_start: np.ndarray, holes: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, bool]:
    """Where each ring of each polygon starts (and the end), its polygon, whether it is the
    shell; and whether every polygon came out as exactly 1 + holes closed rings."""
    rings = len(holes) + int(np.sum(holes))
    ring_start = np.empty(rings + 1, dtype=np.int64)
    ring_poly = np.empty(rings, dtype=np.int64)
    shell = np.zeros(rings, dtype=np.bool_)
    r = 0
    for p in range(len(holes)):
        at, end = poly_start[p], poly_start[p + 1]
        for k in range(1 + holes[p]):
            if at >= end:
                return ring_start, ring_poly, shell, False
            j = at + 3
            while j < end and not (xy[j, 0] == xy[at, 0] and xy[j, 1] == xy[at, 1]):
                j += 1
            if j >= end:
                return ring_start, ring_poly, shell, False
            ring_start[r], ring_poly[r], shell[r] = at, p, k == 0
            r += 1
            at = j + 1
        if at != end:
            return ring_start, ring_poly, shell, False
    ring_start[rings] = len(xy)
    return ring_start, ring_poly, shell, True


@jit()
def _signed_distances(f: np.ndarray, lat: np.ndarray, lng: np.ndarray, kind: np.ndarray,
                      frame: np.ndarray, first_edge: np.ndarray, edge_count: np.ndarray,
                      edges: np.ndarray, nxt: np.ndarray, prv: np.ndarray,
                      inside: np.ndarray, dist: np.ndarray) -> None:
    for i in range(len(f)):
        k = f[i]
        if kind[k] == CIRCLE:
            d = circle_distance(lat[i], lng[i], frame, k)
            inside[i], dist[i] = d <= 0.0, d
        else:
            x, y = local_xy(lat[i], lng[i], frame, k)
            e0 = first_edge[k]
            inside[i], dist[i] = polygon_test(x, y, e0, e0 + edge_count[k], edges, nxt, prv)


@jit()
def _edge_table(xy: np.ndarray, ring_start: np.ndarray, ring_fence: np.ndarray,
                exterior: np.ndarray, frame: np.ndarray, n: int) -> tuple[
                    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                    np.ndarray]:
    """Every ring in its fence's local frame, zero-length edges dropped, oriented with the area
    on its left; edge e runs from vertex e to vertex nxt[e] of the same ring."""
    m = len(xy)
    edges = np.empty((m, EDGE_WIDTH))
    nxt = np.empty(m, dtype=np.int32)
    prv = np.empty(m, dtype=np.int32)
    first_edge = np.zeros(n, dtype=np.int64)
    edge_count = np.zeros(n, dtype=np.int64)
    bbox = np.zeros((n, 4))
    reach = np.zeros(n)  # farthest vertex from the centre, metres
    seen = np.zeros(n, dtype=np.bool_)
    out = 0
    rx = np.empty(m)
    ry = np.empty(m)
    for r in range(len(ring_start) - 1):
        f = ring_fence[r]
        if not seen[f]:
            seen[f] = True
            first_edge[f] = out
            bbox[f, 0], bbox[f, 1], bbox[f, 2], bbox[f, 3] = np.inf, np.inf, -np.inf, -np.inf
        k = 0
        for p in range(ring_start[r], ring_start[r + 1]):
            x = short_way(xy[p, 0] - frame[f, F_LNG0]) * frame[f, F_KX]
            y = (xy[p, 1] - frame[f, F_LAT0]) * DEG_M
            if k and x == rx[k - 1] and y == ry[k - 1]:
                continue
            rx[k], ry[k] = x, y
            k += 1
        while k > 1 and rx[k - 1] == rx[0] and ry[k - 1] == ry[0]:
            k -= 1  # the closing point
        area = 0.0
        for i in range(k):
            j = i + 1 if i + 1 < k else 0
            area += rx[i] * ry[j] - rx[j] * ry[i]
        flip = (area < 0.0) if exterior[r] else (area > 0.0)
        for i in range(k):
            src = k - 1 - i if flip else i
            edges[out + i, E_AX], edges[out + i, E_AY] = rx[src], ry[src]
            nxt[out + i] = out + (i + 1 if i + 1 < k else 0)
            prv[out + i] = out + (i - 1 if i > 0 else k - 1)
            bbox[f, 0] = min(bbox[f, 0], rx[src])
            bbox[f, 1] = min(bbox[f, 1], ry[src])
            bbox[f, 2] = max(bbox[f, 2], rx[src])
            bbox[f, 3] = max(bbox[f, 3], ry[src])
            reach[f] = max(reach[f], math.hypot(rx[src], ry[src]))
        out += k
        edge_count[f] = out - first_edge[f]
    # Stored in single precision (metres from the fence's centre: within 0.1 mm up to 1.5 km
    # away), each edge's direction and length taken from the stored vertices.
    table = np.empty((out, EDGE_WIDTH), dtype=np.float32)
    for e in range(out):
        table[e, E_AX], table[e, E_AY] = edges[e, E_AX], edges[e, E_AY]
    for e in range(out):
        table[e, E_DX] = table[nxt[e], E_AX] - table[e, E_AX]
        table[e, E_DY] = table[nxt[e], E_AY] - table[e, E_AY]
        len2 = float(table[e, E_DX]) ** 2 + float(table[e, E_DY]) ** 2
        table[e, E_INV_LEN2] = 1.0 / len2 if len2 > 0.0 else 0.0
    return table, nxt[:out].copy(), prv[:out].copy(), first_edge, edge_count, bbox, reach
