"""Editing the geofence index without rebuilding it: a big base, a small delta, dead fences.

One rule: a `LayeredIndex` answers exactly like a fresh build of its live fences, because a
fence's cells, bounds and exact tests depend on that fence alone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from uuid import UUID

import numpy as np

from geo.index_query import FenceIndex
from geo.index_types import F64, FenceMatches, IndexedFence


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
def _empty_index(cell_m: float, max_margin_m: float) -> FenceIndex:
    return FenceIndex.build([], cell_m=cell_m, max_margin_m=max_margin_m)


class LayeredIndex:
    """Base minus dead, plus delta: answers like `FenceIndex.build` of its live fences.

    Immutable like its parts; a change makes a new view (see the module docstring). A delta
    fence shadows its older version in the base, so `dead` need only name the fences that are
    gone or disabled, though naming changed ones too is harmless.
    """

    __slots__ = ("_base_dead", "_fences", "_ids", "base", "cell_m", "dead", "delta",
                 "max_margin_m", "version")

    def __init__(
        self, base: FenceIndex, delta: FenceIndex | None = None, dead: Iterable[UUID] = (), *,
        version: int | None = None,
    ) -> None:
        if delta is None:
            delta = _empty_index(base.cell_m, base.max_margin_m)
        if (delta.cell_m, delta.max_margin_m) != (base.cell_m, base.max_margin_m):
            raise ValueError("base and delta must share cell_m and max_margin_m")
        by_id = base._by_id
        shadowed = frozenset(f for f in (*dead, *delta.fences) if f in by_id)
        self.base, self.delta, self.dead = base, delta, shadowed
        self._base_dead = np.zeros(len(base), dtype=bool)
        self._base_dead[[by_id[f] for f in shadowed]] = True
        # Delta fences are numbered after the base's in the matches' `fence_ids`.
        self._ids: Sequence[UUID] = [*base._ids, *delta._ids] if len(delta) else base._ids
        self._fences = _LiveFences(base.fences, delta.fences, shadowed)
        self.cell_m = base.cell_m
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

    def match(self, lat: F64, lng: F64, margin_m: float | F64 | None = None) -> FenceMatches:
        """`FenceIndex.match` over the live fences: the base's matches of live fences, then
        each ping's delta matches, still grouped by ping."""
        lat = np.asarray(lat, dtype=np.float64)
        lng = np.asarray(lng, dtype=np.float64)
        found = self.base.match(lat, lng, margin_m)
        if self.dead:
            live = ~self._base_dead[found.fence]
            found = FenceMatches(found.ping[live], found.fence[live], found.inside[live],
                                 found.distance_m[live], found.fence_ids, found.pings)
        if not len(self.delta):
            return found
        extra = self.delta.match(lat, lng, margin_m)
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
