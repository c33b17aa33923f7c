"""Geofence geometry: GeoJSON in, validated shapes out.

One rule: a fence that passes `validate` is a valid, closed, non-self-intersecting area of at most
25 km² and 2,000 positions (or a circle of 10..10,000 m), in WGS84 `[lng, lat]`, clear of the
poles; nothing downstream re-checks it.

Holes and MultiPolygons are areas like any other. A fence may cross the antimeridian either as
RFC 7946 recommends (a MultiPolygon cut at ±180, whose halves are joined here) or as one ring
whose edge jumps from 179.9 to -179.9 (read as the short way round): both become one area with
continuous longitudes (e.g. 179.9..180.1), which the local metric frame and the index handle.
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
MAX_POSITIONS = 2_000
# Near a pole a degree of longitude shrinks to nothing and the local frame's scale error grows
# without bound; fences keep this far away (an Antarctic station at 89.9° S is 11 km from it).
POLE_CLEARANCE_KM = 2.0
MAX_ABS_LAT = round(90.0 - math.degrees(POLE_CLEARANCE_KM * 1000.0 / EARTH_RADIUS_M), 2)

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
    # lng/lat polygon(s), a circle as its buffered polygon; longitudes are continuous across
    # the antimeridian (a fence there runs past 180 rather than jumping to -180), around a
    # centre within -180..180.
    area: BaseGeometry
    center_lng: float  # within -180..180
    center_lat: float
    radius_m: float | None
    area_m2: float


def wrap_lng(lng: float) -> float:
    """`lng` moved by whole turns into -180..180 (unchanged, bit for bit, when already there)."""
    return lng - 360.0 * round(lng / 360.0)


def short_way(dlng: np.ndarray) -> np.ndarray:
    """Longitude differences taken the short way round (exact, nothing subtracted, below 180°)."""
    out: np.ndarray = dlng - 360.0 * np.round(dlng / 360.0)
    return out


def to_local_metres(geom: BaseGeometry, lng0: float, lat0: float) -> BaseGeometry:
    """Equirectangular projection around (lng0, lat0): metres east and north.

    Longitude differences are taken the short way round, so a fence across the antimeridian is
    one piece here. The projection is affine in (lng, lat), so a point is inside a fence in this
    frame exactly when it is inside in GeoJSON's planar [lng, lat] terms; only distances carry a
    scale error, which stays far below GPS accuracy within a 25 km² fence away from the poles
    (`geo.index` widens its bounds by the error where it is not).
    """
    kx = math.radians(1.0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    ky = math.radians(1.0) * EARTH_RADIUS_M

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack((short_way(xy[:, 0] - lng0) * kx, (xy[:, 1] - lat0) * ky))

    return shapely.transform(geom, project)


def from_local_metres(geom: BaseGeometry, lng0: float, lat0: float) -> BaseGeometry:
    """The inverse of `to_local_metres`; longitudes come out continuous around `lng0`, so they
    may pass ±180."""
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
    if abs(lat) > MAX_ABS_LAT:
        raise InvalidGeometry(field, f"latitude {lat} is within {POLE_CLEARANCE_KM:g} km of a "
                                     f"pole; fences must stay within ±{MAX_ABS_LAT:g}°")
    return lng, lat


def _check_ring(ring: Ring, field: str, ref: float) -> list[tuple[float, float]]:
    """The ring's positions with longitudes made continuous: each within 180° of the one before
    (the first: of `ref`, the fence's first longitude). No edge of a fence spans half the globe,
    so one that seems to (179.9 to -179.9) crosses the antimeridian the short way."""
    if len(ring) < 4:
        raise InvalidGeometry(field, f"a linear ring needs at least 4 positions, got {len(ring)}")
    given = [_check_position(p, f"{field}[{i}]") for i, p in enumerate(ring)]
    if given[0] != given[-1]:
        raise InvalidGeometry(field, "the ring is not closed: its first and last positions differ")
    points: list[tuple[float, float]] = []
    for lng, lat in given:
        anchor = points[-1][0] if points else ref
        points.append((lng + 360.0 * round((anchor - lng) / 360.0), lat))
    if points[0] != points[-1]:
        raise InvalidGeometry(field, "the ring goes around a pole; a fence may not contain one")
    if len(set(points)) < 3:
        raise InvalidGeometry(field, "the ring needs at least 3 distinct positions")
    return points


def _polygon(rings: list[Ring], field: str, ref: float) -> shapely.Polygon:
    if not rings:
        raise InvalidGeometry(field, "a polygon needs an exterior ring")
    checked = [_check_ring(r, f"{field}[{i}]", ref) for i, r in enumerate(rings)]
    poly = shapely.Polygon(checked[0], checked[1:])
    if not poly.is_valid:
        raise InvalidGeometry(field, f"invalid polygon: {explain_validity(poly)}")
    return poly


def _joined(parts: list[shapely.Polygon], fields: list[str]) -> BaseGeometry:
    """The parts of a MultiPolygon as one area: they may touch (the two halves of a fence cut at
    the antimeridian share an edge, joined here so that edge is no border), never overlap."""
    if len(parts) == 1:
        return parts[0]
    left, right = shapely.STRtree(parts).query(parts, predicate="intersects")
    touching = False
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i < j:
            if not parts[i].touches(parts[j]):
                raise InvalidGeometry(fields[j], f"part {j} overlaps part {i}")
            touching = True
    return shapely.union_all(parts) if touching else shapely.MultiPolygon(parts)


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
        if abs(lat) + math.degrees(radius_m / EARTH_RADIUS_M) > MAX_ABS_LAT:
            raise InvalidGeometry("geometry.coordinates", f"the circle reaches within "
                                  f"{POLE_CLEARANCE_KM:g} km of a pole; fences must stay within "
                                  f"±{MAX_ABS_LAT:g}°")
        disc = shapely.Point(0.0, 0.0).buffer(radius_m, quad_segs=CIRCLE_SEGMENTS // 4)
        circle = from_local_metres(disc, lng, lat)
        return FenceShape("circle", circle, lng, lat, radius_m, math.pi * radius_m**2)

    if radius_m is not None:
        raise InvalidGeometry("radius_m", "radius_m applies only to a Point geometry")
    if isinstance(geometry, Polygon):
        polygons, fields = [geometry.coordinates], ["geometry.coordinates"]
    else:
        polygons = geometry.coordinates
        fields = [f"geometry.coordinates[{i}]" for i in range(len(polygons))]
        if not polygons:
            raise InvalidGeometry("geometry.coordinates", "a MultiPolygon needs at least one part")
    positions = sum(len(ring) for rings in polygons for ring in rings)
    if positions > MAX_POSITIONS:
        raise InvalidGeometry(
            "geometry.coordinates",
            f"the fence has {positions} positions, over the limit of {MAX_POSITIONS:,} "
            "(all rings of all parts together)",
        )
    ref = next((ring[0][0] for rings in polygons for ring in rings if ring), 0.0)
    ref = ref if math.isfinite(ref) else 0.0
    area = _joined([_polygon(p, f, ref) for p, f in zip(polygons, fields, strict=True)], fields)
    area_m2 = _area_m2(area)
    if area_m2 > MAX_AREA_M2:
        raise InvalidGeometry(
            "geometry.coordinates",
            f"the area is {area_m2 / 1e6:.1f} km², over the limit of {MAX_AREA_M2 / 1e6:g} km²",
        )
    if area_m2 < 1.0:
        raise InvalidGeometry("geometry.coordinates", "the area is smaller than 1 m²")
    c = area.centroid
    turn = -360.0 * round(c.x / 360.0)  # whole turns that bring the centre within ±180
    if turn:
        area = shapely.transform(area, lambda xy: xy + np.array([turn, 0.0]))
    return FenceShape("polygon", area, c.x + turn, c.y, None, area_m2)


def shape_from_stored(kind: str, geometry_wkb: bytes, center_lng: float, center_lat: float,
                      radius_m: float | None, area_m2: float) -> FenceShape:
    """Rebuild a validated shape from its stored columns, without re-validating."""
    return FenceShape(
        "circle" if kind == "circle" else "polygon",
        shapely.from_wkb(geometry_wkb), center_lng, center_lat, radius_m, area_m2,
    )
