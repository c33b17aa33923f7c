"""The service's one clock: every "what time is it" in the shell asks it.

One rule: nothing in `app/` or `campaigns/` reads the wall clock itself; `create_app` takes a clock
(the system's by default) and hands it to the routes (as the `now` dependency), ingest, the
dispatcher, the rate limiter, the reports and the model refits. Tests give a `PinnedClock`, so a
test about 23:30 in Kiritimati runs at 23:30 in Kiritimati whatever the machine's hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class PinnedClock:
    """A clock that starts at a chosen instant and then runs at the speed of real time (so
    retries, leases and backoffs still come due), or stands still when `running=False`.
    `set` and `advance` move it, as a test moves through a day."""

    def __init__(self, at: datetime, *, running: bool = True) -> None:
        if at.tzinfo is None:
            raise ValueError("a pinned instant needs an offset")
        self._at = at.astimezone(UTC)
        self._since = time.monotonic()
        self.running = running

    def __call__(self) -> datetime:
        if not self.running:
            return self._at
        return self._at + timedelta(seconds=time.monotonic() - self._since)

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a pinned instant needs an offset")
        self._at = at.astimezone(UTC)
        self._since = time.monotonic()

    def advance(self, delta: timedelta) -> None:
        self.set(self() + delta)

    def seconds(self) -> float:
        """The same clock as Unix seconds (for code that counts in floats)."""
        return self().timestamp()
