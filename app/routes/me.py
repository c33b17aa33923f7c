"""Who the caller is: the console shows the signed-in key's role and scope from this."""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import get

from app.auth import Principal, admits


class Me(msgspec.Struct, kw_only=True, frozen=True):
    role: str
    key_id: UUID | None
    name: str | None
    store_ids: list[UUID]


@get("/v1/me", operation_id="getMe", tags=["keys"],
     opt=admits("campaign_manager", "store_manager", "app", action="read who it is"))
async def me(principal: Principal) -> Me:
    """The calling key: its role, name and (a store manager's) stores. Never the token."""
    return Me(role=principal.role, key_id=principal.key_id, name=principal.key_name,
              store_ids=sorted(principal.store_ids))
