"""H3 cells for pings: computing them in bulk (stored with each ping, and the heat map's buckets).

One rule: cells are H3 64-bit integers in `uint64` arrays, and every operation here works on a
whole batch at once (the one unavoidable call per ping into h3's C library is in `cells_of`).
Fence matching does not use H3 (see `geo.index`).
"""

from __future__ import annotations

from itertools import repeat

import h3
import numpy as np
from h3.api import numpy_int as h3n
from numpy.typing import NDArray

Cells = NDArray[np.uint64]


# The per-ping call is the hot path's largest cost: h3's compiled function itself is ~25 % faster
# than the public wrapper (an identity conversion in a Python frame) around it. h3 is pinned <5.
_latlng_to_cell = getattr(getattr(h3, "_cy", None), "latlng_to_cell", h3n.latlng_to_cell)


def cells_of(lat: NDArray[np.float64], lng: NDArray[np.float64], resolution: int) -> Cells:
    """The H3 cell at `resolution` of each (lat, lng) point."""
    to_cell = _latlng_to_cell
    return np.fromiter(
        map(to_cell, lat.tolist(), lng.tolist(), repeat(resolution)),
        dtype=np.uint64, count=len(lat),
    )

