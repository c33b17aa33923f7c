"""The dispatcher's loop (`campaigns.dispatch.Dispatcher.run`): a NOTIFY that comes while a round
is out starts the next round at once; none is lost to the idle wait. The rounds and the wake-up
are stand-ins here (what a round does is tested end to end in tests/e2e)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from campaigns import dispatch
from campaigns.dispatch import Dispatcher


class _Rounds(Dispatcher):
    """A dispatcher whose rounds claim what `claims` says, in turn, and log themselves."""

    def __init__(self, claims: list[int], log: list[str], wake: asyncio.Event,
                 notify_during: set[int]) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]
        self.claims, self.log, self.wake, self.notify_during = claims, log, wake, notify_during

    async def run_once(self) -> int:
        n = len([e for e in self.log if e == "round"])
        self.log.append("round")
        if n in self.notify_during:
            self.wake.set()  # a delivery committed while this round's batch is out
        return self.claims[n] if n < len(self.claims) else 0


async def _run(monkeypatch: pytest.MonkeyPatch, claims: list[int],
               notify_during: set[int]) -> list[str]:
    log: list[str] = []
    wake = asyncio.Event()
    stop = asyncio.Event()

    @asynccontextmanager
    async def notified(dsn: str, channel: str) -> AsyncIterator[asyncio.Event]:
        yield wake

    async def idle_seconds(*_: Any, **__: Any) -> float:
        log.append("idle")
        stop.set()  # the first idle wait ends the run
        return 0.0

    monkeypatch.setattr(dispatch, "notified", notified)
    monkeypatch.setattr(dispatch, "idle_seconds", idle_seconds)
    await asyncio.wait_for(_Rounds(claims, log, wake, notify_during).run("", stop), 5.0)
    return log


async def test_a_notify_during_a_round_starts_the_next_round_without_an_idle_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = await _run(monkeypatch, claims=[3, 1], notify_during={0})
    assert log == ["round", "round", "idle"]


async def test_without_a_notify_a_round_that_drained_the_outbox_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = await _run(monkeypatch, claims=[3], notify_during=set())
    assert log == ["round", "idle"]


async def test_a_full_batch_is_followed_by_another_round_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = await _run(monkeypatch, claims=[dispatch.BATCH_SIZE, 2], notify_during=set())
    assert log == ["round", "round", "idle"]
