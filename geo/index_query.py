"""The geofence index and its query: for a batch of pings, the fences each is in or near.

One rule: geometry is only computed where a cell's stored distance bounds cannot decide the
answer, vectorised over the whole batch (see `geo.index` for the whole design).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from uuid import UUID

import numpy as np

from geo.cells import Cells, cells_of, parents_of, resolutions_of
from geo.index_build import Tables, build_tables
from geo.index_geometry import ragged
from geo.index_types import (
    DEFAULT_MAX_MARGIN_M,
    DEFAULT_RESOLUTION,
    F64,
    FenceMatches,
    IndexedFence,
)


class FenceIndex:
    """An immutable index of the enabled fences; see the module docstring."""

    __slots__ = (
        "_by_id", "_edge_count", "_edge_start", "_entry_fence", "_entry_hi",
        "_entry_lo", "_fence_map", "_fences", "_geometry", "_ids", "_levels", "_starts",
        "_table", "max_margin_m", "resolution", "version",
    )

    def __init__(
        self, fences: list[IndexedFence], tables: Tables, *, resolution: int,
        max_margin_m: float, version: int,
    ) -> None:
        """Assemble a built index; call `FenceIndex.build` instead."""
        self._fences = fences
        self._ids = [f.fence_id for f in fences]
        self._by_id = {fid: i for i, fid in enumerate(self._ids)}
        self._fence_map = MappingProxyType({f.fence_id: f for f in fences})
        self._geometry = tables.geometry
        self._table = tables.table
        self._starts = tables.starts
        self._entry_fence = tables.entry_fence
        self._entry_lo = tables.entry_lo
        self._entry_hi = tables.entry_hi
        self._edge_count = tables.edge_count
        self._edge_start = tables.edge_start
        self._levels = tables.levels
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
        tables = build_tables([f.shape for f in kept], resolution, max_margin_m)
        return cls(kept, tables, resolution=resolution, max_margin_m=float(max_margin_m),
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
    def query_resolution(self) -> int:
        """The resolution a ping's cell is looked up at: one finer than `resolution`, whose
        cells along fence borders spare most exact tests (see `geo.index_build`)."""
        return self._levels[0]

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
            + self._geometry.nbytes + self._edge_count.nbytes + self._edge_start.nbytes
        )

    def match(
        self, lat: F64, lng: F64, margin_m: float | F64 | None = None, *,
        cells: Cells | None = None,
    ) -> FenceMatches:
        """Every fence each ping is inside of, or outside of by at most `margin_m` metres.

        `margin_m` is one margin for the batch or one per ping (at most `max_margin_m`; default
        that). Distances are exact within the margin and clamped to -margin deeper inside.
        `cells` may pass the pings' `cells_of(lat, lng, index.query_resolution)` when the
        caller has them already (cells at another resolution are computed again).
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
        finest = self._levels[0]
        if cells is None or (len(cells) and int(resolutions_of(cells[:1])[0]) != finest):
            cells = cells_of(lat, lng, self.query_resolution)
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
            fe, ee = fence[exact], entry[exact]
            # Polygons read only the edges their cell's entry keeps (see geo.index_geometry).
            ee = ee[self._geometry.kind[fe] != 0]
            count = self._edge_count[ee].astype(np.int64)
            ids = ragged(self._edge_start[ee].astype(np.int64), count)
            ins, d = self._geometry.signed_distance(fe, lat[pe], lng[pe], (count, ids))
            inside[exact] = ins
            dist[exact] = d
        keep = dist <= margin
        np.maximum(dist, -margin, out=dist)
        return FenceMatches(
            ping[keep], fence[keep], inside[keep], dist[keep], self._ids, n,
        )
