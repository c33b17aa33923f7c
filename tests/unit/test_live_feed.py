"""The live feed's fan-out: bounded queues that drop the newest and count, and each watcher's
scope, with no server and no database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from app.auth import Principal
from app.live import LiveEvent, LiveFeed, LiveMoment

STORE_A, STORE_B = UUID(int=1), UUID(int=2)
AT = datetime(2026, 6, 17, 10, 0, tzinfo=UTC)


def moment(store: UUID, n: int) -> LiveMoment:
    return LiveMoment(kind="enter", store_id=store, fence_id=uuid4(), device=f"{n:08x}",
                      at=AT + timedelta(seconds=n), timezone="Europe/Paris")


def drained(queue: asyncio.Queue[LiveEvent]) -> list[str | None]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait().device)
    return out


def test_a_watcher_that_takes_nothing_keeps_the_oldest_and_the_rest_are_counted() -> None:
    dropped: list[int] = []
    feed = LiveFeed(queue_events=3, on_drop=dropped.append)
    watcher = feed.subscribe(Principal(role="campaign_manager"))
    feed.publish(moment(STORE_A, n) for n in range(10))
    assert (drained(watcher.queue), watcher.take_dropped(), watcher.take_dropped(), dropped) == (
        ["00000000", "00000001", "00000002"], 7, 0, [7])


def test_a_store_manager_gets_its_stores_events_and_misses_none_of_the_others() -> None:
    dropped: list[int] = []
    feed = LiveFeed(queue_events=2, on_drop=dropped.append)
    manager = feed.subscribe(Principal(role="store_manager", store_ids=frozenset({STORE_A})))
    admin = feed.subscribe(Principal(role="admin"))
    feed.publish([moment(STORE_B, 0), moment(STORE_A, 1), moment(STORE_B, 2)])
    assert (drained(manager.queue), manager.dropped, drained(admin.queue), admin.dropped,
            dropped) == (["00000001"], 0, ["00000000", "00000001"], 1, [1])


def test_a_watcher_gone_gets_nothing_and_nobody_watching_builds_nothing() -> None:
    feed = LiveFeed()
    watcher = feed.subscribe(Principal(role="admin"))
    feed.unsubscribe(watcher)

    def view() -> object:
        raise AssertionError("the catalog was read with nobody watching")

    feed.batch(view, uuid4(), [object()], [])  # type: ignore[arg-type, list-item]
    feed.recorded(view, [object()])  # type: ignore[arg-type, list-item]
    feed.publish([moment(STORE_A, 0)])
    assert (feed.watched, watcher.queue.empty()) == (False, True)
