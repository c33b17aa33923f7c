"""The relay: fans the event stream out to subscriptions and POSTs each event to each receiver,
a sibling of the push dispatcher.

One rule: at least once per (subscription, event), and one receiver never holds up another.
Events are fanned out into delivery rows in one transaction that marks them done (so each is
fanned out exactly once); deliveries are claimed per subscription with `FOR UPDATE SKIP LOCKED`
and a lease (any number of relays share the queue; a killed relay's rows go out again when their
lease runs out); each subscription is drained by its own task, at most `concurrency` POSTs in
flight to it, so a slow or dead receiver only ever waits on itself. Every attempt is logged with
its outcome in the transaction that moves its delivery on: delivered; retried after an
exponential, jittered wait (never sooner than the receiver's Retry-After) on a timeout, a
connection error, 408, 429 or 5xx; dead once the retry window (24 h from the first attempt) is
over, or at once for an answer that will not change (3xx, other 4xx, an address `safety`
refuses).

Runs inside the server process by default, or alone: `python -m campaigns.webhooks.relay`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import httpx
import msgspec

from campaigns.wakeup import idle_seconds, notified, wait_any
from campaigns.webhooks import sender
from campaigns.webhooks.safety import AllowList, Resolver, UnsafeUrl, target_of
from campaigns.webhooks.sealing import Sealer, SecretUnreadable
from campaigns.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, signature

log = logging.getLogger("contexto.webhooks")

READY_LINE = "relaying webhooks"
FAN_OUT_BATCH = 1000
IDLE_WAKE_SECONDS = 1.0  # re-check for retries come due (and a clock moved by a test)
MIN_IDLE_SECONDS = 0.02
MAX_RECEIVERS = 64  # subscriptions drained at once by one relay
CLAIM_ROUNDS = 4

FAN_OUT = """
WITH ev AS (
    SELECT id, type FROM webhook_events WHERE fanned_out_at IS NULL
    ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT $2
), queued AS (
    INSERT INTO webhook_deliveries (id, webhook_id, event_id, created_at, next_attempt_at)
    SELECT gen_random_uuid(), w.id, ev.id, $1, $1
    FROM ev JOIN webhooks w ON ev.type = any(w.events)
    RETURNING 1
), done AS (
    UPDATE webhook_events e SET fanned_out_at = $1 FROM ev WHERE e.id = ev.id RETURNING 1
)
SELECT (SELECT count(*) FROM done) AS events, (SELECT count(*) FROM queued) AS deliveries
"""
DUE_RECEIVERS = """
SELECT w.id FROM webhooks w
WHERE EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = w.id
              AND d.status = 'queued' AND d.next_attempt_at <= $1)
   OR EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = w.id
              AND d.status = 'sending' AND d.claimed_at < $1 - $2::interval)
"""
NEXT_DUE = """
SELECT least((SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'queued'),
             (SELECT min(claimed_at) + $1::interval FROM webhook_deliveries
              WHERE status = 'sending'))
"""
CLAIM = """
WITH due AS (
    SELECT id FROM webhook_deliveries
    WHERE webhook_id = $1 AND ((status = 'queued' AND next_attempt_at <= $2)
                               OR (status = 'sending' AND claimed_at < $2 - $4::interval))
    ORDER BY next_attempt_at, id
    FOR UPDATE SKIP LOCKED LIMIT $3
)
UPDATE webhook_deliveries d
SET status = 'sending', claimed_at = $2, attempts = d.attempts + 1,
    first_attempt_at = coalesce(d.first_attempt_at, $2)
FROM due, webhook_events e
WHERE d.id = due.id AND e.id = d.event_id
RETURNING d.id, d.attempts, d.first_attempt_at, e.id AS event_id, e.type, e.created_at, e.data
"""
SUBSCRIPTION = "SELECT id, url, secret_sealed FROM webhooks WHERE id = $1"
# Moves a claimed delivery on only while it is still this claim (a relay that lost its lease to
# another does not overwrite that one's outcome) and logs the attempt either way: one statement,
# so one round trip, atomic.
SETTLE = """
WITH moved AS (
    UPDATE webhook_deliveries
    SET status = $3::text, next_attempt_at = coalesce($4::timestamptz, next_attempt_at),
        claimed_at = NULL,
        finished_at = CASE WHEN $3::text IN ('delivered', 'dead') THEN $5::timestamptz END
    WHERE id = $1 AND status = 'sending' AND claimed_at = $2
)
INSERT INTO webhook_attempts (id, webhook_id, delivery_id, event_id, event_type, attempt, at,
                              outcome, latency_ms, response_code, error)
VALUES ($6, $7, $1, $8, $9, $10, $5, $11, $12, $13, $14)
"""


class RetryPolicy(msgspec.Struct, kw_only=True, frozen=True):
    """Exponential steps from `base_seconds` up to `cap_seconds`, jittered (half to full of the
    step), for `window_seconds` from the first attempt; the last attempt falls at the window's
    end, and a failure then is a dead letter."""

    base_seconds: float = 1.0
    cap_seconds: float = 3600.0
    window_seconds: float = 86400.0

    def next_attempt(self, attempts: int, first_attempt_at: datetime, now: datetime,
                     retry_after: float | None,
                     rand: Callable[[], float] = random.random) -> datetime | None:
        """When to try again after the `attempts`-th failure, or None: dead."""
        end = first_attempt_at + timedelta(seconds=self.window_seconds)
        if now >= end:
            return None
        step = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        delay = max(step * (0.5 + 0.5 * rand()), retry_after or 0.0)
        return min(now + timedelta(seconds=delay), end)


class Relay:
    def __init__(self, pool: asyncpg.Pool, sealer: Sealer, allow: AllowList, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 lease: timedelta = timedelta(seconds=30), retry: RetryPolicy | None = None,
                 timeout: float = 5.0, concurrency: int = 4,
                 resolver: Resolver | None = None,
                 on_attempt: Callable[[str], None] | None = None) -> None:
        """`concurrency`: POSTs in flight to one receiver; `lease` must outlast `timeout`
        (an attempt in flight keeps its claim without renewal)."""
        if lease.total_seconds() <= timeout:
            raise ValueError("the webhook lease must be longer than the attempt timeout")
        # A claim holds as many rounds of `concurrency` POSTs as fit in the lease with a round
        # to spare (each round lasts at most `timeout`), up to CLAIM_ROUNDS: fewer claims per
        # event, and no claimed row outlives its lease while its relay lives.
        rounds = max(1, min(CLAIM_ROUNDS, int(lease.total_seconds() / timeout) - 1))
        self.pool = pool
        self.sealer = sealer
        self.allow = allow
        self.clock = clock
        self.lease = lease
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.concurrency = concurrency
        self.claim_size = concurrency * rounds
        self.resolver = resolver
        self.on_attempt = on_attempt
        self._busy: dict[UUID, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._unreadable: set[UUID] = set()  # secrets this key does not open: said once

    def _client_for_one_receiver(self) -> httpx.AsyncClient:
        """A client (and so a connection pool) per drain: connections go to checked addresses,
        so one kept alive for a receiver must never carry another's requests (two hosts on one
        address would share a connection made, and its certificate checked, for the other)."""
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout), follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=self.concurrency,
                                max_keepalive_connections=self.concurrency))

    async def close(self) -> None:
        """Let the attempts in flight finish and be recorded (a polite stop resends nothing),
        then give up on any still hanging: their rows go out again when their lease runs out."""
        if self._busy:
            await asyncio.wait(list(self._busy.values()), timeout=self.timeout + 1.0)
        for task in self._busy.values():
            task.cancel()
        for task in list(self._busy.values()):
            with suppress(asyncio.CancelledError):
                await task

    async def fan_out(self) -> int:
        """Make the delivery rows of events not fanned out yet; return how many events."""
        total = 0
        while True:
            row = await self.pool.fetchrow(FAN_OUT, self.clock(), FAN_OUT_BATCH)
            assert row is not None
            events: int = row["events"]
            total += events
            if events < FAN_OUT_BATCH:
                return total

    async def run_once(self) -> int:
        """Fan out, then start draining each subscription with due deliveries that is not
        being drained already; return how many drains were started."""
        await self.fan_out()
        now = self.clock()
        started = 0
        for r in await self.pool.fetch(DUE_RECEIVERS, now, self.lease):
            webhook_id: UUID = r["id"]
            if webhook_id in self._busy or webhook_id in self._unreadable \
                    or len(self._busy) >= MAX_RECEIVERS:
                continue
            task = asyncio.create_task(self.drain(webhook_id), name=f"webhook-{webhook_id}")
            self._busy[webhook_id] = task
            task.add_done_callback(self._done_callback(webhook_id))
            started += 1
        return started

    def _done_callback(self, webhook_id: UUID) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._done(webhook_id)

    def _done(self, webhook_id: UUID) -> None:
        task = self._busy.pop(webhook_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("draining webhook %s failed", webhook_id, exc_info=task.exception())
        self._idle.set()

    async def drain(self, webhook_id: UUID) -> None:
        """POST this subscription's due deliveries, `concurrency` at a time, until none is due."""
        sub = await self.pool.fetchrow(SUBSCRIPTION, webhook_id)
        if sub is None:
            return
        try:
            secret = self.sealer.open(webhook_id, sub["secret_sealed"])
        except SecretUnreadable:
            if webhook_id not in self._unreadable:
                self._unreadable.add(webhook_id)
                log.error("webhook %s: its secret does not open with this WEBHOOK_SECRET_KEY; "
                          "its deliveries wait (re-create the subscription)", webhook_id)
            return
        async with self._client_for_one_receiver() as client:
            while True:
                claimed_at = self.clock()
                async with self.pool.acquire() as conn, conn.transaction():
                    rows = list(await conn.fetch(CLAIM, webhook_id, claimed_at,
                                                 self.claim_size, self.lease))
                if not rows:
                    return
                gate = asyncio.Semaphore(self.concurrency)
                await asyncio.gather(*(self._gated(gate, client, webhook_id, sub["url"], secret,
                                                   row, claimed_at) for row in rows))

    async def _gated(self, gate: asyncio.Semaphore, client: httpx.AsyncClient,
                     webhook_id: UUID, url: str, secret: str, row: asyncpg.Record,
                     claimed_at: datetime) -> None:
        async with gate:
            await self._attempt(client, webhook_id, url, secret, row, claimed_at)

    async def _attempt(self, client: httpx.AsyncClient, webhook_id: UUID, url: str,
                       secret: str, row: asyncpg.Record, claimed_at: datetime) -> None:
        body = msgspec.json.encode({"id": str(row["event_id"]), "type": row["type"],
                                    "created_at": row["created_at"], "data": row["data"]})
        now = self.clock()
        stamp = int(now.timestamp())
        headers = {SIGNATURE_HEADER: signature(secret, stamp, body),
                   EVENT_ID_HEADER: str(row["event_id"])}
        try:
            target = target_of(url, self.allow)
        except UnsafeUrl as exc:
            answer = sender.Answer("dead", 0.0, error=f"refused: {exc}")
        else:
            answer = await sender.post(client, target, body, headers,
                                       seconds=self.timeout, now=now, resolver=self.resolver)
        await self._settle(webhook_id, row, claimed_at, answer)

    async def _settle(self, webhook_id: UUID, row: asyncpg.Record, claimed_at: datetime,
                      answer: sender.Answer) -> None:
        now = self.clock()
        outcome: str = answer.verdict
        next_at: datetime | None = None
        error = answer.error
        if outcome == "retry":
            next_at = self.retry.next_attempt(row["attempts"], row["first_attempt_at"], now,
                                              answer.retry_after_seconds)
            if next_at is None:
                outcome = "dead"
                error = f"{error}; the retry window of {self.retry.window_seconds:g} s is over"
        status = "queued" if outcome == "retry" else outcome
        try:
            await self.pool.execute(SETTLE, row["id"], claimed_at, status, next_at, now,
                                    uuid4(), webhook_id, row["event_id"], row["type"],
                                    row["attempts"], outcome, answer.latency_ms, answer.status,
                                    error)
        except asyncpg.ForeignKeyViolationError:
            # The delivery went while it was in flight (its subscription was deleted, or the
            # device its event is about was erased): nothing is left to record it against.
            log.info("webhook %s: delivery %s was removed while in flight", webhook_id,
                     row["id"])
            return
        if self.on_attempt is not None:
            self.on_attempt(outcome)

    async def run(self, dsn: str, stop: asyncio.Event) -> None:
        """Relay until `stop` is set, woken at once by NOTIFY on new events and deliveries."""
        try:
            async with notified(dsn, "contexto_webhooks") as wake:
                log.info("%s (lease %.1f s, timeout %.1f s)", READY_LINE,
                         self.lease.total_seconds(), self.timeout)
                while not stop.is_set():
                    wake.clear()
                    self._idle.clear()
                    try:
                        await self.run_once()
                        idle = await idle_seconds(self.pool, NEXT_DUE, self.lease, self.clock,
                                                  idle_cap=IDLE_WAKE_SECONDS,
                                                  idle_floor=MIN_IDLE_SECONDS)
                    except (asyncpg.PostgresError, OSError):
                        log.exception("webhook round failed; retrying shortly")
                        idle = 1.0
                    await wait_any((wake, stop, self._idle), idle)
        finally:
            await self.close()


async def _main() -> None:
    import os
    import signal

    from app.db import open_pool
    from app.relay import relay_of
    from app.settings import from_environment

    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("python -m campaigns.webhooks.relay needs DATABASE_URL")
    settings = from_environment(os.environ, database_url=database_url, admin_token=None)
    if not settings.webhook_secret_key:
        raise SystemExit("python -m campaigns.webhooks.relay needs WEBHOOK_SECRET_KEY (the "
                         "service's, which sealed the subscriptions' secrets)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pool = await open_pool(database_url)
    try:
        await relay_of(settings, pool).run(database_url, stop)
    finally:
        await pool.close()
    log.info("stopped")


if __name__ == "__main__":
    asyncio.run(_main())
