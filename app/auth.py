"""Who is calling: bearer tokens resolved to a `Principal`, and the role each route admits.

One rule: tokens are random (32 bytes) and only their SHA-256 is stored; every request looks the
hash up again, so a revoked key or an erased device is refused on its very next request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from geo.errors import NotFound

Role = Literal["admin", "campaign_manager", "store_manager", "app", "device"]
KEY_PREFIX = "ctxk_"
DEVICE_PREFIX = "ctxd_"
# Who the audit log names for a write made with `CONTEXTO_ADMIN_TOKEN`, which has no key row.
ENVIRONMENT_ADMIN = "environment admin token"

_KEY_LOOKUP = """
SELECT id, name, role, store_ids FROM api_keys WHERE token_hash = $1 AND revoked_at IS NULL
"""
_DEVICE_LOOKUP = "SELECT id FROM devices WHERE token_hash = $1"


class Principal(msgspec.Struct, frozen=True):
    role: Role
    key_id: UUID | None = None
    key_name: str | None = None
    store_ids: frozenset[UUID] = frozenset()
    device_id: UUID | None = None

    def may_see_store(self, store_id: UUID) -> bool:
        return self.role != "store_manager" or store_id in self.store_ids

    def require_store(self, store_id: UUID, resource: str = "store",
                      ident: object | None = None) -> None:
        """Out-of-scope ids answer 404, exactly like ids that do not exist."""
        if not self.may_see_store(store_id):
            raise NotFound(resource, ident if ident is not None else store_id)

    @property
    def device(self) -> UUID:
        if self.device_id is None:
            raise PermissionDeniedException("only a device token may do this")
        return self.device_id


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization")
    if not header:
        raise NotAuthorizedException("an Authorization: Bearer token is required")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException("the Authorization header must be 'Bearer <token>'")
    return token.strip()


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    token = _bearer(connection)
    digest = token_hash(token)
    admin_hash: bytes | None = connection.app.state.admin_token_hash
    if admin_hash is not None and hmac.compare_digest(digest, admin_hash):
        return Principal(role="admin", key_name=ENVIRONMENT_ADMIN)
    pool = connection.app.state.pool
    if token.startswith(DEVICE_PREFIX):
        device_id = await pool.fetchval(_DEVICE_LOOKUP, digest)
        if device_id is not None:
            return Principal(role="device", device_id=device_id)
    elif token.startswith(KEY_PREFIX):
        row = await pool.fetchrow(_KEY_LOOKUP, digest)
        if row is not None:
            return Principal(role=row["role"], key_id=row["id"], key_name=row["name"],
                             store_ids=frozenset(row["store_ids"]))
    raise NotAuthorizedException("the token is unknown or has been revoked")


async def role_guard(connection: ASGIConnection[Any, Any, Any, Any],
                     handler: BaseRouteHandler) -> None:
    """App-wide guard: each handler lists its roles in `opt["roles"]`; `public` needs none."""
    if handler.opt.get("public") or (
        "roles" not in handler.opt and connection.scope["path"].startswith("/schema")
    ):  # the OpenAPI document and its viewers are public; every other route names its roles
        return
    roles: frozenset[str] = handler.opt.get("roles", frozenset())
    principal = await authenticate(connection)
    if principal.role not in roles and not (principal.role == "admin" and "device" not in roles):
        raise PermissionDeniedException(
            f"the {principal.role} role may not {handler.opt.get('action', 'do this')}"
        )
    connection.state.principal = principal


def admits(*roles: str, action: str, budget: str | None = None) -> dict[str, Any]:
    """Handler `opt` naming who may call it. Admin may call everything except the routes that
    act as a device (they need a device's identity). `budget` names the device's request budget
    the route spends (see `app.ratelimit`)."""
    opt: dict[str, Any] = {"roles": frozenset(roles), "action": action}
    if budget is not None:
        opt["budget"] = budget
    return opt


async def budget_guard(connection: ASGIConnection[Any, Any, Any, Any],
                       handler: BaseRouteHandler) -> None:
    """App-wide guard after `role_guard`: a route with a `budget` spends one request of the
    calling device's budget, before its body is even read, so a runaway loop of malformed
    requests is throttled too."""
    budget = handler.opt.get("budget")
    if budget is not None:
        principal: Principal = connection.state.principal
        connection.app.state.device_budget.spend(principal.device, budget)


async def provide_principal(request: Any) -> Principal:
    principal: Principal = request.state.principal
    return principal
