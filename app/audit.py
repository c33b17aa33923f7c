"""The audit log: every staff write (API keys, stores, geofences, campaigns, the policy) with who
made it (key id and name), when (the app's clock), what, and the resource before and after.

One rule: a write's audit rows are inserted on the write's own connection, inside its
transaction, so a refused or rolled-back write leaves none and a committed one always has them.

What a row holds: `before` is the resource as the API showed it before the write (null on
create), `after` as it shows it afterwards (null on delete). An API key's body is its listing
(id, name, role, store_ids, created_at, revoked_at): never its token nor the token's hash.
A webhook's body is its listing (id, url, events, created_at), never its secret; a replay records
the period it queued again (`after`: from, to, queued). A geofence import records one row per
fence it created (action `import`), so a fence's history
is found under its own id whichever way it was made; deleting a store records the store and
each geofence it took with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args
from uuid import UUID, uuid4

import asyncpg
import msgspec

from app.auth import Principal
from geo.store import After, Connection

Resource = Literal["api_key", "store", "geofence", "campaign", "policy", "webhook"]
Action = Literal["create", "update", "delete", "activate", "pause", "revoke", "import",
                 "replay"]
RESOURCES: tuple[str, ...] = get_args(Resource)


class Change(msgspec.Struct, frozen=True):
    """One resource's change: `before` is None on create, `after` None on delete."""

    action: Action
    resource: Resource
    resource_id: UUID | None
    before: Any = None
    after: Any = None


class AuditEntry(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    at: datetime
    key_id: UUID | None  # None: the environment admin token, which has no key row
    key_name: str
    action: str
    resource: str
    resource_id: UUID | None  # None: the policy, which is one of a kind
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditQuery(msgspec.Struct, frozen=True):
    """Which entries to list; `since` is inclusive, `until` exclusive (None: unbounded)."""

    key_id: UUID | None = None
    resource: str | None = None
    since: datetime | None = None
    until: datetime | None = None


INSERT_ENTRY = """
INSERT INTO audit_log (id, at, key_id, key_name, action, resource, resource_id, before, after)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
# Newest first: an admin reads the log to see what just changed. The cursor is still the
# position of the last entry served, so paging never skips or repeats (new entries land before
# the first page, not among the later ones).
LIST_ENTRIES = """
SELECT id, at, key_id, key_name, action, resource, resource_id, before, after FROM audit_log
WHERE ($1::uuid IS NULL OR key_id = $1)
  AND ($2::text IS NULL OR resource = $2)
  AND ($3::timestamptz IS NULL OR at >= $3)
  AND ($4::timestamptz IS NULL OR at < $4)
  AND ($5::timestamptz IS NULL OR (at, id) < ($5, $6::uuid))
ORDER BY at DESC, id DESC LIMIT $7
"""


async def record(conn: Connection, principal: Principal, at: datetime, *changes: Change) -> None:
    """Record `changes` as made by `principal` at `at`; call it inside the write's transaction."""
    if principal.key_name is None:
        raise ValueError(f"a {principal.role} caller has no key to name in the audit log")
    await conn.executemany(INSERT_ENTRY, [
        (uuid4(), at, principal.key_id, principal.key_name, c.action, c.resource,
         c.resource_id, _body(c.before), _body(c.after))
        for c in changes
    ])


def _body(value: Any) -> Any:
    # Structs become the JSON the API shows (the jsonb codec encodes whatever msgspec can).
    return None if value is None else msgspec.to_builtins(value)


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(**dict(row))


async def list_entries(conn: Connection, query: AuditQuery,
                       after: After, limit: int) -> list[AuditEntry]:
    rows = await conn.fetch(LIST_ENTRIES, query.key_id, query.resource, query.since, query.until,
                            *after, limit)
    return [_entry(r) for r in rows]
