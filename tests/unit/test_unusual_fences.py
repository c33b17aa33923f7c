"""Unusual but valid fences in the index: holes, many parts, the antimeridian, near the poles, and
the largest area. The index must agree with brute-force geometry there as everywhere.

Brute force here reads a ping's longitude the short way round from the fence (a fence across the
antimeridian has continuous longitudes such as 179.98..180.02, a ping there says -179.99).
"""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo.fences import (
    EARTH_RADIUS_M,
    FenceShape,
    MultiPolygon,
    Point,
    Polygon,
    haversine_m,
    to_local_metres,
    validate,
)
from geo.index import FenceIndex, IndexedFence
from geo.index_kernels import DEG_M, cell_bounds, cell_key

BORDER_TOLERANCE_M = 0.01
Ring = list[list[float]]


def wrap(lng: float) -> float:
    return lng - 360.0 * round(lng / 360.0)


def at(lat0: float, lng0: float, east: float, north: float) -> list[float]:
    """[lng, lat] `east`/`north` metres from (lat0, lng0) in the local frame, lng within ±180."""
    lat = lat0 + math.degrees(north / EARTH_RADIUS_M)
    lng = lng0 + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return [wrap(lng), lat]


def star(lat0: float, lng0: float, cx: float, cy: float, radii: list[float]) -> Ring:
    """A closed star-shaped ring around (cx, cy) metres from (lat0, lng0)."""
    n = len(radii)
    ring = [at(lat0, lng0, cx + r * math.cos(2 * math.pi * k / n),
               cy + r * math.sin(2 * math.pi * k / n)) for k, r in enumerate(radii)]
    return [*ring, ring[0]]


def box(west: float, south: float, east: float, north: float) -> Ring:
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def brute_force(shape: FenceShape, lat: np.ndarray, lng: np.ndarray) -> tuple[np.ndarray, ...]:
    """(inside, signed local distance) by shapely on the whole shape, haversine for circles."""
    if shape.kind == "circle" and shape.radius_m is not None:
        centre = np.array([haversine_m(a, b, shape.center_lat, shape.center_lng)
                           for a, b in zip(lat.tolist(), lng.tolist(), strict=True)])
        return centre <= shape.radius_m, centre - shape.radius_m
    near = lng + 360.0 * np.round((shape.center_lng - lng) / 360.0)
    inside = shapely.contains_xy(shape.area, near, lat)
    local = to_local_metres(shape.area, shape.center_lng, shape.center_lat)
    pts = to_local_metres(shapely.points(lng, lat), shape.center_lng, shape.center_lat)
    d = shapely.distance(local.boundary, pts)
    return inside, np.where(inside, -d, d)


def indexed(shape: FenceShape) -> IndexedFence:
    return IndexedFence(uuid.uuid4(), uuid.uuid4(), shape, 300, ("t",), True)


# --------------------------------------------------- the index against brute force at the edges

PLACES = [
    (78.22, 15.65),      # Longyearbyen, Svalbard
    (-89.9, 0.0),        # 11 km from the South Pole
    (-89.9, 179.995),    # ... and on the antimeridian
    (86.0, -120.0),
    (-16.8, 180.0),      # Taveuni, Fiji, where the antimeridian crosses it
    (-16.8, -179.999),
    (65.0, 179.999),     # Chukotka
]


@st.composite
def edge_shapes(draw: st.DrawFn, lat0: float, lng0: float) -> FenceShape:
    kind = draw(st.sampled_from(["circle", "polygon", "holed", "multi"]))
    size = 10 ** draw(st.floats(math.log10(4.0), math.log10(1_200.0)))
    cx, cy = draw(st.floats(-300, 300)), draw(st.floats(-300, 300))
    if kind == "circle":
        return validate(Point(coordinates=at(lat0, lng0, cx, cy)), max(10.0, size))
    n = draw(st.integers(3, 24))
    radii = [r * size for r in draw(st.lists(st.floats(0.4, 1.0), min_size=n, max_size=n))]
    outer = star(lat0, lng0, cx, cy, radii)
    if kind == "polygon":
        return validate(Polygon(coordinates=[outer]), None)
    if kind == "holed":
        hole = star(lat0, lng0, cx, cy, [0.15 * size] * 6)[::-1]
        return validate(Polygon(coordinates=[outer, hole]), None)
    other = star(lat0, lng0, cx + 2.5 * size, cy, radii)
    return validate(MultiPolygon(coordinates=[[outer], [other]]), None)


@st.composite
def edge_scenes(
    draw: st.DrawFn,
) -> tuple[list[FenceShape], np.ndarray, np.ndarray, float, float]:
    lat0, lng0 = draw(st.sampled_from(PLACES))
    fences = draw(st.lists(edge_shapes(lat0, lng0), min_size=1, max_size=3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lats, lngs = [], []
    for shape in fences:
        x0, y0, x1, y1 = shape.area.bounds
        pad_x, pad_y = (x1 - x0) * 0.3 + 0.002, (y1 - y0) * 0.3 + 0.0002
        lngs.append(rng.uniform(x0 - pad_x, x1 + pad_x, 200))
        lats.append(rng.uniform(max(-89.99, y0 - pad_y), min(89.99, y1 + pad_y), 200))
    lng = np.concatenate(lngs)
    margin = draw(st.sampled_from([0.0, 5.0, 30.0, 100.0]))
    cell_m = draw(st.sampled_from([25.0, 40.0, 90.0]))
    return fences, np.concatenate(lats), lng - 360.0 * np.round(lng / 360.0), margin, cell_m


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(edge_scenes())
def test_the_index_agrees_with_brute_force_near_the_poles_and_the_antimeridian(
    scene: tuple[list[FenceShape], np.ndarray, np.ndarray, float, float],
) -> None:
    shapes, lat, lng, margin, cell_m = scene
    fences = [indexed(s) for s in shapes]
    m = FenceIndex.build(fences, cell_m=cell_m).match(lat, lng, margin)
    position = {fence.fence_id: k for k, fence in enumerate(fences)}
    got = {(p, position[m.fence_ids[f]]): (i, d)
           for p, f, i, d in zip(m.ping.tolist(), m.fence.tolist(), m.inside.tolist(),
                                 m.distance_m.tolist(), strict=True)}
    for f, shape in enumerate(shapes):
        inside, dist = brute_force(shape, lat, lng)
        for p in range(len(lat)):
            d = float(dist[p])
            if abs(d) < BORDER_TOLERANCE_M or abs(d - margin) < BORDER_TOLERANCE_M:
                continue
            hit = got.get((p, f))
            if d > margin:
                assert hit is None, (p, f, d, hit)
                continue
            assert hit is not None and hit[0] == bool(inside[p]), (p, f, d, hit)
            assert hit[1] == pytest.approx(max(d, -margin), abs=1e-3), (p, f, d, hit)


# ------------------------------------------------------------------- named shapes, named pings

TAVEUNI = (-16.82, -16.78)  # a 4.3 km × 4.4 km box across the antimeridian on the island


def _holed() -> Polygon:
    return Polygon(coordinates=[box(2.34, 48.85, 2.36, 48.86), box(2.345, 48.853, 2.355, 48.857)])


def _fifty_parts() -> MultiPolygon:
    # 50 squares of ~220 m a side, 0.005° apart along a parallel
    return MultiPolygon(coordinates=[[box(2.3 + 0.005 * k, 48.85, 2.303 + 0.005 * k, 48.852)]
                                     for k in range(50)])


def _cut_at_antimeridian() -> MultiPolygon:
    south, north = TAVEUNI
    return MultiPolygon(coordinates=[[box(179.98, south, 180.0, north)],
                                     [box(-180.0, south, -179.98, north)]])


def _jumping_the_antimeridian() -> Polygon:
    south, north = TAVEUNI
    return Polygon(coordinates=[[[179.98, south], [-179.98, south], [-179.98, north],
                                 [179.98, north], [179.98, south]]])


def _svalbard() -> Polygon:
    return Polygon(coordinates=[star(78.22, 15.65, 0.0, 0.0, [900.0, 600.0] * 8)])


def _south_pole_station() -> Polygon:
    return Polygon(coordinates=[star(-89.9, 30.0, 0.0, 0.0, [1_500.0, 1_000.0] * 10)])


NAMED: list[object] = [
    pytest.param(_holed(), None, [(48.855, 2.35, False), (48.8515, 2.342, True)],
                 id="a ping in the hole is outside, a ping in the ring around it inside"),
    pytest.param(_fifty_parts(), None,
                 [(48.851, 2.3015 + 0.005 * 36, True), (48.851, 2.304 + 0.005 * 36, False)],
                 id="a ping in part 37 of 50 is inside, one between parts 37 and 38 outside"),
    pytest.param(_cut_at_antimeridian(), None,
                 [(-16.80, 179.99, True), (-16.80, -179.99, True), (-16.80, 180.0, True),
                  (-16.80, 179.97, False), (-16.80, -179.97, False)],
                 id="a fence cut at the antimeridian holds pings on both sides of it"),
    pytest.param(_jumping_the_antimeridian(), None,
                 [(-16.80, 179.99, True), (-16.80, -179.99, True), (-16.80, 0.0, False)],
                 id="a ring jumping from 179.98 to -179.98 is read the short way round"),
    pytest.param(Point(coordinates=[179.999, -16.8]), 300.0,
                 [(-16.8, -179.9995, True), (-16.8, -179.99, False)],
                 id="a circle on the antimeridian holds pings on its far side"),
    pytest.param(_svalbard(), None, [(78.22, 15.65, True), (78.22, 15.70, False)],
                 id="a fence in Svalbard holds its centre"),
    pytest.param(_south_pole_station(), None,
                 [(-89.9, 30.0, True), (-89.9, 210.0 - 360.0, False), (-89.92, 30.0, False)],
                 id="a fence around a station at 89.9 S holds it and not the far side of the pole"),
    pytest.param(Point(coordinates=[30.0, -89.9]), 500.0,
                 [(-89.9, 31.0, True), (-89.9, 35.0, False)],
                 id="a circle around a station at 89.9 S holds a ping 190 m from its centre"),
]


@pytest.mark.parametrize(("geometry", "radius_m", "pings"), NAMED)
def test_an_unusual_fence_holds_exactly_the_pings_inside_it(
    geometry: Polygon | MultiPolygon | Point, radius_m: float | None,
    pings: list[tuple[float, float, bool]],
) -> None:
    shape = validate(geometry, radius_m)
    lat = np.array([p[0] for p in pings])
    lng = np.array([p[1] for p in pings])

    m = FenceIndex.build([indexed(shape)]).match(lat, lng, 0.0)

    inside, _ = brute_force(shape, lat, lng)
    expected = [p[2] for p in pings]
    assert (sorted(m.ping[m.inside].tolist()), inside.tolist()) == (
        [i for i, e in enumerate(expected) if e], expected)


def test_the_largest_fence_answers_a_ping_in_its_middle_without_geometry() -> None:
    # 2,000 positions on a circle-like ring of 24.9 km²
    radius = math.sqrt(24.9e6 / math.pi) / math.sqrt(
        1999 / (2 * math.pi) * math.sin(2 * math.pi / 1999))
    shape = validate(Polygon(coordinates=[star(48.85, 2.35, 0.0, 0.0, [radius] * 1999)]), None)
    index = FenceIndex.build([indexed(shape)])
    lat, lng = np.array([48.85, 48.851]), np.array([2.35, 2.349])
    tables = index._tables
    # Each ping's cell holds one entry, deep: answered by its bounds, no edge read.
    keys, first, count = tables.cells()
    at = [int(np.flatnonzero(keys == cell_key(a, b, index.cell_m / DEG_M))[0])
          for a, b in zip(lat, lng, strict=True)]
    entries = [int(first[i]) for i in at]

    m = index.match(lat, lng, 100.0)

    assert (shape.area_m2 == pytest.approx(24.9e6, rel=1e-3), m.inside.tolist(),
            [int(count[i]) for i in at],
            [float(tables.bounds[e, 1]) for e in entries],
            [int(tables.refs[e, 2]) for e in entries]) == (
        True, [True, True], [1, 1], [-100.0, -100.0], [0, 0])


@pytest.mark.parametrize(("lat0", "size_m"), [
    pytest.param(-89.95, 2_000.0, id="near the South Pole every cell's bounds hold at its corners"),
    pytest.param(89.9, 3_000.0, id="near the North Pole every cell's bounds hold at its corners"),
    pytest.param(78.22, 2_500.0, id="in Svalbard every cell's bounds hold at its corners"),
])
def test_the_stored_distance_bounds_hold_at_every_corner_of_every_cell(
    lat0: float, size_m: float,
) -> None:
    # The module's invariant, checked where the local frame's scale error is largest: any point
    # of an indexed cell is within [lo, hi] of the fence's border. Corners are the cells'
    # farthest points from their centres.
    shape = validate(Polygon(coordinates=[star(lat0, 10.0, 0.0, 0.0, [size_m, 0.6 * size_m] * 6)]),
                     None)
    index = FenceIndex.build([indexed(shape)])
    keys, first, _ = index._tables.cells()
    lo, hi = index._tables.bounds[first].T
    corners = [cell_bounds(k, index.cell_m / DEG_M) for k in keys.tolist()]
    lat = np.array([lat for s, _, n, _ in corners for lat in (s, s, n, n)])
    lng = np.array([lng for _, w, _, e in corners for lng in (w, e, w, e)])
    _, d = index.geometry.signed_distance(np.zeros(len(lat), dtype=np.int32), lat, lng)

    outside_bounds = (d < np.repeat(lo, 4) - 1e-6) | (d > np.repeat(hi, 4) + 1e-6)

    assert len(keys) > 100 and int(outside_bounds.sum()) == 0


@pytest.mark.parametrize("lat0", [-16.8, 65.0, 0.0, 78.22])
@pytest.mark.parametrize("side", [-1.0, 1.0])
@pytest.mark.parametrize("cell_m", [25.0, 40.0])
def test_a_fence_at_the_antimeridian_finds_pings_across_it(
    lat0: float, side: float, cell_m: float,
) -> None:
    # The fence's cells run past ±180, where each row's last column is narrower than the
    # others: the pings just across must still find the fence at every margin.
    lng0 = side * 179.999
    shape = validate(Polygon(coordinates=[star(lat0, lng0, 0.0, 0.0, [20.0] * 12)]), None)
    index = FenceIndex.build([indexed(shape)], cell_m=cell_m)
    east = np.tile(np.linspace(-150.0, 150.0, 301), 5)
    lat = lat0 + np.degrees(np.repeat([-60.0, -20.0, 0.0, 20.0, 60.0], 301) / EARTH_RADIUS_M)
    lng = lng0 + np.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    lng = lng - 360.0 * np.round(lng / 360.0)
    _, dist = brute_force(shape, lat, lng)
    for margin in (0.0, 25.0, 100.0):
        m = index.match(lat, lng, margin)
        got = dict(zip(m.ping.tolist(), m.distance_m.tolist(), strict=True))
        for p, d in enumerate(dist.tolist()):
            if abs(d - margin) < BORDER_TOLERANCE_M:
                continue
            assert (p in got) == (d <= margin), (margin, p, d)
            if d <= margin:
                assert got[p] == pytest.approx(max(d, -margin), abs=1e-3), (margin, p, d)
