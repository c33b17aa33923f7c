"""Crash safety of the push path: `python -m campaigns.dispatch` as a real process, killed with
SIGKILL in the middle of a slow batch and restarted; and the same dispatcher in a storm of 429 and
503 answers with Retry-After.

The outbox is a real PostgreSQL database seeded with the rows the service writes (the same
functions and SQL: a store, an active campaign, registered devices, `campaigns.outbox`'s insert);
the FCM emulator runs on loopback on its own thread; the dispatcher talks to it through the real
firebase-admin. The dispatcher reads the system clock, so every moment and expiry here is counted
from the real now when the rows are written, and nothing depends on the hour of the run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import msgspec

from app.clock import system_clock
from app.db import init_connection
from campaigns import devices, outbox
from campaigns import store as campaign_store
from campaigns.devices import Consent, DeviceIn
from campaigns.fcm import DEFAULT_MAX_IN_FLIGHT
from campaigns.model import CampaignSpec
from geo import store as geo_store
from geo.model import StoreIn
from tests.e2e.conftest import emulator_thread

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "contexto-crash"
READY_LINE = "dispatching from the outbox"
# How late a due row may reach the emulator on a busy machine (2 cores shared by several test
# runs): a round of sends itself takes up to half a second there.
SLACK = 2.0


# ---------------------------------------------------------------------------------------------
# The outbox, as the service writes it.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seeded:
    delivery_id: UUID
    token: str
    expires_at: datetime
    expected: str  # the one final state it must end in


async def seed(database_url: str, now: datetime,
               groups: list[tuple[str, int, timedelta, str]]) -> list[Seeded]:
    """Queue deliveries of one active campaign, each to its own device, moment `now`.

    Each group is (token prefix, how many, expires_at - now, the final state expected).
    """
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    try:
        async with conn.transaction():
            shop = await geo_store.insert_store(
                conn, StoreIn(name="Rue Cler", timezone="Europe/Paris"), now)
            spec = msgspec.convert({
                "name": "coffee at the door",
                "trigger": {"kind": "enter", "store_ids": [str(shop.id)]},
                "schedule": {"starts_at": (now - timedelta(days=1)).isoformat(),
                             "ends_at": (now + timedelta(days=1)).isoformat()},
                "offer": {"title": "Coffee -20 %", "body": "Today only, at the counter",
                          "deep_link": "shop://offers/coffee", "data": {"sku": "coffee-1"}},
                "offer_ttl_seconds": 900, "status": "active"}, CampaignSpec)
            campaign = await campaign_store.insert_campaign(conn, spec, now)
            seeded: list[Seeded] = []
            for prefix, count, lifetime, expected in groups:
                # An offer that ran out before it could go had its moment a TTL earlier.
                moment = now if lifetime > timedelta(0) else now + lifetime - timedelta(minutes=1)
                for i in range(count):
                    token = f"{prefix}{i}-{secrets.token_hex(4)}"
                    device_id = await devices.register(conn, DeviceIn(
                        platform="android", fcm_token=token, timezone="UTC",
                        consent=Consent(location=True, marketing_push=True)),
                        secrets.token_bytes(32), now)
                    delivery_id = uuid4()
                    await conn.execute(
                        outbox.INSERT_DELIVERY, delivery_id, campaign.id, device_id,
                        f"enter:{shop.id}:{moment.isoformat()}", "enter", None, shop.id, moment,
                        now + lifetime, None, None, now, None, None)
                    seeded.append(Seeded(delivery_id, token, now + lifetime, expected))
            return seeded
    finally:
        await conn.close()


async def statuses(database_url: str) -> dict[UUID, tuple[str, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id, status, attempts FROM deliveries")
    finally:
        await conn.close()
    return {r["id"]: (r["status"], r["attempts"]) for r in rows}


# ---------------------------------------------------------------------------------------------
# The dispatcher as its own process.
# ---------------------------------------------------------------------------------------------
class DispatcherProcess:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self, seconds: float = 60.0) -> None:
        await until(lambda: _true(READY_LINE in self.output() or self.process.poll() is not None),
                    seconds, "the dispatcher to start")
        assert self.process.poll() is None, self.output()


async def _true(value: bool) -> bool:
    return value


@contextmanager
def dispatcher(database_url: str, fcm_url: str, log: Path,
               **settings: str) -> Iterator[DispatcherProcess]:
    """`python -m campaigns.dispatch` with these settings; killed on the way out if still up."""
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(DATABASE_URL=database_url, FCM_ENDPOINT=fcm_url, FIREBASE_PROJECT_ID=PROJECT,
               PYTHONUNBUFFERED="1", **settings)
    with log.open("ab") as sink:
        process = subprocess.Popen([sys.executable, "-m", "campaigns.dispatch"], cwd=ROOT,
                                   env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield DispatcherProcess(process, log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str,
                every: float = 0.02) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(every)


async def until_drained(database_url: str, seconds: float = 60.0) -> None:
    """Wait until no delivery is queued or being sent (polled gently: the emulator shares this
    process, and the dispatcher's timing is under test)."""
    conn = await asyncpg.connect(database_url)
    try:
        async def drained() -> bool:
            pending: int = await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE status IN ('queued', 'sending')")
            return pending == 0

        await until(drained, seconds, "the outbox to drain", every=0.1)
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# What the emulator saw.
# ---------------------------------------------------------------------------------------------
async def received(emulator: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await emulator.get("/emulator/messages")
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def attempts(emulator: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await emulator.get("/emulator/attempts")
    response.raise_for_status()
    logged: list[dict[str, Any]] = response.json()["attempts"]
    return logged


def delivery_of(message: dict[str, Any]) -> UUID:
    return UUID(message["data"]["delivery_id"])


def collapse_ids(message: dict[str, Any]) -> tuple[str, str, str, str]:
    """Every id the platforms collapse a push on, and the delivery id the app reads."""
    return (message["android"]["collapse_key"], message["apns"]["headers"]["apns-collapse-id"],
            message["webpush"]["headers"]["Topic"], message["data"]["delivery_id"])


# ---------------------------------------------------------------------------------------------
# SIGKILL in the middle of a slow batch.
# ---------------------------------------------------------------------------------------------
async def test_a_dispatcher_killed_mid_batch_loses_nothing_and_its_resends_collapse(
        database_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    sendable = 300
    with emulator_thread() as fcm_url:
        async with httpx.AsyncClient(base_url=fcm_url) as emulator:
            # 50 sends in flight, each answered 300 ms after it arrives: ~2 s for the batch.
            (await emulator.post("/emulator/latency", json={"delay_ms": 300})).raise_for_status()
            now = system_clock()
            seeded = await seed(database_url, now, [
                ("tok-", sendable, timedelta(minutes=10), "sent"),
                ("unregistered-", 10, timedelta(minutes=10), "failed"),
                # Ran out while the dispatcher was down: never sent.
                ("late-", 10, timedelta(seconds=-1), "expired"),
            ])
            lease = 3.0  # renewed every 0.75 s while the batch is being sent
            settings = {"DISPATCH_LEASE_SECONDS": str(lease)}

            with dispatcher(database_url, fcm_url, tmp_path / "first.log", **settings) as first:
                await until(lambda: _count_at_least(emulator, sendable * 2 // 3), 60,
                            "two thirds of the batch to reach the emulator")
                first.process.send_signal(signal.SIGKILL)
                killed_at = system_clock()
                assert first.process.wait(timeout=10) == -signal.SIGKILL
            before_kill = await received(emulator)
            left_claimed = [s for s, _ in (await statuses(database_url)).values()
                            if s == "sending"]

            with dispatcher(database_url, fcm_url, tmp_path / "second.log", **settings) as second:
                await second.ready()
                ready_at = system_clock()
                await until_drained(database_url)
                second.process.send_signal(signal.SIGTERM)
                assert second.process.wait(timeout=15) == 0, second.output()
                assert "stopped" in second.output()
            after = await received(emulator)
            final = await statuses(database_url)

    # The kill came mid-batch: some but not all had arrived, and rows were left claimed.
    assert 0 < len(before_kill) < sendable
    assert left_claimed
    # Every delivery ends in exactly the one final state its situation calls for.
    assert {s.delivery_id: final[s.delivery_id][0] for s in seeded} == {
        s.delivery_id: s.expected for s in seeded}
    # None lost: every sendable delivery reached the emulator; nothing else did.
    arrivals = Counter(delivery_of(m["message"]) for m in after)
    assert set(arrivals) == {s.delivery_id for s in seeded if s.expected == "sent"}
    # A resend is the same push: one collapse key, apns-collapse-id, topic and delivery id.
    ids_of: dict[UUID, set[tuple[str, str, str, str]]] = defaultdict(set)
    for m in after:
        ids_of[delivery_of(m["message"])].add(collapse_ids(m["message"]))
    assert {d: len(ids) for d, ids in ids_of.items()} == {d: 1 for d in arrivals}
    assert all(ids == {(str(d), str(d), d.hex, str(d))} for d, ids in ids_of.items())
    # The rows left claimed go out again once their lease has run out, and not much later:
    # the restarted dispatcher wakes for the lease's end instead of idling past it.
    first_resend = min(datetime.fromisoformat(m["received_at"]) for m in after[len(before_kill):])
    assert first_resend >= killed_at + timedelta(seconds=lease * 3 / 4 - 0.1)
    assert first_resend <= max(killed_at + timedelta(seconds=lease), ready_at) + timedelta(
        seconds=SLACK)
    # Only what the killed process had sent is sent again, and at most once more.
    duplicated = {d for d, n in arrivals.items() if n > 1}
    assert duplicated <= {delivery_of(m["message"]) for m in before_kill}
    assert max(arrivals.values()) <= 2
    # Outcomes are recorded as they come, not at the end of the batch: what is sent again is
    # what was in flight (50 at most) or answered in the last moments before the process died,
    # not all it had sent (the margin is for a busy machine, where recording lags).
    assert len(duplicated) <= 3 * DEFAULT_MAX_IN_FLIGHT < len(before_kill)
    print(f"\ncrash: {sendable} sendable, {len(before_kill)} received before SIGKILL, "
          f"{len(left_claimed)} rows left claimed, {len(after)} received in all, "
          f"{len(duplicated)} duplicates (collapsed), first resend "
          f"{(first_resend - killed_at).total_seconds():.1f} s after the kill, "
          f"{time.monotonic() - started:.1f} s")


async def _count_at_least(emulator: httpx.AsyncClient, n: int) -> bool:
    return len(await received(emulator)) >= n


# ---------------------------------------------------------------------------------------------
# A storm of 429 and 503 with Retry-After.
# ---------------------------------------------------------------------------------------------
BACKOFF_CAP = 0.5
MAX_ATTEMPTS = 10


async def test_a_storm_of_429_and_503_is_retried_as_asked_and_nothing_leaves_after_expiry(
        database_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    long_lived, short_lived = 60, 20
    settings = {"DISPATCH_LEASE_SECONDS": "5", "DISPATCH_BACKOFF_BASE_SECONDS": "0.2",
                "DISPATCH_BACKOFF_CAP_SECONDS": str(BACKOFF_CAP),
                "DISPATCH_MAX_ATTEMPTS": str(MAX_ATTEMPTS), "FCM_QUOTA_RETRY_FLOOR_SECONDS": "1"}
    everyone = long_lived + short_lived
    storm = [{"status": 503, "count": everyone, "retry_after": 1},
             {"status": 429, "count": everyone, "retry_after": 2},
             # Then four rounds without Retry-After: the dispatcher's own backoff, whose step by
             # the sixth attempt (0.2 s x 2^5) would be 3.2 to 6.4 s without the cap.
             {"status": 500, "count": 4 * long_lived}]
    with emulator_thread() as fcm_url:
        async with httpx.AsyncClient(base_url=fcm_url) as emulator:
            for fault in storm:
                (await emulator.post("/emulator/faults", json=fault)).raise_for_status()
            with dispatcher(database_url, fcm_url, tmp_path / "storm.log", **settings) as run:
                await run.ready()
                seeded = await seed(database_url, system_clock(), [
                    ("tok-", long_lived, timedelta(minutes=10), "sent"),
                    # Refused twice, then told to wait 2 s: by then its offer has run out.
                    ("brief-", short_lived, timedelta(seconds=2.5), "expired"),
                ])
                await until_drained(database_url)
                run.process.send_signal(signal.SIGTERM)
                assert run.process.wait(timeout=15) == 0, run.output()
            logged = await attempts(emulator)
            final = await statuses(database_url)

    by_delivery: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for attempt in logged:
        by_delivery[delivery_of(attempt["message"])].append(attempt)
    expires_at = {s.delivery_id: s.expires_at for s in seeded}

    assert {s.delivery_id: final[s.delivery_id][0] for s in seeded} == {
        s.delivery_id: s.expected for s in seeded}
    # The storm was a storm: every fault was served, to someone.
    assert sum(a["status"] != 200 for a in logged) == sum(f["count"] for f in storm)
    # Each delivery was accepted once at most (exactly once if it was to be sent).
    accepted = Counter(d for d, tries in by_delivery.items() for a in tries if a["status"] == 200)
    assert accepted == Counter(s.delivery_id for s in seeded if s.expected == "sent")
    gaps: list[float] = []
    for delivery_id, tries in by_delivery.items():
        at = [datetime.fromisoformat(a["received_at"]) for a in tries]
        # Nothing reaches FCM once its offer has run out, not even a refused attempt.
        assert max(at) < expires_at[delivery_id]
        # Attempts are capped, and each one the emulator saw was counted by the outbox.
        assert len(tries) <= MAX_ATTEMPTS
        if final[delivery_id][0] == "sent":
            assert final[delivery_id][1] == len(tries)
        for i in range(1, len(tries)):
            gap = (at[i] - at[i - 1]).total_seconds()
            gaps.append(gap)
            asked = tries[i - 1]["retry_after"]
            if asked is not None:
                # Retry-After honoured: never back before FCM said (429 also waits the floor).
                assert gap >= asked, (delivery_id, tries, gap)
            # Bounded: the backoff step never exceeds the cap unless FCM asked for longer.
            assert gap <= max(BACKOFF_CAP, asked or 0.0) + SLACK, (delivery_id, tries, gap)
    print(f"\nstorm: {len(logged)} attempts for {everyone} deliveries, "
          f"{sum(a['status'] != 200 for a in logged)} refused, "
          f"{sum(1 for s in seeded if final[s.delivery_id][0] == 'expired')} expired, "
          f"longest gap {max(gaps):.2f} s, {time.monotonic() - started:.1f} s")


# ---------------------------------------------------------------------------------------------
# Two live workers, and a batch slower than the lease.
# ---------------------------------------------------------------------------------------------
async def test_a_live_dispatcher_keeps_its_rows_when_its_batch_outlasts_the_lease(
        database_url: str, tmp_path: Path) -> None:
    with emulator_thread() as fcm_url:
        async with httpx.AsyncClient(base_url=fcm_url) as emulator:
            # 300 sends, 50 at a time, 300 ms each: the batch takes about twice the lease.
            (await emulator.post("/emulator/latency", json={"delay_ms": 300})).raise_for_status()
            seeded = await seed(database_url, system_clock(), [
                ("tok-", 300, timedelta(minutes=10), "sent")])
            settings = {"DISPATCH_LEASE_SECONDS": "1"}
            with dispatcher(database_url, fcm_url, tmp_path / "a.log", **settings) as a, \
                    dispatcher(database_url, fcm_url, tmp_path / "b.log", **settings) as b:
                await until_drained(database_url)
                for worker in (a, b):
                    worker.process.send_signal(signal.SIGTERM)
                for worker in (a, b):
                    assert worker.process.wait(timeout=15) == 0, worker.output()
            arrivals = Counter(delivery_of(m["message"]) for m in await received(emulator))
            final = await statuses(database_url)

    # The idle worker never took over rows the busy one was still sending: each went out once.
    assert arrivals == Counter(s.delivery_id for s in seeded)
    assert {final[s.delivery_id] for s in seeded} == {("sent", 1)}
