"""The geofence index and its query: for a batch of pings, the fences each is in or near.

One rule: a whole batch is answered by one compiled loop (`_match`): per ping, one hash lookup of
its grid cell, then per entry of that cell its stored bounds, and exact geometry only where they
cannot decide (see `geo.index` for the whole design).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from uuid import UUID

import numpy as np
from numpy.typing import NDArray

from geo.index_build import COUNT_BITS, Tables, build_tables, slot_of
from geo.index_geometry import Geometry
from geo.index_kernels import (
    CIRCLE,
    DEG_M,
    cell_key,
    circle_distance,
    jit,
    local_xy,
    polygon_test,
)
from geo.index_types import (
    DEFAULT_CELL_M,
    DEFAULT_MAX_MARGIN_M,
    F64,
    FenceMatches,
    IndexedFence,
)

# Room for this many matches per ping before the batch is run again with exactly enough.
MATCHES_PER_PING = 16


class FenceIndex:
    """An immutable index of the enabled fences; see the module docstring."""

    __slots__ = ("_bits", "_by_id", "_fence_map", "_fences", "_ids", "_tables", "cell_m",
                 "max_margin_m", "version")

    def __init__(
        self, fences: list[IndexedFence], tables: Tables, *, cell_m: float,
        max_margin_m: float, version: int,
    ) -> None:
        """Assemble a built index; call `FenceIndex.build` instead."""
        self._fences = fences
        self._ids = [f.fence_id for f in fences]
        self._by_id = {fid: i for i, fid in enumerate(self._ids)}
        if len(self._by_id) != len(fences):
            raise ValueError("fence ids must be unique")
        self._fence_map = _FenceMap(fences, self._by_id)
        self._tables = tables
        self._bits = len(tables.slots).bit_length() - 1
        self.cell_m = cell_m
        self.max_margin_m = max_margin_m
        self.version = version

    @classmethod
    def build(
        cls,
        fences: Iterable[IndexedFence],
        *,
        cell_m: float = DEFAULT_CELL_M,
        max_margin_m: float = DEFAULT_MAX_MARGIN_M,
        version: int = 0,
    ) -> FenceIndex:
        """Index the enabled fences; disabled ones are left out."""
        if not 1.0 <= cell_m <= 10_000.0:
            raise ValueError("cell_m must be within 1..10000")
        if not max_margin_m >= 0.0:
            raise ValueError("max_margin_m must be >= 0")
        kept = _nearby_together([f for f in fences if f.enabled])
        tables = build_tables(Geometry([f.shape for f in kept]), float(cell_m),
                              float(max_margin_m))
        return cls(kept, tables, cell_m=float(cell_m), max_margin_m=float(max_margin_m),
                   version=version)

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
    def geometry(self) -> Geometry:
        """The fences as arrays (exact signed distances; see `geo.index_geometry`)."""
        return self._tables.geometry

    @property
    def entries(self) -> int:
        """Number of stored (cell, fence) pairs."""
        return len(self._tables.entries)

    @property
    def nbytes(self) -> int:
        """Memory of the cell tables and the fences' arrays (shapely objects excluded)."""
        return self._tables.nbytes

    def match(self, lat: F64, lng: F64, margin_m: float | F64 | None = None) -> FenceMatches:
        """Every fence each ping is inside of, or outside of by at most `margin_m` metres.

        `margin_m` is one margin for the batch or one per ping (at most `max_margin_m`; default
        that). Distances are exact within the margin and clamped to -margin deeper inside.
        """
        lat = np.ascontiguousarray(lat, dtype=np.float64)
        lng = np.ascontiguousarray(lng, dtype=np.float64)
        n = len(lat)
        per_ping = np.ascontiguousarray(np.broadcast_to(
            np.asarray(self.max_margin_m if margin_m is None else margin_m, dtype=np.float64),
            (n,),
        ))
        if n and not (per_ping.min() >= 0.0 and per_ping.max() <= self.max_margin_m):
            raise ValueError(f"margin_m must be within 0..{self.max_margin_m:g}")
        t, g = self._tables, self._tables.geometry
        capacity = MATCHES_PER_PING * n
        while True:
            ping = np.empty(capacity, np.int64)
            fence = np.empty(capacity, np.int32)
            inside = np.empty(capacity, np.bool_)
            dist = np.empty(capacity, np.float64)
            found = _match(lat, lng, per_ping, self.cell_m / DEG_M, t.slots, self._bits,
                           t.bounds, t.refs, g.kind, g.frame, g.edges, g.nxt, g.prv, ping, fence,
                           inside, dist)
            if found <= capacity:
                break
            capacity = found
        return FenceMatches(ping[:found], fence[:found], inside[:found], dist[:found], self._ids,
                            n)


class _FenceMap(Mapping[UUID, IndexedFence]):
    """The indexed fences by id, read-only, over the index's own list and positions."""

    __slots__ = ("_by_id", "_fences")

    def __init__(self, fences: list[IndexedFence], by_id: dict[UUID, int]) -> None:
        self._fences, self._by_id = fences, by_id

    def __getitem__(self, fence_id: UUID) -> IndexedFence:
        return self._fences[self._by_id[fence_id]]

    def __contains__(self, fence_id: object) -> bool:
        return fence_id in self._by_id

    def __iter__(self) -> Iterator[UUID]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)


def _nearby_together(fences: list[IndexedFence]) -> list[IndexedFence]:
    """The fences in the order of a Z-curve over their centres (~150 m steps): a ping's
    fences are neighbours, and so then are their frames and edges in memory."""
    if len(fences) < 2:
        return fences
    lat = np.fromiter((f.shape.center_lat for f in fences), np.float64, len(fences))
    lng = np.fromiter((f.shape.center_lng for f in fences), np.float64, len(fences))
    y = ((lat + 90.0) / 180.0 * 65535.0).astype(np.uint64)  # 16 bits: ~300 m of latitude
    x = ((lng + 180.0) / 360.0 * 65535.0).astype(np.uint64)
    order = np.argsort(_spread(x) | (_spread(y) << np.uint64(1)), kind="stable")
    return [fences[i] for i in order.tolist()]


def _spread(v: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """The bits of 16-bit values spaced out to every other bit (for a Morton code)."""
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x33333333)
    return (v | (v << np.uint64(1))) & np.uint64(0x55555555)


@jit()
def _match(lat: np.ndarray, lng: np.ndarray, margin: np.ndarray, dlat: float,
           slots: np.ndarray, bits: int, bounds: np.ndarray, refs: np.ndarray, kind: np.ndarray,
           frame: np.ndarray, edges: np.ndarray, nxt: np.ndarray, prv: np.ndarray,
           out_ping: np.ndarray, out_fence: np.ndarray, out_inside: np.ndarray,
           out_dist: np.ndarray) -> int:
    """Write every (ping, fence) match, grouped by ping, while there is room; returns how
    many there are (more than the room: run again with that much).

    A ping's cell holds every fence within the widest margin of some point of it, in the order
    of their lower bounds: the ping reads them up to the first beyond its own margin."""
    if not len(refs):
        return 0
    room = len(out_ping)
    found = 0
    for i in range(len(lat)):
        m = margin[i]
        start, end = _lookup(cell_key(lat[i], lng[i], dlat), slots, bits)
        for j in range(start, end):
            if bounds[j, 0] > m:
                break
            f = refs[j, 0]
            if bounds[j, 1] <= -m:
                ins, d = True, -m
            elif kind[f] == CIRCLE:
                d = circle_distance(lat[i], lng[i], frame, f)
                ins = d <= 0.0
            else:
                x, y = local_xy(lat[i], lng[i], frame, f)
                e0 = refs[j, 1]
                ins, d = polygon_test(x, y, e0, e0 + refs[j, 2], edges, nxt, prv)
            if d > m:
                continue
            if found < room:
                out_ping[found] = i
                out_fence[found] = f
                out_inside[found] = ins
                out_dist[found] = max(d, -m)
            found += 1
    return found


@jit(inline=True)
def _lookup(k: int, slots: np.ndarray, bits: int) -> tuple[int, int]:
    """The entries (start, end) of the cell with key k; none if it is not stored."""
    mask = len(slots) - 1
    s = slot_of(k, bits)
    while slots[s, 0] != -1 and slots[s, 0] != k:
        s = (s + 1) & mask
    if slots[s, 0] == -1:
        return 0, 0
    start = slots[s, 1] >> COUNT_BITS
    return start, start + (slots[s, 1] & ((1 << COUNT_BITS) - 1))
