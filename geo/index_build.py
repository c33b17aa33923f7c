"""Building the fence index: which grid cells reach each fence, with distance bounds.

One rule: a (cell, fence) entry is stored with bounds lo <= d <= hi on the signed distance of
any point of the cell to the fence's border, conservative everywhere, and with the run of the
fence's edges among which any point of the cell finds its nearest (see `geo.index` for how
queries use them). A cell's entries are kept in the order of their `lo`, so that a query stops at
the first one beyond its margin. Everything runs in compiled loops (`geo.index_kernels`): a
fence's candidate cells are the rows and columns of its bounding box grown by the widest margin,
each kept only if the distance at its centre minus its half-diagonal is within that margin.
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
    grid_key,
    jit,
    local_xy,
    polygon_scan,
    row_columns,
    row_width,
)

# Circles are measured on the sphere, cells in degrees: their half-diagonals are grown by this
# share (and every bound by a centimetre) so that rounding never makes a bound optimistic.
SPHERE_SAFETY = 1.001
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
# A polygon's cells farther than this from its border (every fix accurate to 25 m or better asks
# for 25 m: geo.presence.match_margins) are kept with a lower bound from its reach alone and its
# whole run of edges: only the wide margins of inaccurate fixes read them, and measuring them
# would be most of the build.
NEAR_M = 25.0
BUILD_PART = 8192  # fences whose entries are written at a time
COUNT_BITS = 24  # a slot's entry count; the rest of its 63 bits, where its entries start
ENTRY_WIDTH = 5  # an entry's int32 columns: lo, hi (float32 bits), fence, edges' start, count


@dataclass(frozen=True, slots=True)
class Tables:
    """A built index's arrays: a hash table from cell keys to runs of entries, and the entries.

    Laid out for a query's few cache misses: a slot holds its key beside its entries' place
    (start << COUNT_BITS | count), a cell's entries lie side by side, and an entry is one
    20-byte row: its bounds (read for every entry) and what an exact test reads.
    """

    geometry: Geometry
    slots: NDArray[np.int64]  # (capacity, 2): key (-1 where empty), start << COUNT_BITS | count
    # (entries, 5): lo, hi (float32, as their bits), the fence, and the edges an exact test
    # reads: start, count.
    entries: NDArray[np.int32]

    @property
    def bounds(self) -> NDArray[np.float32]:
        """(entries, 2): lo, hi (a view)."""
        return _bounds_of(self.entries)

    @property
    def refs(self) -> NDArray[np.int32]:
        """(entries, 3): the fence, its edges' start and count (a view)."""
        return self.entries[:, 2:]

    @property
    def nbytes(self) -> int:
        return int(self.slots.nbytes + self.entries.nbytes + self.geometry.nbytes)

    def cells(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """(key, first entry, entry count) of every cell (for checks)."""
        used = self.slots[:, 0] != -1
        where = self.slots[used, 1]
        return self.slots[used, 0], where >> COUNT_BITS, where & ((1 << COUNT_BITS) - 1)


def _bounds_of(entries: NDArray[np.int32]) -> NDArray[np.float32]:
    bounds: NDArray[np.float32] = entries.view(np.float32)[:, :2]
    return bounds


def build_tables(geometry: Geometry, cell_m: float, max_margin_m: float) -> Tables:
    """The cell tables of these fences (numbered as in `geometry`)."""
    # Room for every candidate cell would be 2-3 times what is kept: the entries are written
    # in parts, each with room for its own candidates.
    keys, parts = [np.zeros(0, np.int64)], [np.zeros((0, ENTRY_WIDTH), np.int32)]
    args = (geometry.kind, geometry.frame, geometry.bbox, geometry.reach, geometry.first_edge,
            geometry.edge_count, geometry.edges, geometry.nxt, geometry.prv, cell_m / DEG_M,
            cell_m, min(NEAR_M, max_margin_m), max_margin_m)
    for f0 in range(0, len(geometry.kind), BUILD_PART):
        part = (f0, min(len(geometry.kind), f0 + BUILD_PART))
        none = np.zeros((0, ENTRY_WIDTH), np.int32)
        room = _cover(*args, *part, np.zeros(0, np.int64), _bounds_of(none), none[:, 2:], False)
        key = np.empty(room, np.int64)
        entries = np.empty((room, ENTRY_WIDTH), np.int32)
        used = _cover(*args, *part, key, _bounds_of(entries), entries[:, 2:], True)
        keys.append(key[:used])
        parts.append(entries[:used])
    entries = np.concatenate(parts)
    grouped = np.empty_like(entries)
    slots = _group(np.concatenate(keys), _bounds_of(entries), entries[:, 2:],
                   _bounds_of(grouped), grouped[:, 2:])
    return Tables(geometry, slots, grouped)


@jit()
def _cover(kind: np.ndarray, frame: np.ndarray, bbox: np.ndarray, reach: np.ndarray,
           first_edge: np.ndarray,
           edge_count: np.ndarray, edges: np.ndarray, nxt: np.ndarray,
           prv: np.ndarray, dlat: float, cell_m: float, near: float, margin: float,
           f0: int, f1: int, key: np.ndarray, bounds: np.ndarray, refs: np.ndarray,
           write: bool) -> int:
    """Of fences f0 .. f1 - 1: without `write`, how many candidate cells there are in all; with
    it, the entries of the cells with a point within `margin` of the border (or inside), written
    from 0; returns how many. A polygon's cells farther than `near` from it are bounded by its
    reach alone (see NEAR_M)."""
    out = 0
    longest = np.max(edge_count) if len(edge_count) else 0
    d2 = np.empty(max(1, longest))  # each edge's squared distance from the cell's centre
    for f in range(f0, f1):
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
            lat_c = (row - ROW_OFFSET + 0.5) * dlat
            if circle:
                half = 0.5 * math.hypot(wide_m, cell_m) * SPHERE_SAFETY + 0.01
            else:
                half = 0.5 * math.hypot(width * kx, cell_m) * SPHERE_SAFETY + 0.01
            disk = reach[f] + half + margin + 1.0
            if circle:
                # Its cells' centres within the radius, the margin and a cell of its centre, on
                # the sphere: east-west, the local frame stretches that by up to `stretch`.
                stretch = math.cos(math.radians(lat0)) / math.cos(math.radians(far_eq))
                grow_x = margin + 2.0 * max(cell_m, width * kx, wide_m)
                x1 = (frame[f, F_RADIUS] + grow_x) * stretch * 1.01 + 1.0
                x0 = -x1
            else:
                # A kept cell's centre is within reach + half + margin of the fence's centre in
                # the local frame (no border point is farther than `reach`): the row's cells
                # outside that disk are not even looked at.
                y = (lat_c - lat0) * DEG_M
                if abs(y) > disk:
                    continue
                span = math.sqrt(disk * disk - y * y)
                x0 = max(bbox[f, 0] - margin - half, -span)
                x1 = min(bbox[f, 2] + margin + half, span)
            # The longitudes to look at, cut in two where they cross ±180: columns count from
            # -180 on either side (the last one of a row is narrower than the others).
            west, east = lng0 + x0 / kx, lng0 + x1 / kx
            if east - west >= 360.0:
                west, east, west2, east2 = -180.0, 180.0, 0.0, -1.0
            elif west < -180.0:
                west, east, west2, east2 = west + 360.0, 180.0, -180.0, east
            elif east >= 180.0:
                west, east, west2, east2 = west, 180.0, -180.0, east - 360.0
            else:
                west2, east2 = 0.0, -1.0
            col0 = max(0, math.floor((west + 180.0) / width))
            count = max(0, min(columns - 1, math.floor((east + 180.0) / width)) - col0 + 1)
            col2 = max(0, math.floor((west2 + 180.0) / width))
            count2 = 0 if east2 < west2 else max(
                0, min(columns - 1, math.floor((east2 + 180.0) / width)) - col2 + 1)
            if not write:
                out += count + count2
                continue
            for c in range(count + count2):
                col = col0 + c if c < count else col2 + c - count
                lng_c = (col + 0.5) * width - 180.0
                if circle:
                    d = circle_distance(lat_c, lng_c, frame, f)
                    x = y = 0.0
                else:
                    x, y = local_xy(lat_c, lng_c, frame, f)
                    if x * x + y * y > disk * disk:  # a cell the row's interval rounded in
                        continue
                    beyond = math.sqrt(x * x + y * y) - reach[f] - half - 0.01
                    if beyond > margin:
                        continue
                    if beyond > near:
                        # Every point of the cell is farther than `near`, by at least `beyond`:
                        # that bound is enough for the wide margins that read these cells,
                        # which then read all the fence's edges (no geometry at build time).
                        key[out] = grid_key(row, col)
                        refs[out, 0], refs[out, 1], refs[out, 2] = f, e0, e1 - e0
                        bounds[out, 0], bounds[out, 1] = beyond, np.inf
                        out += 1
                        continue
                    d = polygon_scan(x, y, e0, e1, edges, nxt, prv, d2)[1]
                if d - half > margin:
                    continue
                key[out] = grid_key(row, col)
                refs[out, 0] = f
                if d + half + 0.01 <= -margin:
                    # Deep: inside by at least the widest margin, whatever the point.
                    bounds[out, 0], bounds[out, 1] = -np.inf, -margin
                    refs[out, 1], refs[out, 2] = 0, 0
                else:
                    bounds[out, 0] = d - half - 0.01
                    bounds[out, 1] = d + half + 0.01
                    if circle:
                        refs[out, 1], refs[out, 2] = 0, 0
                    else:
                        # A point of the cell is within `half` of its centre, so its nearest
                        # edge is within |d| + half of that point, hence within |d| + 2 half
                        # of the centre: the run spans every such edge.
                        within = abs(d) + 2.0 * half
                        within2 = within * within
                        first, last = e1, e0
                        for e in range(e0, e1):
                            if d2[e - e0] <= within2:
                                first = min(first, e)
                                last = max(last, e)
                        refs[out, 1], refs[out, 2] = first, last - first + 1
                out += 1
    return out


@jit(inline=True)
def slot_of(k: int, bits: int) -> np.int64:
    return np.int64((np.uint64(k) * HASH_MULTIPLIER) >> np.uint64(64 - bits))


@jit()
def _rehash(keys: np.ndarray, values: np.ndarray,
            bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The same (key, value) table with 2^bits slots."""
    mask = (1 << bits) - 1
    out_keys = np.full(1 << bits, -1, dtype=np.int64)
    out_values = np.empty(1 << bits, dtype=np.int64)
    for s0 in range(len(keys)):
        k = keys[s0]
        if k == -1:
            continue
        s = slot_of(k, bits)
        while out_keys[s] != -1:
            s = (s + 1) & mask
        out_keys[s] = k
        out_values[s] = values[s0]
    return out_keys, out_values


@jit()
def _group(key: np.ndarray, bounds: np.ndarray, refs: np.ndarray, out_bounds: np.ndarray,
           out_refs: np.ndarray) -> np.ndarray:
    """The hash table (open addressing, at most half full) of the distinct keys; the entries put
    cell by cell into `out_bounds` and `out_refs`, each cell's by their lo."""
    n = len(key)
    # A first table numbering the cells as they come, doubled whenever it is half full
    # (neighbouring fences share cells: there are several entries to a cell).
    bits = 4
    while (1 << bits) < n // 2:
        bits += 1
    first_key = np.full(1 << bits, -1, dtype=np.int64)
    first_cell = np.empty(1 << bits, dtype=np.int64)
    cell_of = np.empty(n, dtype=np.int64)
    cells = 0
    for i in range(n):
        if 2 * (cells + 1) > (1 << bits):
            bits += 1
            first_key, first_cell = _rehash(first_key, first_cell, bits)
        mask = (1 << bits) - 1
        k = key[i]
        s = slot_of(k, bits)
        while first_key[s] != -1 and first_key[s] != k:
            s = (s + 1) & mask
        if first_key[s] == -1:
            first_key[s] = k
            first_cell[s] = cells
            cells += 1
        cell_of[i] = first_cell[s]
    starts = np.zeros(cells + 1, dtype=np.int64)
    for i in range(n):
        starts[cell_of[i] + 1] += 1
    for c in range(cells):
        starts[c + 1] += starts[c]
    fill = starts[:-1].copy()
    for i in range(n):
        j = fill[cell_of[i]]
        fill[cell_of[i]] += 1
        out_bounds[j, 0], out_bounds[j, 1] = bounds[i, 0], bounds[i, 1]
        out_refs[j, 0], out_refs[j, 1], out_refs[j, 2] = refs[i, 0], refs[i, 1], refs[i, 2]
    for c in range(cells):  # each cell's entries by their lo (an insertion sort: a few each)
        for j in range(starts[c] + 1, starts[c + 1]):
            lo, hi = out_bounds[j, 0], out_bounds[j, 1]
            f, e0, count = out_refs[j, 0], out_refs[j, 1], out_refs[j, 2]
            k = j
            while k > starts[c] and out_bounds[k - 1, 0] > lo:
                out_bounds[k, 0], out_bounds[k, 1] = out_bounds[k - 1, 0], out_bounds[k - 1, 1]
                out_refs[k, 0], out_refs[k, 1] = out_refs[k - 1, 0], out_refs[k - 1, 1]
                out_refs[k, 2] = out_refs[k - 1, 2]
                k -= 1
            out_bounds[k, 0], out_bounds[k, 1] = lo, hi
            out_refs[k, 0], out_refs[k, 1], out_refs[k, 2] = f, e0, count
    # The final table, sized for the distinct keys.
    tight = 4
    while (1 << tight) < 2 * cells:
        tight += 1
    mask = (1 << tight) - 1
    slots = np.full((1 << tight, 2), -1, dtype=np.int64)
    for s0 in range(len(first_key)):
        k = first_key[s0]
        if k == -1:
            continue
        c = first_cell[s0]
        count = starts[c + 1] - starts[c]
        if count >= (1 << COUNT_BITS):
            raise ValueError("too many fences overlap one cell")
        s = slot_of(k, tight)
        while slots[s, 0] != -1:
            s = (s + 1) & mask
        slots[s, 0] = k
        slots[s, 1] = (starts[c] << COUNT_BITS) | count
    return slots
