"""API keys: issued and revoked by admins; the token is shown once, only its hash is kept (and
the audit log records the key as listed, without either)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4

import asyncpg
import msgspec
from litestar import Controller, delete, get, post
from msgspec import Meta

from app import audit
from app.audit import Change
from app.auth import KEY_PREFIX, Principal, admits, new_token, token_hash
from app.pagination import Cursor, Limit, Page, after_of, page_of
from geo import store as geo_store
from geo.errors import InvalidField, NotFound

KeyRole = Literal["admin", "campaign_manager", "store_manager", "app"]


class ApiKeyIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    role: KeyRole
    store_ids: list[UUID] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.role == "store_manager" and not self.store_ids:
            raise ValueError("store_ids: a store_manager key needs at least one store in store_ids")
        if self.role != "store_manager" and self.store_ids:
            raise ValueError("store_ids: applies only to store_manager keys")


class ApiKey(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    name: str
    role: str
    store_ids: list[UUID]
    created_at: datetime
    revoked_at: datetime | None = None


class IssuedApiKey(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    name: str
    role: str
    store_ids: list[UUID]
    created_at: datetime
    token: str


INSERT_KEY = """
INSERT INTO api_keys (id, name, role, store_ids, token_hash, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, name, role, store_ids, created_at
"""
LIST_KEYS = """
SELECT id, name, role, store_ids, created_at, revoked_at FROM api_keys
WHERE revoked_at IS NULL AND ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid))
ORDER BY created_at, id LIMIT $3
"""
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
RETURNING id, name, role, store_ids, created_at, revoked_at
"""


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["keys"]

    @post(operation_id="createApiKey", opt=admits("admin", action="issue API keys"))
    async def create(self, data: ApiKeyIn, pool: asyncpg.Pool, principal: Principal,
                     now: datetime) -> IssuedApiKey:
        """Issue a key. The token is in this response only; the service keeps its hash."""
        async with pool.acquire() as conn, conn.transaction():
            missing = await geo_store.missing_ids(conn, geo_store.EXISTING_STORES, data.store_ids)
            if missing:
                raise InvalidField("store_ids", f"unknown stores: {', '.join(map(str, missing))}")
            token = new_token(KEY_PREFIX)
            row = await conn.fetchrow(INSERT_KEY, uuid4(), data.name, data.role,
                                      data.store_ids, token_hash(token), now)
            assert row is not None
            key = ApiKey(**dict(row))
            await audit.record(conn, principal, now, Change("create", "api_key", key.id,
                                                            after=key))
        return IssuedApiKey(**dict(row), token=token)

    @get(operation_id="listApiKeys", opt=admits("admin", action="list API keys"))
    async def list_keys(self, pool: asyncpg.Pool, limit: Limit = 100,
                        cursor: Cursor = None) -> Page[ApiKey]:
        """The keys in force (revoked keys are not listed); tokens are never shown again."""
        rows = await pool.fetch(LIST_KEYS, *after_of(cursor), limit + 1)
        return page_of([ApiKey(**dict(r)) for r in rows], limit)

    @delete("/{key_id:uuid}", operation_id="revokeApiKey",
            opt=admits("admin", action="revoke API keys"))
    async def revoke(self, key_id: UUID, pool: asyncpg.Pool, principal: Principal,
                     now: datetime) -> None:
        """Revoke a key: its token is refused from the next request on."""
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(REVOKE_KEY, key_id, now)
            if row is None:
                raise NotFound("api key", key_id)
            after = ApiKey(**dict(row))
            before = msgspec.structs.replace(after, revoked_at=None)
            await audit.record(conn, principal, now, Change("revoke", "api_key", key_id,
                                                            before=before, after=after))
