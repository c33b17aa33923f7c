"""The fence index agrees with brute-force geometry, and the pings' H3 cells agree with h3."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import h3.api.basic_int as h3b
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo.cells import cells_of
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
from geo.index_geometry import PRECISION_M

BORDER_TOLERANCE_M = 0.01


def offset(lat0: float, lng0: float, east: float, north: float) -> tuple[float, float]:
    """(lng, lat) of a point `east`/`north` metres from (lat0, lng0)."""
    lat = lat0 + math.degrees(north / EARTH_RADIUS_M)
    lng = lng0 + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return lng, lat


def star(lat0: float, lng0: float, cx: float, cy: float, radii: list[float]) -> list[list[float]]:
    """A closed star-shaped (hence simple) ring around (cx, cy) metres from the origin."""
    n = len(radii)
    ring = []
    for k, r in enumerate(radii):
        a = 2 * math.pi * k / n
        lng, lat = offset(lat0, lng0, cx + r * math.cos(a), cy + r * math.sin(a))
        ring.append([lng, lat])
    return [*ring, ring[0]]


@st.composite
def shapes(draw: st.DrawFn, lat0: float, lng0: float) -> FenceShape:
    kind = draw(st.sampled_from(["circle", "polygon", "holed", "multi", "jagged"]))
    # Log-uniform size: well under a cell (~25 m) up to ~80 cells across.
    size = 10 ** draw(st.floats(math.log10(4.0), math.log10(1_200.0)))
    cx = draw(st.floats(-300, 300))
    cy = draw(st.floats(-300, 300))
    if kind == "circle":
        lng, lat = offset(lat0, lng0, cx, cy)
        return validate(Point(coordinates=[lng, lat]), max(10.0, size))
    # "jagged" polygons have hundreds of edges (an exact test reads only those near its cell).
    n = draw(st.integers(260, 400)) if kind == "jagged" else draw(st.integers(3, 24))
    radii = draw(st.lists(st.floats(0.4, 1.0), min_size=n, max_size=n))
    outer = star(lat0, lng0, cx, cy, [r * size for r in radii])
    if kind in ("polygon", "jagged"):
        return validate(Polygon(coordinates=[outer]), None)
    if kind == "holed":
        hole = star(lat0, lng0, cx, cy, [0.15 * size] * 6)[::-1]
        return validate(Polygon(coordinates=[outer, hole]), None)
    other = star(lat0, lng0, cx + 2.5 * size, cy, [r * size for r in radii])
    return validate(MultiPolygon(coordinates=[[outer], [other]]), None)


@dataclass(frozen=True)
class Scene:
    shapes: list[FenceShape]
    lat: np.ndarray
    lng: np.ndarray
    margin: np.ndarray  # per ping
    cell_m: float


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    lat0 = draw(st.floats(-60.0, 60.0))
    lng0 = draw(st.floats(-170.0, 170.0))
    fences = draw(st.lists(shapes(lat0, lng0), min_size=1, max_size=5))
    seed = draw(st.integers(0, 2**32 - 1))
    margins = [0.0, 5.0, 30.0, 100.0]
    margin = draw(st.sampled_from([*margins, -1.0]))  # -1: a different margin for each ping
    rng = np.random.default_rng(seed)
    lngs, lats = [], []
    for shape in fences:
        x0, y0, x1, y1 = shape.area.bounds
        pad = (x1 - x0) * 0.3 + 0.002
        lngs.append(rng.uniform(x0 - pad, x1 + pad, 150))
        lats.append(rng.uniform(y0 - pad, y1 + pad, 150))
        # Points right next to the border, on both sides, at various distances.
        border = shape.area.boundary
        along = shapely.line_interpolate_point(border, rng.uniform(0, 1, 60), normalized=True)
        xy = shapely.get_coordinates(along)
        step = rng.choice([0.05, 1.0, 10.0, 40.0, 99.0], 60) * rng.choice([-1, 1], 60)
        e, n = rng.normal(size=60), rng.normal(size=60)
        norm = np.hypot(e, n)
        for (lng, lat), s, de, dn in zip(xy, step, e / norm, n / norm, strict=True):
            plng, plat = offset(lat, lng, s * de, s * dn)
            lngs.append(np.array([plng]))
            lats.append(np.array([plat]))
    lat = np.concatenate(lats)
    per_ping = rng.choice(margins, len(lat)) if margin < 0 else np.full(len(lat), margin)
    cell_m = draw(st.sampled_from([10.0, 25.0, 40.0, 40.0, 90.0]))
    return Scene(fences, lat, np.concatenate(lngs), per_ping, cell_m)


def brute_force(shape: FenceShape, lat: np.ndarray, lng: np.ndarray) -> tuple[np.ndarray, ...]:
    """(inside, signed distance) by shapely on the whole shape, or haversine for circles."""
    if shape.kind == "circle" and shape.radius_m is not None:
        centre = np.array([haversine_m(a, b, shape.center_lat, shape.center_lng)
                           for a, b in zip(lat.tolist(), lng.tolist(), strict=True)])
        return centre <= shape.radius_m, centre - shape.radius_m
    inside = shapely.contains_xy(shape.area, lng, lat)
    local = to_local_metres(shape.area, shape.center_lng, shape.center_lat)
    pts = to_local_metres(shapely.points(lng, lat), shape.center_lng, shape.center_lat)
    d = shapely.distance(local.boundary, pts)
    return inside, np.where(inside, -d, d)


def indexed(shape: FenceShape, enabled: bool = True) -> IndexedFence:
    return IndexedFence(uuid.uuid4(), uuid.uuid4(), shape, 300, ("t",), enabled)


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(scenes())
def test_index_agrees_with_brute_force_away_from_borders(scene: Scene) -> None:
    fences = [indexed(s) for s in scene.shapes]
    index = FenceIndex.build(fences, cell_m=scene.cell_m)
    m = index.match(scene.lat, scene.lng, scene.margin)
    # Matches name fences by their place in `fence_ids` (the index's own order).
    position = {fence.fence_id: k for k, fence in enumerate(fences)}
    got = {
        (p, position[m.fence_ids[f]]): (i, d)
        for p, f, i, d in zip(m.ping.tolist(), m.fence.tolist(), m.inside.tolist(),
                              m.distance_m.tolist(), strict=True)
    }
    for f, shape in enumerate(scene.shapes):
        inside, dist = brute_force(shape, scene.lat, scene.lng)
        for p in range(len(scene.lat)):
            d, margin = float(dist[p]), float(scene.margin[p])
            if abs(d) < BORDER_TOLERANCE_M or abs(d - margin) < BORDER_TOLERANCE_M:
                continue
            hit = got.get((p, f))
            if d > margin:
                assert hit is None, (p, f, d, hit)
                continue
            assert hit is not None, (p, f, d)
            assert hit[0] == bool(inside[p]), (p, f, d, hit)
            assert hit[1] == pytest.approx(max(d, -margin), abs=1e-3), (p, f, d, hit)


def square(lat0: float, lng0: float, half_m: float) -> FenceShape:
    ring = [list(offset(lat0, lng0, sx * half_m, sy * half_m))
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))]
    return validate(Polygon(coordinates=[ring]), None)


def test_disabled_fences_are_not_indexed() -> None:
    on, off = indexed(square(48.85, 2.35, 50)), indexed(square(48.85, 2.35, 50), enabled=False)
    index = FenceIndex.build([on, off], version=7)
    assert len(index) == 1 and index.version == 7
    assert index.fence(on.fence_id) == on
    with pytest.raises(KeyError):
        index.fence(off.fence_id)
    m = index.match(np.array([48.85]), np.array([2.35]))
    assert [h.fence_id for h in m.hits()[0]] == [on.fence_id]


def test_a_big_fence_answers_deep_pings_from_its_cells_alone() -> None:
    big = indexed(square(48.85, 2.35, 2_000))
    index = FenceIndex.build([big], max_margin_m=50.0)
    # Every cell within reach, and no more: the 4 km square grown by the margin and a cell.
    assert 4_000**2 / 40.0**2 <= index.entries <= 4_200**2 / 40.0**2 * 1.5
    tables = index._tables
    deep = np.isneginf(tables.bounds[:, 0])
    assert deep.sum() > 0.8 * index.entries
    assert (tables.bounds[deep, 1] == -50.0).all() and (tables.refs[deep, 2] == 0).all()
    m = index.match(np.array([48.85, 48.85]), np.array([2.35, 2.0]), 50.0)
    assert m.ping.tolist() == [0] and m.inside.tolist() == [True]
    assert m.distance_m.tolist() == [-50.0]


def test_a_batch_with_more_matches_than_room_is_answered_whole() -> None:
    # 40 concentric fences: each ping is in all of them, over MATCHES_PER_PING.
    fences = [indexed(square(48.85, 2.35, 60 + 5 * k)) for k in range(40)]
    index = FenceIndex.build(fences)
    m = index.match(np.full(3, 48.85), np.full(3, 2.35), 10.0)
    assert m.ping.tolist() == [0] * 40 + [1] * 40 + [2] * 40
    assert {m.fence_ids[f] for f in m.fence.tolist()} == {f.fence_id for f in fences}
    assert m.inside.all()


def test_a_margin_wider_than_the_index_was_built_for_is_refused() -> None:
    index = FenceIndex.build([indexed(square(0.0, 0.0, 50))], max_margin_m=30.0)
    with pytest.raises(ValueError, match="margin_m"):
        index.match(np.array([0.0]), np.array([0.0]), 31.0)


def test_an_empty_index_matches_nothing() -> None:
    m = FenceIndex.build([]).match(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert len(m) == 0 and m.hits() == [[], []]


def test_cells_agree_with_h3() -> None:
    rng = np.random.default_rng(5)
    lat, lng = rng.uniform(-85, 85, 300), rng.uniform(-180, 180, 300)
    cells = cells_of(lat, lng, 11)
    assert cells.tolist() == [h3b.latlng_to_cell(a, b, 11) for a, b in zip(lat, lng, strict=True)]


def test_a_polygon_with_very_many_edges_is_matched_exactly() -> None:
    radii = [300.0 if k % 2 else 200.0 for k in range(400)]
    shape = validate(Polygon(coordinates=[star(10.0, 20.0, 0.0, 0.0, radii)]), None)
    index = FenceIndex.build([indexed(shape)])
    lng, lat = zip(*(offset(10.0, 20.0, e, 0.0) for e in (0.0, 150.0, 250.0, 320.0)),
                   strict=True)
    m = index.match(np.array(lat), np.array(lng), 100.0)
    inside, dist = brute_force(shape, np.array(lat), np.array(lng))
    assert m.ping.tolist() == [0, 1, 2, 3]
    assert m.inside.tolist() == inside.tolist() == [True, True, False, False]
    assert m.distance_m.tolist() == pytest.approx(np.maximum(dist, -100.0).tolist(),
                                                  abs=PRECISION_M)
