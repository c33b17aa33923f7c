"""The dispatcher: drains the outbox through FCM.

One rule: at least once to FCM, at most once to the person. Rows are claimed with
`FOR UPDATE SKIP LOCKED` (any number of workers share one outbox), marked `sending` with a lease
that the worker renews while it sends, and each outcome is recorded as soon as it is heard (every
RECORD_EVERY_SECONDS); a worker that dies leaves rows whose lease runs out and which the next
worker sends, waking for that moment. A crash between send and record may resend what was in
flight, which the device collapses (collapse key = apns-collapse-id = delivery id, the same on
every attempt). An offer whose time is up is never sent; a retry waits at least the Retry-After
FCM asked for. A push's final outcome (sent, failed) is written to the webhook stream in the
transaction that records it.

Runs inside the server process by default, or alone: `python -m campaigns.dispatch` (SIGTERM
finishes and records the batch in hand).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import asyncpg
import msgspec

from campaigns.fcm import BATCH_SIZE, MIN_SEND_LIFETIME, FcmGateway, OutgoingPush, SendResult
from campaigns.wakeup import idle_seconds, notified, wait_any
from campaigns.webhooks import events as webhook_events

log = logging.getLogger("contexto.dispatch")

# A claimed row not recorded by then belongs to the next worker. A live worker renews its lease
# while it sends, so the lease only has to outlast a pause between renewals, not a slow batch:
# short, so that the rows of a killed worker go out again while their offers are still good.
LEASE = timedelta(seconds=20)
RENEWALS_PER_LEASE = 4
IDLE_WAKE_SECONDS = 5.0  # re-check for retries that came due while nobody notified
# Outcomes are recorded this often while a batch is out, not once at its end: a worker killed
# mid-batch then leaves unrecorded (and resends) only what it heard of in its last moments.
RECORD_EVERY_SECONDS = 0.2
MIN_IDLE_SECONDS = 0.05  # a due time that is already past must not spin the loop

CLAIM = """
WITH due AS (
    SELECT id, campaign_id, device_id FROM deliveries
    WHERE (status = 'queued' AND next_attempt_at <= $1)
       OR (status = 'sending' AND claimed_at < $1 - $3::interval)
    ORDER BY next_attempt_at
    FOR UPDATE SKIP LOCKED
    LIMIT $2
)
UPDATE deliveries d SET status = 'sending', claimed_at = $1, attempts = d.attempts + 1
FROM due JOIN campaigns c ON c.id = due.campaign_id
         LEFT JOIN devices dev ON dev.id = due.device_id
WHERE d.id = due.id
RETURNING d.id, d.campaign_id, d.expires_at, d.attempts, c.spec->'offer' AS offer,
          dev.fcm_token, dev.fid, dev.push_retired_at, d.store_id, d.fence_id, d.device_id,
          d.trigger_kind
"""
# When the next row comes due: a retry's time, or the end of a lease a dead worker left behind.
NEXT_DUE = """
SELECT least((SELECT min(next_attempt_at) FROM deliveries WHERE status = 'queued'),
             (SELECT min(claimed_at) + $1::interval FROM deliveries WHERE status = 'sending'))
"""
RENEW_LEASE = """
UPDATE deliveries SET claimed_at = $2
WHERE id = any($1::uuid[]) AND status = 'sending' AND claimed_at = $3
"""
# sent_at is when FCM accepted the push (on its last, accepted attempt); created_at is when the
# ping batch that triggered it was received. Their difference is the push's latency, returned for
# the metric; a negative one (the clocks of two machines disagreeing) counts as 0, as in the stats.
MARK_SENT = """
UPDATE deliveries d SET status = 'sent', sent_at = a, fcm_message_name = m, error_code = NULL
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS t(i, m, a)
WHERE d.id = i AND d.status = 'sending'
RETURNING d.id, extract(epoch FROM greatest(a - d.created_at, interval '0'))::float8 AS latency
"""
MARK_FINAL = """
UPDATE deliveries SET status = s, error_code = e
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(i, s, e)
WHERE id = i AND status = 'sending'
RETURNING id
"""
MARK_RETRY = """
UPDATE deliveries SET status = 'queued', next_attempt_at = n, error_code = e, claimed_at = NULL
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS t(i, n, e)
WHERE id = i AND status = 'sending'
"""
RETIRE_ADDRESSES = """
UPDATE devices SET push_retired_at = $2
WHERE id IN (SELECT device_id FROM deliveries WHERE id = any($1::uuid[]))
  AND push_retired_at IS NULL
"""


class PushRecorded(msgspec.Struct, kw_only=True, frozen=True):
    """One outcome as it was recorded, for whoever watches the sends (the live feed)."""

    delivery_id: UUID
    campaign_id: UUID
    store_id: UUID
    fence_id: UUID | None
    device_id: UUID | None
    trigger_kind: str
    status: Literal["sent", "failed", "expired", "retrying"]
    error_code: str | None
    at: datetime


class Backoff(msgspec.Struct, kw_only=True, frozen=True):
    """How a refused push is retried: exponential steps from `base_seconds` up to
    `cap_seconds`, at most `max_attempts` sends in all."""

    base_seconds: float = 1.0
    cap_seconds: float = 600.0
    max_attempts: int = 8

    def seconds(self, attempts: int, retry_after: float | None,
                rand: Callable[[], float] = random.random) -> float:
        """The wait after the `attempts`-th send: the step with jitter (half to full of it), and
        never less than the Retry-After FCM asked for — which may exceed the cap: FCM's word on
        when to come back outranks ours."""
        step = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        delay = step * (0.5 + 0.5 * rand())
        return float(max(delay, retry_after or 0.0))


class Dispatcher:
    def __init__(self, pool: asyncpg.Pool, gateway: FcmGateway, *, batch_size: int = BATCH_SIZE,
                 lease: timedelta = LEASE, backoff: Backoff | None = None,
                 on_result: Callable[[str], None] | None = None,
                 on_latency: Callable[[float], None] | None = None,
                 on_recorded: Callable[[list[PushRecorded]], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """`on_result` hears each outcome; `on_latency`, for each delivery recorded as sent,
        the seconds from its ping batch's receipt to FCM's acceptance (retries included);
        `on_recorded`, each batch of outcomes once recorded (it must not block)."""
        self.pool = pool
        self.gateway = gateway
        self.batch_size = batch_size
        self.lease = lease
        self.backoff = backoff or Backoff()
        self.on_result = on_result
        self.on_latency = on_latency
        self.on_recorded = on_recorded
        self.clock = clock

    async def claim(self, now: datetime) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn, conn.transaction():
            return list(await conn.fetch(CLAIM, now, self.batch_size, self.lease))

    async def run_once(self) -> int:
        """Claim one batch, send it, record the outcomes; return how many rows were claimed."""
        now = self.clock()
        rows = await self.claim(now)
        if not rows:
            return 0
        pushes: list[OutgoingPush] = []
        results: list[SendResult] = []
        for row in rows:
            push = _push_of(row)
            if push is None:
                results.append(SendResult(row["id"], "failed", error_code="NO_PUSH_ADDRESS"))
            else:
                pushes.append(push)
        claimed = {r["id"]: r for r in rows}
        if results:
            await self.record(results, claimed)
        if pushes:
            heard: list[SendResult] = []
            done = asyncio.Event()
            recording = asyncio.create_task(self._record_as_heard(heard, claimed, done))
            renewing = asyncio.create_task(self._renew_lease([p.delivery_id for p in pushes], now))
            try:
                # The clock itself, not an instant: each push is timed when it really leaves.
                await self.gateway.send(pushes, self.clock, on_result=heard.append)
            finally:
                done.set()
                renewing.cancel()
                with suppress(asyncio.CancelledError):
                    await renewing
                await recording
        return len(rows)

    async def _record_as_heard(self, heard: list[SendResult],
                               claimed: dict[UUID, asyncpg.Record], done: asyncio.Event) -> None:
        """Record what `heard` collects every RECORD_EVERY_SECONDS, and the rest once `done`."""
        while True:
            finished = done.is_set()
            if not finished:
                with suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), RECORD_EVERY_SECONDS)
                finished = done.is_set()
            batch, heard[:] = heard[:], []
            if batch:
                await self.record(batch, claimed)
            if finished:
                return

    async def _renew_lease(self, ids: list[UUID], claimed_at: datetime) -> None:
        """Keep the rows being sent ours for as long as the sending takes; a renewal that
        fails is only logged (the rows may then be sent by another worker too, and collapse)."""
        every = self.lease.total_seconds() / RENEWALS_PER_LEASE
        mark = claimed_at
        while True:
            await asyncio.sleep(every)
            renewed = self.clock()
            try:
                await self.pool.execute(RENEW_LEASE, ids, renewed, mark)
            except (asyncpg.PostgresError, OSError):
                log.warning("could not renew the lease of %d deliveries", len(ids))
                continue
            mark = renewed

    async def record(self, results: Sequence[SendResult],
                     claimed: dict[UUID, asyncpg.Record]) -> None:
        now = self.clock()
        sent = [r for r in results if r.outcome == "sent"]
        final: list[tuple[UUID, str, str | None]] = []
        retry: list[tuple[UUID, datetime, str | None]] = []
        retire: list[UUID] = []
        for r in results:
            row = claimed[r.delivery_id]
            if r.outcome == "expired":
                final.append((r.delivery_id, "expired", None))
            elif r.outcome in ("failed", "retire"):
                final.append((r.delivery_id, "failed", r.error_code))
                if r.outcome == "retire":
                    retire.append(r.delivery_id)
            elif r.outcome == "retry":
                at = now + timedelta(seconds=self.backoff.seconds(row["attempts"],
                                                                  r.retry_after_seconds))
                if row["attempts"] >= self.backoff.max_attempts:
                    final.append((r.delivery_id, "failed", r.error_code))
                elif at > row["expires_at"] - MIN_SEND_LIFETIME:  # the retry could not go
                    final.append((r.delivery_id, "expired", r.error_code))
                else:
                    retry.append((r.delivery_id, at, r.error_code))
        latencies: list[float] = []
        async with self.pool.acquire() as conn, conn.transaction():
            settled: list[UUID] = []  # for the webhook stream, in this same transaction
            if sent:
                marked = await conn.fetch(MARK_SENT, [r.delivery_id for r in sent],
                                          [r.message_name for r in sent],
                                          [r.accepted_at or now for r in sent])
                latencies = [row["latency"] for row in marked]
                settled.extend(row["id"] for row in marked)
            if final:
                ended = await conn.fetch(MARK_FINAL, *map(list, zip(*final, strict=True)))
                settled.extend(row["id"] for row in ended)
            await webhook_events.record_outcomes(conn, settled, now)
            if retry:
                await conn.execute(MARK_RETRY, *map(list, zip(*retry, strict=True)))
            if retire:
                await conn.execute(RETIRE_ADDRESSES, retire, now)
        if self.on_result is not None:
            for r in results:
                self.on_result(r.outcome)
        if self.on_latency is not None:
            for seconds in latencies:
                self.on_latency(seconds)
        if self.on_recorded is not None:
            self.on_recorded(_recorded(results, final, retry, claimed, now))

    async def run(self, dsn: str, stop: asyncio.Event) -> None:
        """Drain the outbox until `stop` is set, woken at once by NOTIFY on new deliveries."""
        async with notified(dsn, "contexto_outbox") as wake:
            log.info("dispatching from the outbox (lease %.1f s)", self.lease.total_seconds())
            while not stop.is_set():
                # Cleared before the round, not after: a NOTIFY that comes while a batch is
                # out starts the next round at once instead of being lost until the next due
                # time (under load, that was most of a push's wait after its ping was answered).
                wake.clear()
                try:
                    claimed = await self.run_once()
                except (asyncpg.PostgresError, OSError):
                    log.exception("dispatch round failed; retrying shortly")
                    claimed = 0
                    await asyncio.sleep(1.0)
                if claimed >= self.batch_size or wake.is_set():
                    continue  # more may be waiting
                await wait_any((wake, stop), await idle_seconds(
                    self.pool, NEXT_DUE, self.lease, self.clock,
                    idle_cap=IDLE_WAKE_SECONDS, idle_floor=MIN_IDLE_SECONDS))


def _recorded(results: Sequence[SendResult], final: list[tuple[UUID, str, str | None]],
              retry: list[tuple[UUID, datetime, str | None]],
              claimed: dict[UUID, asyncpg.Record], now: datetime) -> list[PushRecorded]:
    status: dict[UUID, tuple[Any, str | None, datetime]] = {
        r.delivery_id: ("sent", None, r.accepted_at or now)
        for r in results if r.outcome == "sent"}
    status.update((i, (s, e, now)) for i, s, e in final)
    status.update((i, ("retrying", e, now)) for i, _, e in retry)
    return [PushRecorded(delivery_id=i, campaign_id=claimed[i]["campaign_id"],
                         store_id=claimed[i]["store_id"], fence_id=claimed[i]["fence_id"],
                         device_id=claimed[i]["device_id"],
                         trigger_kind=claimed[i]["trigger_kind"], status=s, error_code=e, at=at)
            for i, (s, e, at) in status.items()]


def _push_of(row: asyncpg.Record) -> OutgoingPush | None:
    if row["push_retired_at"] is not None or not (row["fcm_token"] or row["fid"]):
        return None
    offer: dict[str, Any] = row["offer"]
    return OutgoingPush(
        delivery_id=row["id"], campaign_id=row["campaign_id"],
        token=row["fcm_token"] or None, fid=None if row["fcm_token"] else row["fid"],
        title=offer["title"], body=offer["body"], image_url=offer.get("image_url"),
        deep_link=offer.get("deep_link"), data=dict(offer.get("data") or {}),
        expires_at=row["expires_at"],
    )


async def _main() -> None:
    import os
    import signal

    from app.db import open_pool
    from app.lifespan import dispatcher_of, gateway_of
    from app.settings import from_environment

    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("python -m campaigns.dispatch needs DATABASE_URL (the service's database)")
    settings = from_environment(os.environ, database_url=database_url, admin_token=None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request at INFO: a line per push would cost more than the push.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = asyncio.Event()
    # SIGTERM (a deploy, a scale-in) and Ctrl-C finish the batch in hand and record it, so a
    # polite stop resends nothing; only a kill leaves rows to the lease.
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pool = await open_pool(database_url)
    gateway = gateway_of(settings, settings.fcm_endpoint)
    try:
        await dispatcher_of(settings, pool, gateway).run(database_url, stop)
    finally:
        await gateway.close()
        await pool.close()
    log.info("stopped")


if __name__ == "__main__":
    asyncio.run(_main())
