"""The relay alone on a real database: answers that will not change are dead letters at once,
and the address rules are applied again at send time (a host that resolves to a private address
by then is refused without a connection)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from app.db import open_pool
from campaigns.webhooks import store
from campaigns.webhooks.relay import Relay
from campaigns.webhooks.safety import AllowList
from campaigns.webhooks.sealing import Sealer
from tests.clock import CLOCK
from tests.webhook_receiver import Script, receiver_thread

KEY = "integration-webhook-key-0123456789abcdef"


async def seeded(database_url: str, url: str, events: int) -> UUID:
    conn = await asyncpg.connect(database_url)
    try:
        webhook_id = uuid4()
        await store.insert(conn, webhook_id, url, ["moment"],
                           Sealer(KEY).seal(webhook_id, "secret-0123456789abcdef"), CLOCK())
        await conn.execute("""
            INSERT INTO webhook_events (id, type, created_at, data)
            SELECT gen_random_uuid(), 'moment', $2, jsonb_build_object('n', n)
            FROM generate_series(1, $1) AS n""", events, CLOCK())
        return webhook_id
    finally:
        await conn.close()


@asynccontextmanager
async def relaying(database_url: str, resolver: Callable[[str, int], Any] | None = None,
                   attempt_seconds: float = 2.0) -> AsyncIterator[None]:
    pool = await open_pool(database_url, min_size=1, max_size=4)
    relay = Relay(pool, Sealer(KEY), AllowList.parse("127.0.0.1"), clock=CLOCK,
                  timeout=attempt_seconds, lease=timedelta(seconds=attempt_seconds * 2.5),
                  resolver=resolver)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(database_url, stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await pool.close()


async def attempts_when_settled(database_url: str, count: int) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + 15
        while True:
            rows = await conn.fetch(
                "SELECT a.outcome, a.response_code, a.error, d.status FROM webhook_attempts a "
                "JOIN webhook_deliveries d ON d.id = a.delivery_id ORDER BY a.at")
            if len(rows) >= count:
                return list(rows)
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


@pytest.mark.parametrize(("status", "why"), [
    (410, "a receiver that says gone"), (400, "a receiver that refuses the request"),
    (302, "a redirect, which is never followed"),
])
async def test_an_answer_that_will_not_change_is_a_dead_letter_at_once(
        database_url: str, status: int, why: str) -> None:
    with receiver_thread(Script(status=status)) as receiver:
        await seeded(database_url, receiver.url, 2)
        async with relaying(database_url):
            rows = await attempts_when_settled(database_url, 2)
            await asyncio.sleep(0.3)
    assert [(r["outcome"], r["response_code"], r["status"]) for r in rows] == [
        ("dead", status, "dead")] * 2, why
    assert len(receiver.arrivals) == 2


async def test_a_host_that_now_resolves_to_a_private_address_is_refused_at_send_time(
        database_url: str) -> None:
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["10.0.0.5"]  # public when subscribed; private now

    await seeded(database_url, "https://hooks.example.com/contexto", 1)
    async with relaying(database_url, resolver=rebinding):
        (row,) = await attempts_when_settled(database_url, 1)
    assert asked == ["hooks.example.com"]
    assert (row["outcome"], row["response_code"], row["status"]) == ("dead", None, "dead")
    assert "10.0.0.5, a private address" in row["error"]


async def test_a_secret_sealed_under_another_key_leaves_its_deliveries_queued(
        database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        webhook_id = uuid4()
        await store.insert(conn, webhook_id, "http://127.0.0.1:9/h", ["moment"],
                           Sealer("another-key-" + "x" * 32).seal(webhook_id, "s" * 20), CLOCK())
        await conn.execute("INSERT INTO webhook_events (id, type, created_at, data) "
                           "VALUES (gen_random_uuid(), 'moment', $1, '{}')", CLOCK())
        async with relaying(database_url):
            await asyncio.sleep(1.5)
        rows = await conn.fetch("SELECT status, attempts FROM webhook_deliveries")
        logged = await conn.fetchval("SELECT count(*) FROM webhook_attempts")
    finally:
        await conn.close()
    assert ([(r["status"], r["attempts"]) for r in rows], logged) == ([("queued", 0)], 0)


async def test_a_receiver_that_hangs_does_not_hold_up_another(database_url: str) -> None:
    with receiver_thread(Script(delay=30.0)) as hanging, receiver_thread() as healthy:
        stuck = await seeded(database_url, hanging.url, 0)
        await seeded(database_url, healthy.url, 20)  # both subscriptions get all 20 events
        conn = await asyncpg.connect(database_url)
        try:
            async with relaying(database_url, attempt_seconds=4.0):
                deadline = time.monotonic() + 30
                while len(healthy.arrivals) < 20:
                    assert time.monotonic() < deadline, len(healthy.arrivals)
                    await asyncio.sleep(0.02)
                held = len(hanging.arrivals)
                answered = await conn.fetchval(
                    "SELECT count(*) FROM webhook_attempts WHERE webhook_id = $1", stuck)
        finally:
            await conn.close()
    # The healthy receiver had every event while the hanging one held POSTs of its own, none
    # of them answered or timed out yet.
    assert (held > 0, answered) == (True, 0)
