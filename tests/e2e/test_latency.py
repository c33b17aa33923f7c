"""Ping received → FCM accepted, through the API, the dispatcher and the FCM emulator: the stats'
percentiles and the /metrics histogram.

The clock stands still, so the only time that passes is the time a test moves it by: a push is
accepted exactly as long after its ping batch as the test advanced the clock while the push was
out (the emulator holds its answer, so the advance always falls inside the send).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import PUSH_LATENCY_BUCKETS
from tests.clock import CLOCK
from tests.e2e.conftest import World

HISTOGRAM = "contexto_push_latency_seconds"
# Seconds between each ping batch and FCM's acceptance of its push: spread over the buckets, and
# so that p95 and p99 interpolate between the two slowest.
LATENCIES = (0.8, 1.5, 2.2, 9.0, 45.0)
FCM_ANSWERS_AFTER_MS = 300


async def histogram(world: World) -> dict[str, float]:
    """The push latency histogram's samples: `count`, `sum`, and each bucket by its `le`."""
    response = await world.api.call("GET", "/metrics")
    values: dict[str, float] = {"count": 0.0, "sum": 0.0}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == f"{HISTOGRAM}_bucket":
                values[s.labels["le"]] = s.value
            elif s.name in (f"{HISTOGRAM}_count", f"{HISTOGRAM}_sum"):
                values[s.name.rsplit("_", 1)[1]] = s.value
    return values


async def wait_for_deliveries(world: World, campaign_id: str,
                              done: Callable[[list[dict[str, Any]]], bool],
                              seconds: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        rows = await world.delivery_rows(campaign_id)
        if done(rows):
            return rows
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.05)


def stop_clock() -> datetime:
    """Stop the clock where it is now; return that instant."""
    CLOCK.set(CLOCK())
    CLOCK.running = False
    return CLOCK()


def latency_ms(row: dict[str, Any]) -> float:
    sent = datetime.fromisoformat(row["sent_at"])
    received = datetime.fromisoformat(row["created_at"])
    return (sent - received).total_seconds() * 1000


async def test_stats_percentiles_are_those_of_the_sent_deliveries_and_the_histogram_counts_each(
        world: World) -> None:
    campaign = await world.campaign()
    before = await histogram(world)
    (await world.emulator.post("/emulator/latency",
                               json={"delay_ms": FCM_ANSWERS_AFTER_MS})).raise_for_status()
    stop_clock()
    for sent, seconds in enumerate(LATENCIES, start=1):
        _, token = await world.device()
        await world.walk_in(token)
        CLOCK.advance(timedelta(seconds=seconds))  # while FCM holds its answer
        await wait_for_deliveries(world, campaign["id"],
                                  lambda rows, n=sent: sum(r["status"] == "sent"
                                                           for r in rows) == n)

    rows = await world.delivery_rows(campaign["id"])
    measured = sorted(latency_ms(r) for r in rows)
    assert measured == pytest.approx([s * 1000 for s in LATENCIES], abs=0.001)
    expected = np.percentile(measured, [50, 95, 99])  # linear, as percentile_cont
    stats = await world.stats(campaign["id"])
    assert [stats["latency_ms"][p] for p in ("p50", "p95", "p99")] == pytest.approx(
        expected.tolist(), abs=0.001)

    after = await histogram(world)
    moved = {k: after[k] - before.get(k, 0.0) for k in after}
    assert moved["count"] == len(LATENCIES)
    assert moved["sum"] == pytest.approx(sum(LATENCIES), abs=1e-6)
    assert {le: moved[le] for le in after if le not in ("count", "sum")} == {
        **{str(b): sum(s <= b for s in LATENCIES) for b in PUSH_LATENCY_BUCKETS},
        "+Inf": len(LATENCIES)}


async def test_a_retried_push_counts_from_its_ping_batch_to_the_accepted_retry(
        world: World) -> None:
    campaign = await world.campaign()
    before = await histogram(world)
    await world.fault(503, 1)
    received = stop_clock()
    _, token = await world.device()
    await world.walk_in(token)
    # Refused once; the retry falls due within a second, which the stopped clock never reaches.
    await wait_for_deliveries(world, campaign["id"], lambda rows: [
        (r["status"], r["attempts"]) for r in rows] == [("queued", 1)])
    CLOCK.advance(timedelta(seconds=30))
    [row] = await wait_for_deliveries(world, campaign["id"],
                                      lambda rows: rows[0]["status"] == "sent")

    assert (row["attempts"], datetime.fromisoformat(row["created_at"]),
            datetime.fromisoformat(row["sent_at"])) == (
        2, received, received + timedelta(seconds=30))
    assert (await world.stats(campaign["id"]))["latency_ms"] == {
        "p50": 30_000.0, "p95": 30_000.0, "p99": 30_000.0}
    after = await histogram(world)
    assert (after["count"] - before["count"], after["sum"] - before["sum"],
            after["10.0"] - before.get("10.0", 0.0),
            after["30.0"] - before.get("30.0", 0.0)) == (1, pytest.approx(30.0), 0, 1)


async def test_without_a_sent_delivery_the_percentiles_are_null_and_the_histogram_stays(
        world: World) -> None:
    campaign = await world.campaign()
    before = await histogram(world)
    _, token = await world.device(token="invalid-token")  # FCM refuses it: failed, never sent
    await world.walk_in(token)
    await wait_for_deliveries(world, campaign["id"], lambda rows: [
        r["status"] for r in rows] == ["failed"])

    stats = await world.stats(campaign["id"])
    assert (stats["failed"], stats["latency_ms"]) == (
        1, {"p50": None, "p95": None, "p99": None})
    after = await histogram(world)
    assert (after["count"], after["sum"]) == (before["count"], before["sum"])
