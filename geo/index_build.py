"""Building the fence index: which grid cells reach each fence, with distance bounds.

One rule: a (cell, fence) entry is stored with bounds lo <= d <= hi on the signed distance of
any point of the cell to the fence's border, conservative everywhere, and with the run of the
fence's edges among which any point of the cell finds its nearest (see `geo.index` for how
queries use them). Everything runs in compiled loops (`geo.index_kernels`): a fence's candidate
cells are the rows and columns of its bounding box grown by the widest margin, each kept only if
the distance at its centre minus its half-diagonal is within that margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geo.index_geometry import Geometry
from geo.index_kernels import (
    CIRCLE,
    DEG_M,
    F_KX,
    F_LAT0,
    F_LNG0,
    F_RADIUS,
    ROW_OFFSET,
    circle_distance,
    jit,
    local_xy,
    polygon_test,
    row_columns,
    row_width,
)

# Circles are measured on the sphere, cells in degrees: their half-diagonals are grown by this
# share (and every bound by a centimetre) so that rounding never makes a bound optimistic.
SPHERE_SAFETY = 1.001
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True, slots=True)
class Tables:
    """A built index's arrays: a hash table from cell keys to rows, and per row its entries."""

    geometry: Geometry
    slot_key: NDArray[np.int64]  # open addressing, -1 where empty
    slot_row: NDArray[np.int32]
    starts: NDArray[np.int64]  # row r's entries are starts[r]:starts[r + 1]
    entry_fence: NDArray[np.int32]
    entry_lo: NDArray[np.float32]
    entry_hi: NDArray[np.float32]
    # The edges an exact test of entry i reads: edge_start[i] .. edge_start[i] + edge_count[i].
    edge_start: NDArray[np.int32]
    edge_count: NDArray[np.int32]

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (
            self.slot_key, self.slot_row, self.starts, self.entry_fence, self.entry_lo,
            self.entry_hi, self.edge_start, self.edge_count)) + self.geometry.nbytes)


def build_tables(geometry: Geometry, cell_m: float, max_margin_m: float) -> Tables:
    """The cell tables of these fences (numbered as in `geometry`)."""
    dlat = cell_m / DEG_M
    args = (geometry.kind, geometry.frame, geometry.bbox, geometry.first_edge,
            geometry.edge_count, geometry.ex, geometry.ey, geometry.nxt, geometry.prv, dlat,
            cell_m, max_margin_m)
    capacity = _cover(*args, np.zeros(0, np.int64), np.zeros(0, np.int32),
                      np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                      np.zeros(0, np.int32), False)
    key = np.empty(capacity, np.int64)
    fence = np.empty(capacity, np.int32)
    lo = np.empty(capacity, np.float32)
    hi = np.empty(capacity, np.float32)
    estart = np.empty(capacity, np.int32)
    ecount = np.empty(capacity, np.int32)
    used = _cover(*args, key, fence, lo, hi, estart, ecount, True)
    bits = max(4, math.ceil(math.log2(max(1, used))) + 1)
    slot_key, slot_row, starts, order = _group(key[:used], bits)
    return Tables(geometry, slot_key, slot_row, starts, fence[order], lo[order], hi[order],
                  estart[order], ecount[order])


@jit()
def _cover(kind: np.ndarray, frame: np.ndarray, bbox: np.ndarray, first_edge: np.ndarray,
           edge_count: np.ndarray, ex: np.ndarray, ey: np.ndarray, nxt: np.ndarray,
           prv: np.ndarray, dlat: float, cell_m: float, margin: float, key: np.ndarray,
           fence: np.ndarray, lo: np.ndarray, hi: np.ndarray, estart: np.ndarray,
           ecount: np.ndarray, write: bool) -> int:
    """Without `write`: how many candidate cells there are in all. With it: the entries of the
    cells within reach, written from 0; returns how many."""
    out = 0
    for f in range(len(kind)):
        lat0, lng0, kx = frame[f, F_LAT0], frame[f, F_LNG0], frame[f, F_KX]
        circle = kind[f] == CIRCLE
        e0, e1 = first_edge[f], first_edge[f] + edge_count[f]
        # Rows whose cells may hold a point within the margin: the bounding box grown by the
        # margin and a cell's whole diagonal (any wider than half of it is only slack).
        grow = margin + 2.0 * cell_m
        row_lo = math.floor((lat0 + (bbox[f, 1] - grow) / DEG_M) / dlat) + ROW_OFFSET
        row_hi = math.floor((lat0 + (bbox[f, 3] + grow) / DEG_M) / dlat) + ROW_OFFSET
        for row in range(row_lo, row_hi + 1):
            width = row_width(row, dlat)
            columns = row_columns(width)
            south = (row - ROW_OFFSET) * dlat
            north = south + dlat
            # The row's latitude nearest to the equator (where its cells are widest) and the
            # farthest from it (where a circle spreads over the most longitude).
            near_eq = 0.0 if south <= 0.0 <= north else min(abs(south), abs(north))
            far_eq = min(max(abs(south), abs(north)), 89.99)
            wide_m = width * DEG_M * math.cos(math.radians(near_eq))
            grow_x = margin + 2.0 * max(cell_m, width * kx, wide_m)
            if circle:
                stretch = math.cos(math.radians(lat0)) / math.cos(math.radians(far_eq))
                x0 = -(frame[f, F_RADIUS] + grow_x) * stretch * 1.01 - 1.0
                x1 = -x0
            else:
                x0, x1 = bbox[f, 0] - grow_x, bbox[f, 2] + grow_x
            c_lo = math.floor((lng0 + x0 / kx + 180.0) / width)
            c_hi = math.floor((lng0 + x1 / kx + 180.0) / width)
            if c_hi - c_lo + 1 >= columns:
                c_lo, c_hi = 0, columns - 1
            if not write:
                out += c_hi - c_lo + 1
                continue
            lat_c = (row - ROW_OFFSET + 0.5) * dlat
            if circle:
                half = 0.5 * math.hypot(wide_m, cell_m) * SPHERE_SAFETY + 0.01
            else:
                half = 0.5 * math.hypot(width * kx, cell_m) * SPHERE_SAFETY + 0.01
            for c in range(c_lo, c_hi + 1):
                col = c % columns
                lng_c = (col + 0.5) * width - 180.0
                if circle:
                    d = circle_distance(lat_c, lng_c, frame, f)
                    x = y = 0.0
                else:
                    x, y = local_xy(lat_c, lng_c, frame, f)
                    d = polygon_test(x, y, e0, e1, ex, ey, nxt, prv)[1]
                if d - half > margin:
                    continue
                key[out] = (row << 32) | col
                fence[out] = f
                if d + half <= -margin:
                    # Deep: inside by at least the widest margin, whatever the point.
                    lo[out], hi[out] = -np.inf, -margin
                    estart[out], ecount[out] = 0, 0
                else:
                    lo[out] = np.float32(d - half - 0.01)
                    hi[out] = np.float32(d + half + 0.01)
                    if circle:
                        estart[out], ecount[out] = 0, 0
                    else:
                        # A point of the cell is within `half` of its centre, so its nearest
                        # edge is within |d| + half of that point, hence within |d| + 2 half
                        # of the centre: the run spans every such edge.
                        reach = abs(d) + 2.0 * half
                        reach2 = reach * reach
                        first, last = e1, e0
                        for e in range(e0, e1):
                            ax, ay = ex[e], ey[e]
                            dx, dy = ex[nxt[e]] - ax, ey[nxt[e]] - ay
                            rx, ry = x - ax, y - ay
                            t = min(max((rx * dx + ry * dy) / (dx * dx + dy * dy), 0.0), 1.0)
                            rx -= dx * t
                            ry -= dy * t
                            if rx * rx + ry * ry <= reach2:
                                first = min(first, e)
                                last = max(last, e)
                        estart[out], ecount[out] = first, last - first + 1
                out += 1
    return out


@jit(inline=True)
def slot_of(k: int, bits: int) -> np.int64:
    return np.int64((np.uint64(k) * HASH_MULTIPLIER) >> np.uint64(64 - bits))


@jit()
def _group(key: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A hash table (open addressing, at most half full) from each distinct key to a row, the
    rows' entry ranges, and the order that puts entries row by row."""
    mask = (1 << bits) - 1
    slot_key = np.full(1 << bits, -1, dtype=np.int64)
    slot_row = np.full(1 << bits, -1, dtype=np.int32)
    row_of = np.empty(len(key), dtype=np.int32)
    rows = 0
    for i in range(len(key)):
        k = key[i]
        s = slot_of(k, bits)
        while slot_key[s] != -1 and slot_key[s] != k:
            s = (s + 1) & mask
        if slot_key[s] == -1:
            slot_key[s] = k
            slot_row[s] = rows
            rows += 1
        row_of[i] = slot_row[s]
    starts = np.zeros(rows + 1, dtype=np.int64)
    for i in range(len(key)):
        starts[row_of[i] + 1] += 1
    for r in range(rows):
        starts[r + 1] += starts[r]
    fill = starts[:-1].copy()
    order = np.empty(len(key), dtype=np.int64)
    for i in range(len(key)):
        r = row_of[i]
        order[fill[r]] = i
        fill[r] += 1
    # The final table, sized for the distinct keys (at most half full).
    tight = 4
    while (1 << tight) < 2 * rows:
        tight += 1
    if tight < bits:
        mask = (1 << tight) - 1
        small_key = np.full(1 << tight, -1, dtype=np.int64)
        small_row = np.full(1 << tight, -1, dtype=np.int32)
        for s0 in range(len(slot_key)):
            k = slot_key[s0]
            if k == -1:
                continue
            s = slot_of(k, tight)
            while small_key[s] != -1:
                s = (s + 1) & mask
            small_key[s] = k
            small_row[s] = slot_row[s0]
        return small_key, small_row, starts, order
    return slot_key, slot_row, starts, order
