"""Per-device request budgets for the device's write routes (pings, signals).

One rule: a token bucket per device and route — a burst of `burst` requests, then `per_second`
— so one runaway app in a tight loop is told to back off (429 with `Retry-After`) before it
costs every other device its latency. The buckets live in each process; behind N processes a
device gets at most N times the budget, which is still a bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from uuid import UUID

from app.errors import TooManyRequests

MAX_TRACKED = 200_000  # buckets kept (least recently used dropped; a dropped bucket is full)


class DeviceBudget:
    def __init__(self, *, burst: float, per_second: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self._buckets: OrderedDict[tuple[UUID, str], tuple[float, float]] = OrderedDict()

    def spend(self, device_id: UUID, route: str) -> None:
        """Take one request from the device's bucket, or raise `TooManyRequests`."""
        now = self.clock()
        key = (device_id, route)
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.per_second)
            raise TooManyRequests(wait, f"this device sends {route} too often; retry in {wait} s")
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
