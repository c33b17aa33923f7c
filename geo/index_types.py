"""The geofence index's values: the fences it takes and the matches it gives (see `geo.index`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import msgspec
import numpy as np
from numpy.typing import NDArray

from geo.fences import FenceShape

F64 = NDArray[np.float64]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]

# The grid's cell size, metres: smaller cells decide more pings without geometry and read shorter
# runs of edges, but store more (cell, fence) entries and take longer to build (see `make bench`).
DEFAULT_CELL_M = 40.0
# The widest margin a query may ask for. Presence needs margins up to its enter cap and its exit
# threshold for ordinary fixes (see geo.presence.MATCH_MARGIN_M); a wider margin costs memory
# (a ring of cells of that width around every fence) and build time.
DEFAULT_MAX_MARGIN_M = 100.0


class IndexedFence(msgspec.Struct, frozen=True):
    fence_id: UUID
    store_id: UUID
    shape: FenceShape
    dwell_seconds: int
    tags: tuple[str, ...]
    enabled: bool


class FenceHit(msgspec.Struct, frozen=True, gc=False):
    """A fence near one ping: `distance_m` is signed (negative inside), clamped to ±margin.

    Not tracked by the garbage collector (`gc=False`: it holds no containers, so it can be in
    no reference cycle): a batch makes thousands, and tracked ones trigger collections that walk
    every live object of the process."""

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
