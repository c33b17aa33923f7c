"""Webhooks end to end: the app with its dispatcher and relay, the FCM emulator, and a real
receiver on loopback (tests/webhook_receiver.py).

Signatures are checked as a customer's receiver checks them (`signing.verify`), against the
app's clock: the suite pins it (tests/clock.py), so the `t` the relay signs is pinned time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from campaigns.webhooks.signing import SIGNATURE_HEADER, verify
from tests.clock import CLOCK
from tests.e2e.conftest import World, build_world
from tests.webhook_receiver import Receiver, Script, receiver_thread, unused_port

ALL = ["moment", "delivery.sent", "delivery.failed", "delivery.opened", "delivery.redeemed",
       "conversion"]
# Retries in tenths of a second, so a test sees several in real time.
QUICK = {"webhook_backoff_base_seconds": 0.05, "webhook_backoff_cap_seconds": 0.2}


@pytest.fixture
async def hooked(database_url: str) -> AsyncIterator[World]:
    async with build_world(database_url, run_dispatcher=True, **QUICK) as w:
        yield w


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


async def subscribe(world: World, url: str, events: list[str]) -> dict[str, Any]:
    created: dict[str, Any] = await world.api.ok("POST", "/v1/webhooks",
                                                 json={"url": url, "events": events})
    return created


async def stream(world: World) -> dict[str, dict[str, Any]]:
    """Every event the service wrote, by id."""
    rows = await world.sql("SELECT id, type, data FROM webhook_events")
    return {str(r["id"]): {"type": r["type"], "data": r["data"]} for r in rows}


async def attempts(world: World, webhook_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await world.api.ok("GET", f"/v1/webhooks/{webhook_id}/deliveries?limit=1000"
                                  + (f"&cursor={cursor}" if cursor else ""))
        found.extend(page["items"])
        if not page["next_cursor"]:
            return found
        cursor = page["next_cursor"]


def signed(receiver: Receiver, secret: str) -> bool:
    return all(verify(secret, a.headers[SIGNATURE_HEADER.lower()], a.body, CLOCK.seconds())
               for a in receiver.arrivals)


async def test_every_event_of_a_pipeline_run_arrives_once_signed_and_a_replay_resends_it(
        hooked: World) -> None:
    world = hooked
    with receiver_thread() as receiver:
        hook = await subscribe(world, receiver.url, ALL)
        campaign = await world.campaign()
        _, token = await world.device(customer_id="cust-42")
        _, doomed = await world.device(token="unregistered-phone")
        await world.walk_in(token)
        await world.walk_in(doomed)
        rows = await world.settled_rows(campaign["id"])
        sent = next(r for r in rows if r["status"] == "sent")
        for kind in ("opened", "redeemed"):
            await world.api.ok("POST", f"/v1/deliveries/{sent['id']}/events", token,
                               expect=202, json={"kind": kind, "ts": CLOCK().isoformat()})
        purchase = {"kind": "purchase", "ts": CLOCK().isoformat(),
                    "attributes": {"amount": "12.50", "store_id": world.store_id}}
        for _ in range(2):  # a retried batch: one purchase
            await world.api.ok("POST", "/v1/signals", token, expect=202,
                               json={"signals": [purchase]})
        await world.walk_out(token)
        await world.walk_in(token, start=CLOCK() + timedelta(seconds=1))  # back: a visit

        written = await stream(world)

        async def all_arrived() -> bool:
            return set(receiver.ids()) >= set(written)

        await until(all_arrived, 15, "every event to reach the receiver")
        await asyncio.sleep(0.3)  # anything sent twice would show now

        arrived = [a.event for a in receiver.arrivals]
        assert Counter(receiver.ids()) == Counter(dict.fromkeys(written, 1))
        assert signed(receiver, hook["secret"])
        assert all(a.headers["contexto-event-id"] == a.event["id"] for a in receiver.arrivals)
        assert all(set(e) == {"id", "type", "created_at", "data"} for e in arrived)
        kinds = Counter(e["type"] if e["type"] != "moment" else f"moment.{e['data']['kind']}"
                        for e in arrived)
        assert kinds == Counter({"moment.enter": 3, "moment.dwell": 3, "moment.exit": 1,
                                 "delivery.sent": 1, "delivery.failed": 1,
                                 "delivery.opened": 1, "delivery.redeemed": 1,
                                 "conversion": 2})
        conversions = {e["data"]["kind"]: e["data"] for e in arrived
                       if e["type"] == "conversion"}
        assert {k: (c["delivery_id"], c["customer_id"]) for k, c in conversions.items()} == {
            "purchase": (sent["id"], "cust-42"), "visit": (sent["id"], "cust-42")}
        assert conversions["purchase"]["amount"] == "12.50"
        assert conversions["visit"]["store_id"] == world.store_id
        log = await attempts(world, hook["id"])
        assert Counter(a["status"] for a in log) == Counter({"delivered": len(written)})
        assert all(a["response_code"] == 200 and a["latency_ms"] >= 0 for a in log)

        replayed = await world.api.ok(
            "POST", f"/v1/webhooks/{hook['id']}/replay", expect=202,
            json={"from": (CLOCK() - timedelta(hours=1)).isoformat(),
                  "to": (CLOCK() + timedelta(seconds=1)).isoformat()})
        assert replayed == {"queued": len(written)}

        async def replay_arrived() -> bool:
            return len(receiver.arrivals) >= 2 * len(written)

        await until(replay_arrived, 15, "the replay to reach the receiver")
        assert Counter(receiver.ids()) == Counter(dict.fromkeys(written, 2))
        assert signed(receiver, hook["secret"])


async def test_a_failing_receiver_gets_each_event_later_once_by_id_when_it_asked(
        hooked: World) -> None:
    world = hooked
    with receiver_thread(Script(fail_first=2, retry_after=1)) as receiver:
        hook = await subscribe(world, receiver.url, ["moment"])
        _, token = await world.device()
        await world.walk_in(token)
        written = await stream(world)
        assert written

        async def delivered() -> bool:
            return set(a.headers["contexto-event-id"] for a in receiver.delivered()) == \
                set(written)

        await until(delivered, 15, "every event to be accepted")
        await asyncio.sleep(0.3)
        accepted = Counter(a.headers["contexto-event-id"] for a in receiver.delivered())
        assert accepted == Counter(dict.fromkeys(written, 1))
        assert Counter(receiver.ids()) == Counter(dict.fromkeys(written, 3))
        assert signed(receiver, hook["secret"])
        log = await attempts(world, hook["id"])
        by_event: dict[str, list[tuple[int, str, int]]] = {}
        for a in log:
            by_event.setdefault(a["event_id"], []).append(
                (a["attempt"], a["status"], a["response_code"]))
        assert by_event == {e: [(1, "retry", 503), (2, "retry", 503), (3, "delivered", 200)]
                            for e in written}
        # The receiver asked for a second's pause (Retry-After: 1), ten times the backoff.
        times: dict[str, list[float]] = {}
        for a in receiver.arrivals:
            times.setdefault(a.headers["contexto-event-id"], []).append(a.received_at)
        gaps = [b - a for stamps in times.values() for a, b in itertools.pairwise(stamps)]
        assert min(gaps) >= 0.95, gaps


async def test_a_receiver_down_longer_than_the_retry_window_ends_with_dead_letters(
        hooked: World) -> None:
    world = hooked
    down = f"http://127.0.0.1:{unused_port()}/hooks"
    hook = await subscribe(world, down, ["moment"])
    _, token = await world.device()
    await world.walk_in(token)
    written = await stream(world)
    assert written

    async def retried() -> bool:
        log = await attempts(world, hook["id"])
        return {a["event_id"] for a in log if a["status"] == "retry"} == set(written)

    await until(retried, 15, "a first failed attempt of every event")
    CLOCK.advance(timedelta(hours=24, minutes=1))

    async def dead() -> bool:
        log = await attempts(world, hook["id"])
        return {a["event_id"] for a in log if a["status"] == "dead"} == set(written)

    await until(dead, 15, "every event to be dead-lettered")
    log = await attempts(world, hook["id"])
    assert all(a["response_code"] is None and a["error"] for a in log)
    assert all(a["delivery_status"] == "dead" for a in log)
    last = {a["event_id"]: a for a in log}
    assert all("retry window" in a["error"] for a in last.values())
    # Nothing is tried after a dead letter.
    before = len(log)
    await asyncio.sleep(1.5)
    assert len(await attempts(world, hook["id"])) == before


async def test_erasing_a_device_erases_its_events_sent_or_not(hooked: World) -> None:
    world = hooked
    with receiver_thread() as receiver:
        await subscribe(world, receiver.url, ["moment"])
        device_id, token = await world.device(customer_id="cust-erased")
        await world.walk_in(token)

        async def arrived() -> bool:
            return len(receiver.arrivals) >= 1

        await until(arrived, 15, "the first event to arrive")
        export = await world.api.ok("GET", "/v1/devices/me/export", token)
        assert {e["type"] for e in export["webhook_events"]} == {"moment"}
        assert all(e["data"]["device_id"] == device_id for e in export["webhook_events"])
        await world.api.ok("DELETE", "/v1/devices/me", token)

    left = await world.sql(
        "SELECT count(*) AS n FROM webhook_events WHERE device_id = $1 "
        "OR data::text LIKE '%cust-erased%'", UUID(device_id))
    assert left[0]["n"] == 0
    assert (await world.sql("SELECT count(*) AS n FROM webhook_deliveries"))[0]["n"] == 0


async def test_a_predicted_next_store_is_a_moment_on_the_stream(hooked: World) -> None:
    from tests.e2e.test_predicted_next import _campaign_for, _device_of, _routine

    world = hooked
    with receiver_thread() as receiver:
        await subscribe(world, receiver.url, ["moment"])
        store_b, customer, _ = await _routine(world, "cust-streamed")
        await world.campaign(**_campaign_for(store_b, 0.2))
        token = await _device_of(world, customer)
        now = CLOCK()
        await world.walk_in(token, start=now - timedelta(minutes=4))
        await world.walk_out(token, start=now - timedelta(minutes=2))
        written = await stream(world)

        async def all_arrived() -> bool:
            return set(receiver.ids()) >= set(written)

        await until(all_arrived, 15, "every event to reach the receiver")
    kinds = sorted(a.event["data"]["kind"] for a in receiver.arrivals)
    assert kinds == ["dwell", "enter", "exit", "predicted_next"]
    predicted = next(a.event["data"] for a in receiver.arrivals
                     if a.event["data"]["kind"] == "predicted_next")
    assert (predicted["store_id"], predicted["customer_id"]) == (store_b, customer)
    assert 0.2 <= predicted["probability"] <= 1.0
