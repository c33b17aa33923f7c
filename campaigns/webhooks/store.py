"""Subscriptions, their delivery log, replays and the stream's retention, in SQL.

One rule: each function takes the connection, so the caller owns the transaction (a
subscription's row and its audit entry commit together).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID

import msgspec

from campaigns.webhooks.model import Attempt, Webhook
from geo.retention import Purged
from geo.store import After, Connection

INSERT_WEBHOOK = """
INSERT INTO webhooks (id, url, events, secret_sealed, created_at) VALUES ($1, $2, $3, $4, $5)
RETURNING id, url, events, created_at
"""
LIST_WEBHOOKS = """
SELECT id, url, events, created_at FROM webhooks
WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid))
ORDER BY created_at, id LIMIT $3
"""
DELETE_WEBHOOK = "DELETE FROM webhooks WHERE id = $1 RETURNING id, url, events, created_at"
EXISTS = "SELECT true FROM webhooks WHERE id = $1"
LIST_ATTEMPTS = """
SELECT t.id, t.delivery_id, t.event_id, t.event_type, t.attempt, t.at, t.outcome AS status,
       t.latency_ms,
       t.response_code, t.error, d.status AS delivery_status
FROM webhook_attempts t JOIN webhook_deliveries d ON d.id = t.delivery_id
WHERE t.webhook_id = $1
  AND ($2::uuid IS NULL OR t.event_id = $2)
  AND ($3::timestamptz IS NULL OR (t.at, t.id) > ($3, $4::uuid))
ORDER BY t.at, t.id LIMIT $5
"""
# The subscription's events of the period ([from, to), by when they were written), queued again
# as new deliveries: the same event ids, so a receiver that has them already sees duplicates it
# dedupes. Events not yet fanned out are left to the fan-out, which queues them anyway.
REPLAY = """
WITH w AS (SELECT id, events FROM webhooks WHERE id = $1)
INSERT INTO webhook_deliveries (id, webhook_id, event_id, created_at, next_attempt_at)
SELECT gen_random_uuid(), w.id, e.id, $4, $4
FROM w JOIN webhook_events e ON e.type = any(w.events)
WHERE e.created_at >= $2 AND e.created_at < $3 AND e.fanned_out_at IS NOT NULL
"""


# Events written before the cut-off, with their deliveries and attempts (by cascade), once none
# of their deliveries is still queued or in flight; chosen and locked in bounded batches, rows
# another transaction holds skipped (as geo.retention does for pings).
PURGE_EVENTS = """
DELETE FROM webhook_events WHERE id = any(array(
    SELECT e.id FROM webhook_events e
    WHERE e.created_at < $1 AND e.fanned_out_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                      WHERE d.event_id = e.id AND d.status IN ('queued', 'sending'))
    LIMIT $2 FOR UPDATE SKIP LOCKED))
"""


def _webhook(row: object) -> Webhook:
    return msgspec.convert(dict(row), Webhook)  # type: ignore[call-overload]


async def insert(conn: Connection, webhook_id: UUID, url: str, events: list[str],
                 sealed: bytes, now: datetime) -> Webhook:
    row = await conn.fetchrow(INSERT_WEBHOOK, webhook_id, url, events, sealed, now)
    return _webhook(row)


async def list_webhooks(conn: Connection, after: After, limit: int) -> list[Webhook]:
    return [_webhook(r) for r in await conn.fetch(LIST_WEBHOOKS, *after, limit)]


async def delete(conn: Connection, webhook_id: UUID) -> Webhook | None:
    row = await conn.fetchrow(DELETE_WEBHOOK, webhook_id)
    return None if row is None else _webhook(row)


async def exists(conn: Connection, webhook_id: UUID) -> bool:
    return bool(await conn.fetchval(EXISTS, webhook_id))


async def attempts(conn: Connection, webhook_id: UUID, event_id: UUID | None, after: After,
                   limit: int) -> list[Attempt]:
    rows = await conn.fetch(LIST_ATTEMPTS, webhook_id, event_id, *after, limit)
    return [msgspec.convert(dict(r), Attempt) for r in rows]


async def replay(conn: Connection, webhook_id: UUID, since: datetime, until: datetime,
                 now: datetime) -> int:
    status: str = await conn.execute(REPLAY, webhook_id, since, until, now)
    return int(status.rsplit(" ", 1)[-1])


async def purge_events(conn: Connection, before: datetime, *, batch: int) -> Purged:
    """Delete settled events written before `before` (and their deliveries and attempts),
    `batch` per statement, each committing alone (call outside a transaction)."""
    rows = statements = 0
    while True:
        status: str = await conn.execute(PURGE_EVENTS, before, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        rows, statements = rows + deleted, statements + 1
        if deleted < batch:
            return Purged("webhook_events", rows, statements)
        await asyncio.sleep(0)
