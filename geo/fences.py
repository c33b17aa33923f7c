"""Geofence geometry: GeoJSON in, validated shapes out.

One rule: a fence that passes `validate` is a valid, closed, non-self-intersecting area of at most
25 km² (or a circle of 10..10,000 m), in WGS84 `[lng, lat]`; nothing downstream re-checks it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec
import numpy as np
import shapely
from msgspec import Meta
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

EARTH_RADIUS_M = 6_371_008.8
MAX_AREA_M2 = 25_000_000.0
MIN_RADIUS_M = 10.0
MAX_RADIUS_M = 10_000.0
CIRCLE_SEGMENTS = 64

Position = Annotated[list[float], Meta(min_length=2, max_length=3)]
Ring = list[Position]


class Polygon(msgspec.Struct, tag="Polygon", tag_field="type", forbid_unknown_fields=True,
              frozen=True):
    coordinates: list[Ring]


class MultiPolygon(msgspec.Struct, tag="MultiPolygon", tag_field="type",
                   forbid_unknown_fields=True, frozen=True):
    coordinates: list[list[Ring]]


class Point(msgspec.Struct, tag="Point", tag_field="type", forbid_unknown_fields=True,
            frozen=True):
    coordinates: Position


Geometry = Polygon | MultiPolygon | Point
FenceKind = Literal["polygon", "circle"]


class InvalidGeometry(ValueError):
    """A fence geometry that cannot be stored; `field` is its JSON path below the geometry."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class FenceShape(msgspec.Struct, frozen=True):
    """A validated fence area: the exact test for circles is a distance to `center`."""

    kind: FenceKind
    area: BaseGeometry  # lng/lat polygon(s); a circle is its buffered polygon
    center_lng: float
    center_lat: float
    radius_m: float | None
    area_m2: float


def to_local_metres(geom: BaseGeometry, lng0: float, lat0: float) -> BaseGeometry:
    """Equirectangular projection around (lng0, lat0): metres east and north.

    Within a 25 km² fence the scale error is far below GPS accuracy.
    """
    kx = math.radians(1.0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    ky = math.radians(1.0) * EARTH_RADIUS_M

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(((xy[:, 0] - lng0) * kx, (xy[:, 1] - lat0) * ky))

    return shapely.transform(geom, project)


def from_local_metres(geom: BaseGeometry, lng0: float, lat0: float) -> BaseGeometry:
    kx = math.radians(1.0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    ky = math.radians(1.0) * EARTH_RADIUS_M

    def unproject(xy: np.ndarray) -> np.ndarray:
        return np.column_stack((xy[:, 0] / kx + lng0, xy[:, 1] / ky + lat0))

    return shapely.transform(geom, unproject)


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _check_position(pos: list[float], field: str) -> tuple[float, float]:
    lng, lat = pos[0], pos[1]
    if not (math.isfinite(lng) and math.isfinite(lat)):
        raise InvalidGeometry(field, "coordinates must be finite numbers")
    if not -180.0 <= lng <= 180.0:
        raise InvalidGeometry(field, f"longitude {lng} is outside -180..180")
    if not -90.0 <= lat <= 90.0:
        raise InvalidGeometry(field, f"latitude {lat} is outside -90..90")
    return lng, lat


def _check_ring(ring: Ring, field: str) -> list[tuple[float, float]]:
    if len(ring) < 4:
        raise InvalidGeometry(field, f"a linear ring needs at least 4 positions, got {len(ring)}")
    points = [_check_position(p, f"{field}[{i}]") for i, p in enumerate(ring)]
    if points[0] != points[-1]:
        raise InvalidGeometry(field, "the ring is not closed: its first and last positions differ")
    if len(set(points)) < 3:
        raise InvalidGeometry(field, "the ring needs at least 3 distinct positions")
    return points


def _polygon(rings: list[Ring], field: str) -> shapely.Polygon:
    if not rings:
        raise InvalidGeometry(field, "a polygon needs an exterior ring")
    checked = [_check_ring(r, f"{field}[{i}]") for i, r in enumerate(rings)]
    poly = shapely.Polygon(checked[0], checked[1:])
    if not poly.is_valid:
        raise InvalidGeometry(field, f"invalid polygon: {explain_validity(poly)}")
    return poly


def _area_m2(geom: BaseGeometry) -> float:
    c = geom.centroid
    return float(to_local_metres(geom, c.x, c.y).area)


def validate(geometry: Geometry, radius_m: float | None) -> FenceShape:
    """Check a fence's geometry; raise `InvalidGeometry` naming the offending part."""
    if isinstance(geometry, Point):
        if radius_m is None:
            raise InvalidGeometry("radius_m", "radius_m is required with a Point geometry")
        if not math.isfinite(radius_m) or not MIN_RADIUS_M <= radius_m <= MAX_RADIUS_M:
            raise InvalidGeometry(
                "radius_m", f"radius_m must be within {MIN_RADIUS_M:g}..{MAX_RADIUS_M:g} m"
            )
        lng, lat = _check_position(geometry.coordinates, "geometry.coordinates")
        if abs(lat) > 85.0:
            raise InvalidGeometry("geometry.coordinates", "circles are not supported beyond ±85°")
        disc = shapely.Point(0.0, 0.0).buffer(radius_m, quad_segs=CIRCLE_SEGMENTS // 4)
        circle = from_local_metres(disc, lng, lat)
        return FenceShape("circle", circle, lng, lat, radius_m, math.pi * radius_m**2)

    if radius_m is not None:
        raise InvalidGeometry("radius_m", "radius_m applies only to a Point geometry")
    if isinstance(geometry, Polygon):
        area: BaseGeometry = _polygon(geometry.coordinates, "geometry.coordinates")
    else:
        if not geometry.coordinates:
            raise InvalidGeometry("geometry.coordinates", "a MultiPolygon needs at least one part")
        parts = [
            _polygon(p, f"geometry.coordinates[{i}]") for i, p in enumerate(geometry.coordinates)
        ]
        area = shapely.MultiPolygon(parts)
        if not area.is_valid:
            raise InvalidGeometry(
                "geometry.coordinates", f"invalid multipolygon: {explain_validity(area)}"
            )
    if area.bounds[2] - area.bounds[0] > 180.0:
        raise InvalidGeometry("geometry.coordinates", "fences may not cross the antimeridian")
    area_m2 = _area_m2(area)
    if area_m2 > MAX_AREA_M2:
        raise InvalidGeometry(
            "geometry.coordinates",
            f"the area is {area_m2 / 1e6:.1f} km², over the limit of {MAX_AREA_M2 / 1e6:g} km²",
        )
    if area_m2 < 1.0:
        raise InvalidGeometry("geometry.coordinates", "the area is smaller than 1 m²")
    c = area.centroid
    return FenceShape("polygon", area, c.x, c.y, None, area_m2)


def shape_from_stored(kind: str, geometry_wkb: bytes, center_lng: float, center_lat: float,
                      radius_m: float | None, area_m2: float) -> FenceShape:
    """Rebuild a validated shape from its stored columns, without re-validating."""
    return FenceShape(
        "circle" if kind == "circle" else "polygon",
        shapely.from_wkb(geometry_wkb), center_lng, center_lat, radius_m, area_m2,
    )
