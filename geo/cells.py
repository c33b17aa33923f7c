"""H3 cells for pings and fences: computing them in bulk and looking them up in bulk.

One rule: cells are H3 64-bit integers in `uint64` arrays, and every operation here works on a
whole batch at once (the hot path never loops in Python over cells, except the one unavoidable
call per ping into h3's C library in `cells_of`).
"""

from __future__ import annotations

import math
from itertools import chain, repeat

import h3
import numpy as np
from h3.api import numpy_int as h3n
from numpy.typing import NDArray

from geo.fences import haversine_m

Cells = NDArray[np.uint64]

MAX_RESOLUTION = 15
_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF << 52)
# Fibonacci hashing: a multiply by 2^64/φ spreads H3 indexes (whose low bits are mostly the
# 0b111 padding of unused digits) over the whole table.
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


# The per-ping call is the hot path's largest cost: h3's compiled function itself is ~25 % faster
# than the public wrapper (an identity conversion in a Python frame) around it. h3 is pinned <5.
_latlng_to_cell = getattr(getattr(h3, "_cy", None), "latlng_to_cell", h3n.latlng_to_cell)
# The same for cell centres, which the index's build asks for by the million.
_cell_to_latlng = getattr(getattr(h3, "_cy", None), "cell_to_latlng", h3n.cell_to_latlng)
# Base cells of the 12 pentagons: a cell is a pentagon when its base cell is one of these and
# every digit down to its resolution is 0.
_PENTAGON_BASES = np.array(
    sorted(int(h3n.get_base_cell_number(int(p))) for p in h3n.get_pentagons(0)), dtype=np.uint64)


def cells_of(lat: NDArray[np.float64], lng: NDArray[np.float64], resolution: int) -> Cells:
    """The H3 cell at `resolution` of each (lat, lng) point."""
    to_cell = _latlng_to_cell
    return np.fromiter(
        map(to_cell, lat.tolist(), lng.tolist(), repeat(resolution)),
        dtype=np.uint64, count=len(lat),
    )


def resolutions_of(cells: Cells) -> NDArray[np.uint64]:
    """The H3 resolution of each cell."""
    return (cells & _RES_MASK) >> _RES_SHIFT


def cell_of(lat: float, lng: float, resolution: int) -> int:
    """The H3 cell at `resolution` of one point."""
    return int(h3n.latlng_to_cell(lat, lng, resolution))


def parents_of(cells: Cells, resolution: int) -> Cells:
    """The ancestor at `resolution` of each cell (all cells finer than or at `resolution`).

    Pure bit arithmetic on the H3 layout: set the resolution field, and fill the digits below the
    parent's resolution with 7 (unused), exactly as `h3.cell_to_parent` does.
    """
    unused_digits = np.uint64((1 << (3 * (MAX_RESOLUTION - resolution))) - 1)
    return (cells & ~_RES_MASK) | (np.uint64(resolution) << _RES_SHIFT) | unused_digits


def circumradius_m(cell: int, of: int | None = None) -> float:
    """Largest great-circle distance from the centre of `cell` to a vertex of `of` (itself)."""
    lat0, lng0 = h3n.cell_to_latlng(cell)
    vertices = h3n.cell_to_boundary(cell if of is None else of)
    return max(haversine_m(lat0, lng0, lat, lng) for lat, lng in vertices)


def is_pentagon(cells: Cells) -> NDArray[np.bool_]:
    """Whether each cell is one of the 12 pentagons of its resolution (bit arithmetic)."""
    base = (cells >> np.uint64(45)) & np.uint64(0x7F)
    below = np.uint64(45) - np.uint64(3) * resolutions_of(cells)  # lowest bit of its digits
    digits = (cells >> below) & ((np.uint64(1) << (np.uint64(45) - below)) - np.uint64(1))
    out: NDArray[np.bool_] = np.isin(base, _PENTAGON_BASES) & (digits == 0)
    return out


def children(cells: Cells, resolution: int) -> tuple[Cells, NDArray[np.int64]]:
    """The children at `resolution` of each cell, concatenated, and how many each cell has."""
    if not len(cells):
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    flat = np.asarray(h3n.uncompact_cells(cells, resolution), dtype=np.uint64)
    # A hexagon has 7^k descendants k levels down; a pentagon 1 pentagon and 5 hexagons a level.
    k = resolution - resolutions_of(cells).astype(np.int64)
    hexagons = 7**k
    counts = np.where(is_pentagon(cells), 1 + 5 * (hexagons - 1) // 6, hexagons)
    return flat, counts


def cell_centres(cells: Cells) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(lat, lng) arrays of the cells' centres."""
    flat = np.fromiter(
        chain.from_iterable(map(_cell_to_latlng, cells.tolist())),
        dtype=np.float64, count=2 * len(cells),
    )
    return flat[0::2].copy(), flat[1::2].copy()


def compact(cells: Cells) -> Cells:
    """`h3.compact_cells` on a uint64 array (cells all at one resolution)."""
    if len(cells) < 7:
        return cells
    return np.asarray(h3n.compact_cells(cells), dtype=np.uint64)


def disk(cell: int, k: int) -> Cells:
    """All cells within `k` grid steps of `cell`."""
    return np.asarray(h3n.grid_disk(cell, k), dtype=np.uint64)


def polyfill(shape: h3.H3Shape, resolution: int) -> Cells:
    """Cells whose centre lies inside `shape` (a `LatLngPoly` or `LatLngMultiPoly`)."""
    return np.asarray(h3n.h3shape_to_cells(shape, resolution), dtype=np.uint64)


class CellTable:
    """An immutable hash table from H3 cells to int32 values, queried in bulk.

    A Python dict of millions of int keys costs ~100 bytes per key; this costs ~20 and answers a
    whole batch with a fixed handful of numpy operations: keys are grouped by hash bucket (CSR
    layout, about one key per bucket), and a query compares itself with every key of its bucket
    in one vectorised gather, so there is no probe loop whose length depends on bad luck.
    """

    __slots__ = ("_bits", "_keys", "_starts", "_values")

    def __init__(self, keys: Cells, values: NDArray[np.int32]) -> None:
        ordered = np.sort(keys)
        if len(ordered) > 1 and not (ordered[1:] != ordered[:-1]).all():
            raise ValueError("CellTable keys must be unique")
        self._bits = max(4, math.ceil(math.log2(max(1, len(keys)))))
        buckets = self._bucket(keys)
        order = np.argsort(buckets, kind="stable")
        self._keys = keys[order]
        self._values = values[order].astype(np.int32)
        counts = np.bincount(buckets.astype(np.int64), minlength=1 << self._bits)
        self._starts = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=self._starts[1:])

    def _bucket(self, cells: Cells) -> Cells:
        return (cells * _HASH_MULTIPLIER) >> np.uint64(64 - self._bits)

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._values.nbytes + self._starts.nbytes)

    def lookup(self, cells: Cells) -> NDArray[np.int32]:
        """The value of each cell, or -1 where the cell is absent."""
        buckets = self._bucket(cells).astype(np.int64)
        first = self._starts[buckets]
        counts = self._starts[buckets + 1] - first
        query = np.repeat(np.arange(len(cells)), counts)
        ends = np.cumsum(counts)
        slots = np.arange(len(query)) + np.repeat(first - (ends - counts), counts)
        same = self._keys[slots] == cells[query]
        out = np.full(len(cells), -1, dtype=np.int32)
        out[query[same]] = self._values[slots[same]]
        return out
