"""Fences and pings for the side-by-side matcher bench (`bench.match_compare`).

One rule: the same seeded data for every engine: shops along the streets of a grid city, as
circles and 16-64 vertex polygons of 30-300 m across (a fifth of the polygons with a hole), and
pings around them with GPS noise and varied accuracy.

Two layouts:
  - dense: streets 120 m apart with 1.2 shops per 100 m of street, so fences overlap; half
    the pings are aimed inside a fence, the other half anywhere in the city;
  - sparse: streets 300 m apart with one shop per 200 m; 15 % of the pings are aimed inside a
    fence, so most fall in no fence.
The city grows with the number of fences, so the density stays the same at every size.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

from geo.fences import EARTH_RADIUS_M, FenceShape, Point, validate
from geo.index import IndexedFence

LAT0, LNG0 = 48.8566, 2.3522  # Paris
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Layout:
    name: str
    street_spacing_m: float
    shops_per_m: float  # of street
    aimed_share: float  # pings aimed inside a fence


LAYOUTS = {
    "dense": Layout("dense", 120.0, 0.012, 0.5),
    "sparse": Layout("sparse", 300.0, 0.005, 0.15),
}


def _degrees(east: F64, north: F64) -> tuple[F64, F64]:
    lat = LAT0 + np.degrees(north / EARTH_RADIUS_M)
    lng = LNG0 + np.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))
    return lat, lng


def city_side_m(n: int, layout: Layout) -> float:
    """Side of the square city holding n shops: streets both ways, 2 L²/S metres of them."""
    return math.sqrt(n * layout.street_spacing_m / (2.0 * layout.shops_per_m))


def _polygon(e: float, n: float, radius: float, rng: np.random.Generator) -> shapely.Polygon:
    """A star-shaped ring of 16-64 vertices around (e, n) in local metres, maybe with a hole."""
    k = int(rng.integers(16, 65))
    step = 2 * math.pi / k
    angles = np.arange(k) * step + rng.uniform(-0.3, 0.3, k) * step + rng.uniform(0, 2 * math.pi)
    # A smooth wobble of the radius (a few lobes), never below 0.7 of it.
    lobes = rng.integers(2, 6)
    r = radius * (0.85 + 0.15 * np.sin(lobes * angles + rng.uniform(0, 2 * math.pi)))
    shell = np.column_stack((e + r * np.cos(angles), n + r * np.sin(angles)))
    holes = []
    if rng.random() < 0.2:
        a = np.linspace(0, 2 * math.pi, 9)[:-1]
        hole_r = 0.25 * radius
        holes.append(np.column_stack((e + hole_r * np.cos(a), n + hole_r * np.sin(a))))
    return shapely.Polygon(shell, holes)


def _to_lnglat(poly: shapely.Polygon) -> shapely.Polygon:
    def project(xy: F64) -> F64:
        lat, lng = _degrees(xy[:, 0], xy[:, 1])
        return np.column_stack((lng, lat))

    out: shapely.Polygon = shapely.transform(poly, project)
    return out


def make_fences(n: int, layout: Layout, rng: np.random.Generator) -> tuple[list[IndexedFence], F64]:
    """n fences along the streets, and their centres and radii: (n, 3) of east, north, radius."""
    side = city_side_m(n, layout)
    streets = max(1, int(side // layout.street_spacing_m))
    vertical = rng.random(n) < 0.5
    street = rng.integers(0, streets + 1, n) * layout.street_spacing_m - side / 2
    along = rng.uniform(-side / 2, side / 2, n)
    across = street + rng.choice([-1.0, 1.0], n) * rng.uniform(10.0, 40.0, n)
    east = np.where(vertical, across, along)
    north = np.where(vertical, along, across)
    radius = 15.0 * 10.0 ** rng.random(n)  # 30-300 m across, small shops commoner
    circle = rng.random(n) < 0.3
    fences = []
    for k in range(n):
        if circle[k]:
            lat, lng = _degrees(east[k:k + 1], north[k:k + 1])
            shape = validate(Point(coordinates=[float(lng[0]), float(lat[0])]), float(radius[k]))
        else:
            local = _polygon(float(east[k]), float(north[k]), float(radius[k]), rng)
            area = _to_lnglat(local)
            c = area.centroid
            shape = FenceShape("polygon", area, c.x, c.y, None, float(local.area))
        fences.append(IndexedFence(uuid.UUID(int=k + 1), uuid.UUID(int=k + 1), shape, 120, (),
                                   True))
    return fences, np.column_stack((east, north, radius))


def make_pings(
    count: int, layout: Layout, fences: F64, rng: np.random.Generator,
) -> tuple[F64, F64, F64]:
    """(lat, lng, accuracy_m) of `count` pings: `aimed_share` of them at a point inside a random
    fence, the rest anywhere in the city, each moved by GPS noise of its accuracy."""
    side = city_side_m(len(fences), layout) + 400.0
    u = rng.random(count)
    # 70 % GPS (5-20 m), 25 % degraded (20-65 m), 5 % network fixes (100-1000 m).
    accuracy = np.where(u < 0.70, rng.uniform(5, 20, count),
                        np.where(u < 0.95, rng.uniform(20, 65, count),
                                 rng.uniform(100, 1000, count)))
    aimed = rng.random(count) < layout.aimed_share
    pick = fences[rng.integers(0, len(fences), count)]
    r = 0.65 * pick[:, 2] * np.sqrt(rng.random(count))
    a = rng.uniform(0, 2 * math.pi, count)
    east = np.where(aimed, pick[:, 0] + r * np.cos(a), rng.uniform(-side / 2, side / 2, count))
    north = np.where(aimed, pick[:, 1] + r * np.sin(a), rng.uniform(-side / 2, side / 2, count))
    # The fix is off by about its accuracy (a 68 % radius): σ = accuracy / 1.5 per axis.
    sigma = np.minimum(accuracy, 65.0) / 1.5
    east = east + rng.normal(0.0, 1.0, count) * sigma
    north = north + rng.normal(0.0, 1.0, count) * sigma
    lat, lng = _degrees(east, north)
    return lat, lng, accuracy
