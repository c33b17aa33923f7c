"""Stores and geofences as the API shows them, and the bodies that create or change them.

One rule: request structs reject unknown fields and check what they can alone; geometry rules
live in `geo.fences`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import UNSET, Meta, UnsetType

from geo.fences import Geometry

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Tag = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
DwellSeconds = Annotated[int, Meta(ge=0, le=86_400)]
RadiusM = Annotated[float, Meta(ge=10.0, le=10_000.0)]


def check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"timezone: {name!r} is not an IANA time zone") from exc


class StoreIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name
    timezone: str
    address: Annotated[str, Meta(max_length=500)] | None = None
    external_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("name: must not be blank")
        check_timezone(self.timezone)


class StorePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    address: Annotated[str, Meta(max_length=500)] | UnsetType | None = UNSET
    external_id: Annotated[str, Meta(min_length=1, max_length=200)] | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        if isinstance(self.name, str) and not self.name.strip():
            raise ValueError("name: must not be blank")
        if isinstance(self.timezone, str):
            check_timezone(self.timezone)


class Store(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    name: str
    timezone: str
    address: str | None
    external_id: str | None
    created_at: datetime
    updated_at: datetime


class GeofenceIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name
    geometry: Geometry
    radius_m: float | None = None
    dwell_seconds: DwellSeconds = 120
    enabled: bool = True
    tags: Annotated[list[Tag], Meta(max_length=32)] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("name: must not be blank")


class Geofence(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    store_id: UUID
    name: str
    geometry: Geometry
    radius_m: float | None
    dwell_seconds: int
    enabled: bool
    tags: list[str]
    version: int
    updated_at: datetime
    created_at: datetime
    area_m2: float


# An import is a staff body like any other: a member this version does not know is refused, so
# `"dwel_seconds"` cannot pass silently. Known but ignored: what an export writes besides the
# fence (`id`, `version`) and GeoJSON's `bbox`.
BBox = Annotated[list[float], Meta(min_length=4, max_length=6)]


class FeatureProperties(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name
    radius_m: float | None = None
    dwell_seconds: DwellSeconds = 120
    enabled: bool = True
    tags: Annotated[list[Tag], Meta(max_length=32)] = msgspec.field(default_factory=list)
    id: str | None = None
    version: int | None = None


class Feature(msgspec.Struct, tag="Feature", tag_field="type", kw_only=True,
              forbid_unknown_fields=True, frozen=True):
    geometry: Geometry
    properties: FeatureProperties
    id: str | int | None = None
    bbox: BBox | None = None


class FeatureCollection(msgspec.Struct, tag="FeatureCollection", tag_field="type",
                        kw_only=True, forbid_unknown_fields=True, frozen=True):
    features: Annotated[list[Feature], Meta(min_length=1, max_length=5000)]
    bbox: BBox | None = None


class ExportProperties(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    name: str
    radius_m: float | None
    dwell_seconds: int
    enabled: bool
    tags: list[str]
    version: int


class ExportFeature(msgspec.Struct, tag="Feature", tag_field="type", kw_only=True, frozen=True):
    id: UUID
    geometry: Geometry
    properties: ExportProperties


class ExportCollection(msgspec.Struct, tag="FeatureCollection", tag_field="type", kw_only=True,
                       frozen=True):
    features: list[ExportFeature]


class CreatedGeofences(msgspec.Struct, frozen=True):
    created: list[Geofence]
