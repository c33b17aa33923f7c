"""The live feed over server-sent events (`GET /v1/live`): moments and pushes as this process
handles them, each watcher seeing only the stores its key may see.

Outside the contract, on purpose, and left out of the OpenAPI document: an endless
`text/event-stream` is not an operation a generated client (or the schema fuzzer) can call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.auth import Principal, admits
from app.live import LiveFeed

_encode = msgspec.json.Encoder().encode


class Hello(msgspec.Struct, kw_only=True, frozen=True):
    """The stream's first event: it is subscribed, and to what."""

    scope: str  # "all" or "stores"
    store_ids: list[str]
    heartbeat_seconds: float
    queue_events: int


async def stream(feed: LiveFeed, principal: Principal,
                 heartbeat_seconds: float) -> AsyncIterator[ServerSentEventMessage]:
    """Subscribe once the response starts (so a request that never streams leaves nothing
    behind), then relay; a comment every `heartbeat_seconds` keeps proxies from closing an idle
    stream and finds dead connections. Leaving (the client goes, the server stops) unsubscribes."""
    subscription = feed.subscribe(principal)
    try:
        scoped = principal.role == "store_manager"
        yield ServerSentEventMessage(event="hello", data=_encode(Hello(
            scope="stores" if scoped else "all",
            store_ids=sorted(str(s) for s in principal.store_ids) if scoped else [],
            heartbeat_seconds=heartbeat_seconds, queue_events=feed.queue_events)).decode())
        while True:
            try:
                event = await asyncio.wait_for(subscription.queue.get(), heartbeat_seconds)
            except TimeoutError:
                yield ServerSentEventMessage(comment="heartbeat", data=None)
                continue
            dropped = subscription.take_dropped()
            if dropped:
                yield ServerSentEventMessage(event="dropped", data=f'{{"events": {dropped}}}')
            yield ServerSentEventMessage(event=type(event).__struct_config__.tag,  # type: ignore[arg-type]
                                         data=_encode(event).decode())
    finally:
        feed.unsubscribe(subscription)


@get("/v1/live", operation_id="getLive", tags=["live"], include_in_schema=False,
     opt=admits("campaign_manager", "store_manager", action="watch the live feed"))
async def live(principal: Principal, state: State) -> ServerSentEvent:
    """Moments (enter, dwell, exit, predicted_next) and pushes (queued, suppressed, sent,
    failed, expired, retrying) as this process handles them, as server-sent events; a store
    manager sees only its stores'. A watcher too slow to take them loses the newest (it is told
    how many: a `dropped` event), never slowing the pings."""
    return ServerSentEvent(
        stream(state.live, principal, state.settings.live_heartbeat_seconds),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
