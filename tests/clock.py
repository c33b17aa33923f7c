"""The clock every test runs on: pinned, so no test depends on the hour, the weekday or the time
zone of the machine that runs it.

`CLOCK` starts each test at `PINNED` (reset by an autouse fixture in tests/conftest.py) and then
runs at real speed, so leases, retries and backoffs still come due. A test about a particular
moment moves it with `CLOCK.set(...)` (or `at_local(...)`) and says so in its name.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.clock import PinnedClock

# Wednesday 17 June 2026, 10:00 UTC: 12:00 in Paris, 06:00 in New York — outside the default
# quiet hours (21:00–09:00) in Paris, inside a weekday daypart, far from any DST change.
PINNED = datetime(2026, 6, 17, 10, 0, tzinfo=UTC)

CLOCK = PinnedClock(PINNED)


def now() -> datetime:
    return CLOCK()


def ago(**delta: float) -> datetime:
    return CLOCK() - timedelta(**delta)


def at_local(zone: str, clock_time: time, day: date | None = None) -> datetime:
    """The instant (UTC) when the wall clock in `zone` shows `clock_time` on `day` (the pinned
    day by default)."""
    local = datetime.combine(day or PINNED.date(), clock_time, tzinfo=ZoneInfo(zone))
    return local.astimezone(UTC)
