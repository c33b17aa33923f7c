"""Fence geometry validation as a table: GeoJSON and a radius in, a shape or the named reason out.

Every shape sits near Paris (2.35° E, 48.85° N), where 0.001° is about 73 m east and 111 m north.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from geo.fences import (
    EARTH_RADIUS_M,
    FenceShape,
    Geometry,
    InvalidGeometry,
    to_local_metres,
    validate,
)

LNG0, LAT0 = 2.35, 48.85
M_PER_DEG_LAT = math.radians(1.0) * EARTH_RADIUS_M
M_PER_DEG_LNG = M_PER_DEG_LAT * math.cos(math.radians(LAT0))


def ring(lng: float, lat: float, size: float) -> list[list[float]]:
    """A closed, counter-clockwise square ring of `size` degrees with its corner at (lng, lat)."""
    return [[lng, lat], [lng + size, lat], [lng + size, lat + size], [lng, lat + size],
            [lng, lat]]


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def square(size: float = 0.001, lng: float = LNG0, lat: float = LAT0) -> dict[str, Any]:
    return polygon(ring(lng, lat, size))


def bowtie() -> dict[str, Any]:
    d = 0.001
    return polygon([[LNG0, LAT0], [LNG0 + d, LAT0 + d], [LNG0 + d, LAT0], [LNG0, LAT0 + d],
                    [LNG0, LAT0]])


def circle_ring(n: int, east: float = 0.0, size: float = 0.004) -> list[list[float]]:
    """A closed ring of `n` positions (n - 1 distinct) on a circle of `size` degrees around
    Paris, `east` degrees east of it."""
    ring = [[LNG0 + east + size * math.cos(2 * math.pi * k / (n - 1)),
             LAT0 + size * math.sin(2 * math.pi * k / (n - 1))] for k in range(n - 1)]
    return [*ring, ring[0]]


def point(lng: float = LNG0, lat: float = LAT0) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lng, lat]}


def geometry(raw: dict[str, Any]) -> Geometry:
    decoded: Geometry = msgspec.convert(raw, Geometry)  # type: ignore[arg-type]
    return decoded


def square_area_m2(size: float, lat: float = LAT0) -> float:
    return size * M_PER_DEG_LAT * math.cos(math.radians(lat + size / 2)) * size * M_PER_DEG_LAT


# A side of 0.05° lat by 0.075° lng is about 5.55 km × 5.49 km ≈ 30.5 km².
THIRTY_KM2 = polygon([[LNG0, LAT0], [LNG0 + 0.075, LAT0], [LNG0 + 0.075, LAT0 + 0.05],
                      [LNG0, LAT0 + 0.05], [LNG0, LAT0]])

INVALID: list[Any] = [
    pytest.param(bowtie(), None, "geometry.coordinates", "Self-intersection",
                 id="a bowtie ring is refused as a self-intersection"),
    pytest.param(polygon([*ring(LNG0, LAT0, 0.001)[:4], [LNG0 + 0.0005, LAT0 + 0.0005]]), None,
                 "geometry.coordinates[0]", "not closed",
                 id="a ring whose last position differs from its first is not closed"),
    pytest.param(polygon([[LNG0, LAT0], [LNG0 + 0.001, LAT0], [LNG0, LAT0]]), None,
                 "geometry.coordinates[0]", "at least 4 positions",
                 id="a ring of 3 positions is too short"),
    pytest.param(polygon([[LNG0, LAT0], [LNG0 + 0.001, 95.0], [LNG0, LAT0 + 0.001],
                          [LNG0, LAT0]]), None,
                 "geometry.coordinates[0][1]", "latitude 95",
                 id="a latitude of 95 is named at its position"),
    pytest.param(polygon([[LNG0, LAT0], [LNG0 + 0.001, LAT0], [181.0, LAT0 + 0.001],
                          [LNG0, LAT0]]), None,
                 "geometry.coordinates[0][2]", "longitude 181",
                 id="a longitude of 181 is named at its position"),
    pytest.param(THIRTY_KM2, None, "geometry.coordinates", "over the limit of 25 km²",
                 id="a square of about 30 km² is over the area limit"),
    pytest.param(point(), 5.0, "radius_m", "10..10000",
                 id="a circle of radius 5 m is too small"),
    pytest.param(point(), 20_000.0, "radius_m", "10..10000",
                 id="a circle of radius 20 km is too large"),
    pytest.param(point(), None, "radius_m", "required",
                 id="a Point without a radius is refused"),
    pytest.param(square(), 50.0, "radius_m", "only to a Point",
                 id="a Polygon with a radius is refused"),
    pytest.param({"type": "MultiPolygon",
                  "coordinates": [[ring(LNG0, LAT0, 0.001)], bowtie()["coordinates"]]},
                 None, "geometry.coordinates[1]", "Self-intersection",
                 id="a MultiPolygon with one bad part names that part"),
    pytest.param(polygon(circle_ring(2_001)), None, "geometry.coordinates",
                 "2001 positions, over the limit of 2,000",
                 id="a ring of 2,001 positions is over the limit"),
    pytest.param({"type": "MultiPolygon",
                  "coordinates": [[circle_ring(1_000)], [circle_ring(1_001, 0.01)]]},
                 None, "geometry.coordinates", "2001 positions, over the limit of 2,000",
                 id="two parts of 1,000 and 1,001 positions are over the limit together"),
    pytest.param(polygon(circle_ring(1_500), circle_ring(501, size=0.002)[::-1]), None,
                 "geometry.coordinates", "2001 positions, over the limit of 2,000",
                 id="a hole's positions count toward the limit with the outer ring's"),
    pytest.param({"type": "MultiPolygon",
                  "coordinates": [[ring(LNG0, LAT0, 0.002)], [ring(LNG0 + 0.001, LAT0, 0.002)]]},
                 None, "geometry.coordinates[1]", "overlaps part 0",
                 id="a MultiPolygon whose parts overlap names the second"),
    pytest.param(polygon([[lng, -89.95] for lng in (-170.0, -60.0, 60.0, 170.0, -170.0)]),
                 None, "geometry.coordinates[0]", "goes around a pole",
                 id="a ring around the South Pole is refused"),
    pytest.param(polygon([[0.0, 89.97], [1.0, 89.97], [1.0, 89.99], [0.0, 89.97]]), None,
                 "geometry.coordinates[0][2]", "within 2 km of a pole",
                 id="a position 1.1 km from the North Pole is named"),
    pytest.param(point(0.0, -89.95), 5_000.0, "geometry.coordinates", "within 2 km of a pole",
                 id="a circle reaching within 2 km of the South Pole is refused"),
]


@pytest.mark.parametrize(("raw", "radius_m", "field", "reason"), INVALID)
def test_an_invalid_geometry_is_refused_naming_the_field_and_reason(
    raw: dict[str, Any], radius_m: float | None, field: str, reason: str,
) -> None:
    with pytest.raises(InvalidGeometry) as caught:
        validate(geometry(raw), radius_m)
    assert (caught.value.field, reason in caught.value.message) == (field, True), (
        caught.value.field, caught.value.message)


def _hole() -> dict[str, Any]:
    return polygon(ring(LNG0, LAT0, 0.002), ring(LNG0 + 0.0005, LAT0 + 0.0005, 0.001)[::-1])


VALID: list[Any] = [
    pytest.param(square(0.001), None, "polygon", square_area_m2(0.001),
                 id="a valid square of about 8,100 m² is accepted with its area"),
    pytest.param(_hole(), None, "polygon", square_area_m2(0.002) - square_area_m2(0.001),
                 id="a polygon with a hole is accepted and the hole is not counted"),
    pytest.param({"type": "MultiPolygon",
                  "coordinates": [[ring(LNG0, LAT0, 0.001)],
                                  [ring(LNG0 + 0.01, LAT0, 0.001)]]},
                 None, "polygon", 2 * square_area_m2(0.001),
                 id="a MultiPolygon of two squares counts both parts"),
    pytest.param(point(), 100.0, "circle", math.pi * 100.0**2,
                 id="a circle of radius 100 m has an area of pi r squared"),
    pytest.param(polygon(circle_ring(2_000)), None, "polygon",
                 1999 / 2 * math.sin(2 * math.pi / 1999) * 0.004**2 * M_PER_DEG_LNG * M_PER_DEG_LAT,
                 id="a ring of exactly 2,000 positions is accepted"),
    pytest.param({"type": "MultiPolygon",
                  "coordinates": [[ring(179.99, -16.8, 0.01)], [ring(-180.0, -16.8, 0.01)]]},
                 None, "polygon", 2 * square_area_m2(0.01, -16.8),
                 id="a MultiPolygon cut at the antimeridian is one area across it"),
    pytest.param(polygon([[179.99, -16.8], [-179.99, -16.8], [-179.99, -16.79],
                          [179.99, -16.79], [179.99, -16.8]]),
                 None, "polygon", 2 * square_area_m2(0.01, -16.8),
                 id="a ring jumping from 179.99 to -179.99 is read the short way round"),
    pytest.param({"type": "MultiPolygon",
                  "coordinates": [[ring(LNG0, LAT0, 0.001)], [ring(LNG0 + 0.001, LAT0, 0.001)]]},
                 None, "polygon", 2 * square_area_m2(0.001),
                 id="two parts sharing an edge are joined into one area"),
    pytest.param(polygon(ring(15.6, 78.2, 0.01)), None, "polygon",
                 square_area_m2(0.01, 78.2),
                 id="a square in Svalbard has its area at that latitude"),
    pytest.param(point(30.0, -89.9), 500.0, "circle", math.pi * 500.0**2,
                 id="a circle around a station at 89.9 S is accepted"),
]


@pytest.mark.parametrize(("raw", "radius_m", "kind", "area_m2"), VALID)
def test_a_valid_geometry_gives_its_shape_and_area(
    raw: dict[str, Any], radius_m: float | None, kind: str, area_m2: float,
) -> None:
    shape = validate(geometry(raw), radius_m)
    assert (shape.kind, shape.area_m2) == (kind, pytest.approx(area_m2, rel=0.005))


@pytest.mark.parametrize("radius_m", [
    pytest.param(10.0, id="the drawn polygon of a 10 m circle covers about pi r squared"),
    pytest.param(250.0, id="the drawn polygon of a 250 m circle covers about pi r squared"),
    pytest.param(10_000.0, id="the drawn polygon of a 10 km circle covers about pi r squared"),
])
def test_a_circles_drawn_area_is_close_to_pi_r_squared(radius_m: float) -> None:
    shape: FenceShape = validate(geometry(point()), radius_m)
    drawn = to_local_metres(shape.area, LNG0, LAT0).area
    # 64 segments inscribe the circle: their area is 0.16 % below pi r²
    assert drawn == pytest.approx(math.pi * radius_m**2, rel=0.005)
