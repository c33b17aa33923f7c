"""The fence index's compiled kernels: the grid, and exact signed distances to a fence's border.

One rule: everything a ping or a cell asks of the geometry is a tight loop over flat arrays,
compiled once by numba (and cached on disk), so that no step costs a Python call per ping, per
cell or per fence. `geo.index_build` and `geo.index_query` drive these loops.

The grid. Rows are `cell_m` metres of latitude; each row is cut into columns about `cell_m`
metres wide at the row's middle latitude (so a column spans more degrees of longitude toward the
poles). A cell is the rectangle [row·Δlat, (row+1)·Δlat] × [col·w - 180, (col+1)·w - 180]; in a
fence's local equirectangular frame (metres east and north of its centre, as the exact tests
use) that is a rectangle again, so no point of a cell is farther than half its diagonal from its
centre, and a signed distance measured at the centre bounds it over the whole cell.

Signed distances. Circles: the haversine distance to their centre minus the radius (as
`geo.fences.haversine_m`). Polygons: the distance to the nearest edge in the local frame, signed
by the side of that nearest edge the point lies on (rings are oriented with the area on their
left: shells counter-clockwise, holes clockwise); a point nearest to a vertex is inside when it is
left of both edges there (a convex vertex) or of either (a reflex one). No ray has to cross the
polygon, so a test need not read every edge: a cell keeps the run of edges that can be nearest to
any of its points.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba as nb
import numpy as np

from geo.fences import EARTH_RADIUS_M

# numba's on-disk cache notices a change to a compiled function's own file only, not to the
# constants and inlined functions it takes from the index's other files: the cache is kept in a
# directory named after all of their sources, so that any change compiles afresh (and an index
# saved by other sources is not mapped: geo.index_share).
_SOURCES = ("index_kernels.py", "index_geometry.py", "index_build.py", "index_query.py")
SOURCES_DIGEST = hashlib.sha256(b"".join((Path(__file__).parent / name).read_bytes()
                                         for name in _SOURCES)).hexdigest()[:16]
nb.config.CACHE_DIR = str(Path(os.environ.get("NUMBA_CACHE_DIR")
                               or Path(__file__).parent / "__pycache__")
                          / f"index-{SOURCES_DIGEST}")

CIRCLE, POLYGON = 0, 1
DEG_M = math.radians(1.0) * EARTH_RADIUS_M  # metres per degree of latitude
ROW_OFFSET = 1 << 29  # rows are offset so that every key is positive
MIN_COS = 1e-6  # a row's width stops growing this close to a pole (fences keep clear of them)
# Frame columns: what a test reads of its fence, one 64-byte row.
F_LAT0, F_LNG0, F_KX, F_LAT0_RAD, F_LNG0_RAD, F_COS_LAT0, F_RADIUS = range(7)
FRAME_WIDTH = 8
# Edge columns: its start vertex, its direction (to the next vertex of its ring) and 1/length²,
# side by side in one 20-byte row (single precision, in the fence's local frame), so that the
# edges a test reads in turn are read in one stream.
E_AX, E_AY, E_DX, E_DY, E_INV_LEN2 = range(5)
EDGE_WIDTH = 5

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def jit(*, inline: bool = False) -> Callable[[_Fn], _Fn]:
    """numba's `njit` for these kernels (cached on disk, no bounds checks), typed for mypy;
    `inline` functions are compiled into their callers."""
    def wrap(fn: _Fn) -> _Fn:
        return cast(_Fn, nb.njit(cache=True, nogil=True, error_model="numpy",
                                 boundscheck=False, inline="always" if inline else "never")(fn))
    return wrap


@jit(inline=True)
def short_way(dlng: float) -> float:
    """`geo.fences.short_way` of one difference."""
    return float(dlng - 360.0 * np.rint(dlng / 360.0))


@jit(inline=True)
def row_width(row: int, dlat: float) -> float:
    """Degrees of longitude of one column of this row."""
    mid = (row - ROW_OFFSET + 0.5) * dlat
    return dlat / max(math.cos(math.radians(mid)), MIN_COS)


@jit(inline=True)
def row_columns(width: float) -> int:
    return max(1, math.ceil(360.0 / width))


@jit(inline=True)
def grid_key(row: int, col: int) -> int:
    return (row << 32) | col


@jit(inline=True)
def cell_key(lat: float, lng: float, dlat: float) -> int:
    """The key of the grid cell (of rows `dlat` degrees high) holding (lat, lng)."""
    row = math.floor(lat / dlat) + ROW_OFFSET
    width = row_width(row, dlat)
    col = math.floor((lng + 180.0) / width) % row_columns(width)
    return grid_key(row, col)


@jit(inline=True)
def circle_distance(lat: float, lng: float, frame: np.ndarray, f: int) -> float:
    """Signed distance (metres, negative inside) of a point to circle f's border."""
    p = math.radians(lat)
    s1 = math.sin((p - frame[f, F_LAT0_RAD]) * 0.5)
    s2 = math.sin((math.radians(lng) - frame[f, F_LNG0_RAD]) * 0.5)
    h = s1 * s1 + math.cos(p) * frame[f, F_COS_LAT0] * (s2 * s2)
    centre = (2.0 * EARTH_RADIUS_M) * math.asin(math.sqrt(min(h, 1.0)))
    return float(centre - frame[f, F_RADIUS])


@jit(inline=True)
def _edge_d2(x: float, y: float, e: int, edges: np.ndarray) -> float:
    """Squared distance of a local point to edge e."""
    rx, ry = x - edges[e, E_AX], y - edges[e, E_AY]
    dx, dy = edges[e, E_DX], edges[e, E_DY]
    t = min(max((rx * dx + ry * dy) * edges[e, E_INV_LEN2], 0.0), 1.0)
    rx -= dx * t
    ry -= dy * t
    return float(rx * rx + ry * ry)


@jit(inline=True)
def _turns_left(e: int, edges: np.ndarray, rx: float, ry: float) -> bool:
    """Whether the vector (rx, ry) is strictly left of edge e's direction."""
    return bool(edges[e, E_DX] * ry - edges[e, E_DY] * rx > 0.0)


@jit(inline=True)
def _convex_start(e: int, edges: np.ndarray, prv: np.ndarray) -> bool:
    """Whether the ring turns left (or goes straight) at edge e's start vertex."""
    p = prv[e]
    return bool(edges[p, E_DX] * edges[e, E_DY] - edges[p, E_DY] * edges[e, E_DX] >= 0.0)


@jit()
def _vote(e: int, x: float, y: float, edges: np.ndarray, nxt: np.ndarray,
          prv: np.ndarray) -> bool:
    """Whether a point is inside, from its nearest edge e."""
    dx, dy = edges[e, E_DX], edges[e, E_DY]
    rx, ry = x - edges[e, E_AX], y - edges[e, E_AY]
    t = (rx * dx + ry * dy) * edges[e, E_INV_LEN2]
    left = bool(dx * ry - dy * rx > 0.0)
    if t <= 0.0:
        before = _turns_left(prv[e], edges, rx, ry)
        if _convex_start(e, edges, prv):
            return before and left
        return before or left
    if t >= 1.0:
        vx, vy = rx - dx, ry - dy  # from the end vertex
        n = nxt[e]
        here = bool(dx * vy - dy * vx > 0.0)
        after = _turns_left(n, edges, vx, vy)
        if _convex_start(n, edges, prv):
            return here and after
        return here or after
    return left


@jit()
def polygon_test(x: float, y: float, e0: int, e1: int, edges: np.ndarray, nxt: np.ndarray,
                 prv: np.ndarray) -> tuple[bool, float]:
    """(inside, signed distance) of a local point to the nearest of edges e0 .. e1 - 1 (at
    least one), signed by that edge's vote. Where two edges are equally near, the point is
    nearest to their shared vertex, and both votes read the same two edges."""
    best = np.inf
    nearest = e0
    for e in range(e0, e1):
        d2 = _edge_d2(x, y, e, edges)
        if d2 < best:
            best = d2
            nearest = e
    inside = _vote(nearest, x, y, edges, nxt, prv)
    d = math.sqrt(best)
    return inside, (-d if inside else d)


@jit()
def polygon_scan(x: float, y: float, e0: int, e1: int, edges: np.ndarray, nxt: np.ndarray,
                 prv: np.ndarray, d2: np.ndarray) -> tuple[bool, float]:
    """`polygon_test`, keeping each edge's squared distance in d2[e - e0] (for the build)."""
    best = np.inf
    nearest = e0
    for e in range(e0, e1):
        v = _edge_d2(x, y, e, edges)
        d2[e - e0] = v
        if v < best:
            best = v
            nearest = e
    inside = _vote(nearest, x, y, edges, nxt, prv)
    d = math.sqrt(best)
    return inside, (-d if inside else d)


@jit(inline=True)
def local_xy(lat: float, lng: float, frame: np.ndarray, f: int) -> tuple[float, float]:
    """A point in fence f's local frame (metres east and north of its centre)."""
    return (short_way(lng - frame[f, F_LNG0]) * frame[f, F_KX],
            (lat - frame[f, F_LAT0]) * DEG_M)



def cell_bounds(key: int, dlat: float) -> tuple[float, float, float, float]:
    """(south, west, north, east) in degrees of the grid cell with this key, of rows `dlat`
    degrees high (for checks)."""
    row, col = (key >> 32) & ((1 << 30) - 1), key & 0xFFFF_FFFF
    width = row_width(row, dlat)
    south = (row - ROW_OFFSET) * dlat
    return south, col * width - 180.0, south + dlat, (col + 1) * width - 180.0
