"""Webhook subscriptions (admin): made, listed and deleted; every attempt's log; replays.

One rule: a URL is checked before anything is stored (`campaigns.webhooks.safety`), and a
refusal names the field and the reason; the secret is in the creation's answer only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID, uuid4

import asyncpg
from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from app import audit
from app.audit import Change
from app.auth import Principal, admits
from app.pagination import Cursor, Limit, Page, after_of, page_of
from campaigns.webhooks import store
from campaigns.webhooks.model import (
    Attempt,
    CreatedWebhook,
    Replayed,
    ReplayIn,
    Webhook,
    WebhookIn,
)
from campaigns.webhooks.safety import AllowList, UnsafeUrl, checked_addresses, target_of
from campaigns.webhooks.sealing import Sealer
from campaigns.webhooks.signing import new_secret
from geo.errors import Conflict, InvalidField, NotFound


def _sealer(state: State) -> Sealer:
    key: str | None = state.settings.webhook_secret_key
    if not key:
        raise Conflict("webhooks are off: this service has no WEBHOOK_SECRET_KEY to seal "
                       "their secrets with")
    return Sealer(key)


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]

    @post(operation_id="createWebhook", opt=admits("admin", action="manage webhooks"))
    async def create(self, data: WebhookIn, pool: asyncpg.Pool, principal: Principal,
                     state: State, now: datetime) -> CreatedWebhook:
        """Subscribe a URL to event types. The URL is https and resolves to public addresses
        only (hosts in WEBHOOK_ALLOW_HOSTS excepted); the answer holds the signing secret —
        the one given, or a generated one — and is the only place it is ever shown."""
        sealer = _sealer(state)
        allow = AllowList.parse(state.settings.webhook_allow_hosts)
        try:
            await checked_addresses(target_of(data.url, allow))
        except UnsafeUrl as exc:
            raise InvalidField("url", str(exc)) from exc
        webhook_id = uuid4()
        secret = data.secret or new_secret()
        async with pool.acquire() as conn, conn.transaction():
            hook = await store.insert(conn, webhook_id, data.url, list(data.events),
                                      sealer.seal(webhook_id, secret), now)
            await audit.record(conn, principal, now, Change("create", "webhook", hook.id,
                                                            after=hook))
        return CreatedWebhook(id=hook.id, url=hook.url, events=hook.events,
                              created_at=hook.created_at, secret=secret)

    @get(operation_id="listWebhooks", opt=admits("admin", action="list webhooks"))
    async def list_webhooks(self, pool: asyncpg.Pool, limit: Limit = 100,
                            cursor: Cursor = None) -> Page[Webhook]:
        """The subscriptions, oldest first; secrets are never shown again."""
        async with pool.acquire() as conn:
            items = await store.list_webhooks(conn, after_of(cursor), limit + 1)
        return page_of(items, limit)

    @delete("/{webhook_id:uuid}", operation_id="deleteWebhook",
            opt=admits("admin", action="manage webhooks"))
    async def remove(self, webhook_id: UUID, pool: asyncpg.Pool, principal: Principal,
                     now: datetime) -> None:
        """Delete a subscription: nothing more is sent to it, and its delivery log goes."""
        async with pool.acquire() as conn, conn.transaction():
            hook = await store.delete(conn, webhook_id)
            if hook is None:
                raise NotFound("webhook", webhook_id)
            await audit.record(conn, principal, now, Change("delete", "webhook", webhook_id,
                                                            before=hook))

    @get("/{webhook_id:uuid}/deliveries", operation_id="listWebhookDeliveries",
         opt=admits("admin", action="read webhook deliveries"))
    async def deliveries(
        self, webhook_id: UUID, pool: asyncpg.Pool, limit: Limit = 100, cursor: Cursor = None,
        event_id: Annotated[UUID | None, Parameter(
            description="only the attempts of this event")] = None,
    ) -> Page[Attempt]:
        """Every attempt to POST an event to this subscription, oldest first: the event, the
        attempt's number for its delivery, when, its `status` (`delivered`, `retry`, `dead`),
        the latency, the receiver's status code (none when it never answered), the error, and
        where the delivery stands now."""
        async with pool.acquire() as conn:
            if not await store.exists(conn, webhook_id):
                raise NotFound("webhook", webhook_id)
            items = await store.attempts(conn, webhook_id, event_id, after_of(cursor),
                                         limit + 1)
        return page_of(items, limit, position=lambda a: (a.at, a.id))

    @post("/{webhook_id:uuid}/replay", operation_id="replayWebhook", status_code=202,
          opt=admits("admin", action="replay webhooks"))
    async def replay(self, webhook_id: UUID, data: ReplayIn, pool: asyncpg.Pool,
                     principal: Principal, now: datetime) -> Replayed:
        """Send this subscription's events of a period (`from` inclusive, `to` exclusive, by
        when each event was written) again: new deliveries of the same event ids, which a
        receiver dedupes."""
        async with pool.acquire() as conn, conn.transaction():
            if not await store.exists(conn, webhook_id):
                raise NotFound("webhook", webhook_id)
            queued = await store.replay(conn, webhook_id, data.from_, data.to, now)
            await audit.record(conn, principal, now, Change(
                "replay", "webhook", webhook_id,
                after={"from": data.from_, "to": data.to, "queued": queued}))
        return Replayed(queued=queued)
