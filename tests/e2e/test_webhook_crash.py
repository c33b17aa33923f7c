"""Crash safety of the webhook relay: `python -m campaigns.webhooks.relay` as a real process,
killed with SIGKILL while POSTs are in flight to a slow receiver, then restarted: every event
still arrives (the rows the dead relay had claimed go out again when their lease runs out), and
only those in flight at the kill may arrive twice — which the receiver dedupes by event id.

The relay reads the system clock, so the events are written at the real now.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import asyncpg

from app.clock import system_clock
from campaigns.webhooks import store
from campaigns.webhooks.relay import READY_LINE
from campaigns.webhooks.sealing import Sealer
from campaigns.webhooks.signing import SIGNATURE_HEADER, verify
from tests.webhook_receiver import Script, receiver_thread

ROOT = Path(__file__).resolve().parents[2]
KEY = "crash-test-webhook-key-0123456789abcdef"
SECRET = "crash-test-receiver-secret-0123456789"
EVENTS = 120
CONCURRENCY = 8


@contextmanager
def relay(database_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items()}
    env.update(DATABASE_URL=database_url, WEBHOOK_SECRET_KEY=KEY, WEBHOOK_ALLOW_HOSTS="127.0.0.1",
               WEBHOOK_LEASE_SECONDS="2", WEBHOOK_TIMEOUT_SECONDS="1.5",
               WEBHOOK_CONCURRENCY=str(CONCURRENCY), PYTHONUNBUFFERED="1")
    with log.open("ab") as sink:
        process = subprocess.Popen([sys.executable, "-m", "campaigns.webhooks.relay"], cwd=ROOT,
                                   env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


async def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_relay_killed_mid_delivery_loses_nothing(database_url: str,
                                                        tmp_path: Path) -> None:
    with receiver_thread(Script(delay=0.1)) as receiver:
        conn = await asyncpg.connect(database_url)
        try:
            webhook_id = uuid4()
            await store.insert(conn, webhook_id, receiver.url, ["moment"],
                               Sealer(KEY).seal(webhook_id, SECRET), system_clock())
            ids = [r["id"] for r in await conn.fetch(
                """INSERT INTO webhook_events (id, type, created_at, data)
                   SELECT gen_random_uuid(), 'moment', now(), jsonb_build_object('n', n)
                   FROM generate_series(1, $1) AS n RETURNING id""", EVENTS)]

            with relay(database_url, tmp_path / "first.log") as first:
                await wait_for(lambda: len(receiver.arrivals) >= EVENTS // 3, 60,
                               "a third of the events to arrive")
                first.send_signal(signal.SIGKILL)
                assert first.wait(timeout=10) == -signal.SIGKILL
            in_flight = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'sending'")
            before = len(receiver.arrivals)

            with relay(database_url, tmp_path / "second.log") as second:
                async def drained() -> bool:
                    left: int = await conn.fetchval(
                        "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'")
                    return left == 0

                deadline = time.monotonic() + 60
                while not await drained():
                    assert time.monotonic() < deadline, (tmp_path / "second.log").read_text()
                    await asyncio.sleep(0.1)
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=15) == 0
            assert READY_LINE in (tmp_path / "second.log").read_text()
            statuses = Counter(r["status"] for r in await conn.fetch(
                "SELECT status FROM webhook_deliveries"))
        finally:
            await conn.close()

    assert 0 < before < EVENTS
    assert in_flight > 0  # the kill left claimed rows behind
    arrivals = Counter(receiver.ids())
    assert set(arrivals) == {str(i) for i in ids}  # none lost
    assert statuses == Counter({"delivered": EVENTS})
    # Only what was in flight at the kill may have been sent twice.
    assert sum(n - 1 for n in arrivals.values()) <= in_flight <= CONCURRENCY
    assert all(verify(SECRET, a.headers[SIGNATURE_HEADER.lower()], a.body, time.time())
               for a in receiver.arrivals)
