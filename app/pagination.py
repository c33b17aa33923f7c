"""Keyset pagination shared by every list: `limit` (1..1000, default 100) and an opaque cursor.

One rule: the cursor is the (created_at, id) of the last item served (or the list's own time
column, such as the audit log's `at`), so pages never skip or repeat items when rows are added
meanwhile.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Generic, TypeVar
from uuid import UUID

import msgspec
from litestar.params import Parameter

from geo.errors import InvalidField

T = TypeVar("T")

Limit = Annotated[int, Parameter(ge=1, le=1000, description="page size (1..1000)")]
Cursor = Annotated[str | None, Parameter(description="next_cursor of the previous page")]


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, ident: UUID) -> str:
    raw = msgspec.json.encode([created_at.isoformat(), str(ident)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = msgspec.json.decode(raw, type=tuple[datetime, UUID])
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidField("cursor", "not a cursor this service issued") from exc
    return created, ident


def page_of(items: list[T], limit: int,
            position: Callable[[T], tuple[datetime, UUID]] | None = None) -> Page[T]:
    """A page from `limit + 1` fetched items: the extra one only says that more follow.
    `position` gives an item's keyset position; by default its (created_at, id)."""
    if len(items) <= limit:
        return Page(items, None)
    kept = items[:limit]
    last = kept[-1]
    if position is not None:
        return Page(kept, encode_cursor(*position(last)))
    return Page(kept, encode_cursor(last.created_at, last.id))  # type: ignore[attr-defined]


def after_of(cursor: str | None) -> tuple[datetime | None, UUID | None]:
    after = decode_cursor(cursor)
    return after if after else (None, None)
