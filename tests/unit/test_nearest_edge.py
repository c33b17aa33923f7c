"""`geo.index_geometry.Geometry`: the signed distance from the nearest edge and its side (convex
and reflex vertices, holes, several parts) agrees with shapely's containment and distance."""

from __future__ import annotations

import math
import uuid

import numpy as np
import shapely

from geo.fences import FenceShape, MultiPolygon, Polygon, to_local_metres, validate
from geo.index_geometry import PRECISION_M, Geometry, _rings

LAT0, LNG0 = 48.85, 2.35


def ring(cx: float, cy: float, radii: list[float], clockwise: bool = False) -> list[list[float]]:
    """A closed lng/lat ring of a star around (cx, cy) metres from (LNG0, LAT0)."""
    k = len(radii)
    pts = []
    for i, r in enumerate(radii):
        a = 2 * math.pi * i / k * (-1 if clockwise else 1)
        x, y = cx + r * math.cos(a), cy + r * math.sin(a)
        pts.append([LNG0 + x / (111_195.0 * math.cos(math.radians(LAT0))), LAT0 + y / 111_195.0])
    return [*pts, pts[0]]


def test_signed_distances_agree_with_shapely_near_every_kind_of_vertex() -> None:
    star = [80.0, 30.0] * 8  # reflex and convex vertices in turn
    shapes = [
        validate(Polygon(coordinates=[ring(0, 0, star), ring(0, 0, [12.0] * 6, clockwise=True)]),
                 None),
        validate(MultiPolygon(coordinates=[[ring(-300, 0, [40.0] * 5)],
                                           [ring(-150, 0, [25.0, 60.0, 25.0, 60.0])]]), None),
        # a ring listed clockwise: the index orients it itself
        validate(Polygon(coordinates=[ring(300, 0, [70.0, 20.0] * 5, clockwise=True)]), None),
    ]
    geometry = Geometry(shapes)
    rng = np.random.default_rng(uuid.UUID(int=15).int % 2**32)
    for f, shape in enumerate(shapes):
        x0, y0, x1, y1 = shape.area.bounds
        lng = rng.uniform(x0 - 0.001, x1 + 0.001, 20_000)
        lat = rng.uniform(y0 - 0.001, y1 + 0.001, 20_000)
        # and points on the vertices' bisectors, where the nearest point is the vertex itself
        vx, vy = shapely.get_coordinates(shape.area).T
        lng = np.concatenate((lng, vx + 1e-5, vx - 1e-5, vx))
        lat = np.concatenate((lat, vy + 1e-5, vy - 1e-5, vy + 1e-5))
        inside, d = geometry.signed_distance(np.full(len(lat), f, dtype=np.int32), lat, lng)
        local = to_local_metres(shape.area, shape.center_lng, shape.center_lat)
        pts = to_local_metres(shapely.points(lng, lat), shape.center_lng, shape.center_lat)
        expected = shapely.distance(local.boundary, pts)
        contains = shapely.contains_xy(shape.area, lng, lat)
        clear = expected > PRECISION_M
        assert int((inside[clear] != contains[clear]).sum()) == 0
        assert float(np.abs(np.abs(d) - expected).max()) < PRECISION_M


def test_rings_are_cut_where_shapely_cuts_them_even_when_a_ring_returns_to_its_start() -> None:
    # A shell passing twice through its first position (not a valid fence, but the cut into
    # rings must not depend on validity): shapely's own ring boundaries are used then.
    pinched = shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 0), (-1, 0), (-1, -1), (0, 0)],
                              [[(0.6, 0.2), (0.8, 0.2), (0.8, 0.4), (0.6, 0.2)]])
    plain = shapely.Polygon([(5, 5), (6, 5), (6, 6), (5, 5)])
    shapes = [FenceShape("polygon", area, 0.0, 0.0, None, 1.0) for area in (pinched, plain)]

    xy, ring_start, ring_fence, shell = _rings(shapes, np.array([0, 1]))

    rings, owner = shapely.get_rings(np.array([pinched, plain]), return_index=True)
    lengths = shapely.get_num_coordinates(rings)
    assert np.diff(ring_start).tolist() == lengths.tolist()
    assert ring_fence.tolist() == owner.tolist() and shell.tolist() == [True, False, True]
    assert xy.tolist() == shapely.get_coordinates(rings).tolist()
