"""Windows of local time: dayparts, quiet hours and the local day, as the decision rules read
them.

One rule: windows are half-open — a time exactly at a window's end is outside it — and a window
whose end is before its start wraps past midnight. Pure: the instant is a parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from campaigns.model import Daypart, minutes_of


def in_daypart(part: Daypart, local: datetime) -> bool:
    """Inside the daypart; a part that wraps past midnight belongs to the day it starts."""
    start, end, minute = minutes_of(part.from_), minutes_of(part.to), minute_of_day(local)
    weekday = local.isoweekday()
    if start < end:
        return weekday in part.days and start <= minute < end
    yesterday = 7 if weekday == 1 else weekday - 1
    return (weekday in part.days and minute >= start) or (yesterday in part.days and minute < end)


def in_window(start: int, end: int, minute: int) -> bool:
    """Inside [start, end) minutes of the day, wrapping past midnight when end < start.

    An empty window (start == end) contains nothing.
    """
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


def minute_of_day(local: datetime) -> int:
    return local.hour * 60 + local.minute


def local_midnight(now: datetime, zone: ZoneInfo) -> datetime:
    """The instant the device's local day began, in UTC (comparisons then never depend on folds)."""
    local_day = now.astimezone(zone).date()
    return datetime.combine(local_day, time(), tzinfo=zone).astimezone(UTC)
