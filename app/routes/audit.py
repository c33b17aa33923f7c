"""The audit log, for admins: every staff write, newest first, filtered by key, resource and time.

One rule: a filter that cannot be read is refused with 400 naming it, never ignored (an ignored
filter would show the admin a log that looks complete and is not).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, get
from litestar.params import Parameter, QueryParameter

from app.audit import RESOURCES, AuditEntry, AuditQuery, list_entries
from app.auth import admits
from app.pagination import Cursor, Limit, Page, after_of, page_of
from geo.errors import InvalidField


def instant_of(field: str, raw: str | None) -> datetime | None:
    """A query parameter's RFC 3339 instant (None when absent); 400 naming `field` if bad."""
    if raw is None:
        return None
    try:
        at = msgspec.convert(raw, datetime)
    except msgspec.ValidationError as exc:
        hint = " (a '+' in a query string must be sent as %2B)" if " " in raw else ""
        raise InvalidField(field, f"{raw!r} is not an RFC 3339 time{hint}") from exc
    if at.tzinfo is None:
        raise InvalidField(field, f"{raw!r} has no offset; add one, e.g. Z or +02:00")
    return at


def _query(key_id: UUID | None, resource: str | None, since: str | None,
           until: str | None) -> AuditQuery:
    if resource is not None and resource not in RESOURCES:
        raise InvalidField("resource", f"{resource!r} is not one of {', '.join(RESOURCES)}")
    start, end = instant_of("from", since), instant_of("to", until)
    if start is not None and end is not None and start > end:
        raise InvalidField("from", "must not be after `to`")
    return AuditQuery(key_id=key_id, resource=resource, since=start, until=end)


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get(operation_id="listAuditEntries", opt=admits("admin", action="read the audit log"))
    async def list_audit(
        self, pool: asyncpg.Pool, limit: Limit = 100, cursor: Cursor = None,
        key_id: Annotated[UUID | None, Parameter(
            description="only writes made with this API key")] = None,
        resource: Annotated[str | None, QueryParameter(
            enum=list(RESOURCES), description="only writes to this kind of resource")] = None,
        since: Annotated[str | None, QueryParameter(
            name="from", format="date-time",
            description="only writes at or after this time (RFC 3339 with an offset)")] = None,
        until: Annotated[str | None, QueryParameter(
            name="to", format="date-time",
            description="only writes before this time (RFC 3339 with an offset)")] = None,
    ) -> Page[AuditEntry]:
        """Every staff write (API keys, stores, geofences, campaigns, the policy), newest
        first: when (`at`), by which key (`key_id` and `key_name`; the environment admin token
        has no key id), the `action`, the `resource` and its id (none for the policy), and the
        resource `before` (null on create) and `after` (null on delete) as the API shows it.
        A geofence import is one entry per fence it created."""
        query = _query(key_id, resource, since, until)
        async with pool.acquire() as conn:
            items = await list_entries(conn, query, after_of(cursor), limit + 1)
        return page_of(items, limit, position=lambda e: (e.at, e.id))
