"""The device-wide rules of pressure: consent, quiet hours and the policy's daily maximum and
minimum gap, each read in the device's local time.

One rule: a verdict is the reason a push may not go out now (the suppression's detail), or None;
it depends only on the device, the policy, the pushes it is given and the instant. Which pushes
count (real ones, and a campaign's own would-be ones) is the caller's choice (`decide.py`).
Pure: no clock, no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from campaigns.local_time import in_window, local_midnight, minute_of_day
from campaigns.model import Policy, QuietHours, minutes_of


class DeviceContext(msgspec.Struct, kw_only=True, frozen=True):
    device_id: UUID
    marketing_consent: bool
    timezone: str | None
    has_push_address: bool


class PastPush(msgspec.Struct, kw_only=True, frozen=True):
    """A delivery already queued or sent to this device (never a suppressed/expired/failed one),
    or a would-be push: `held_out` when the campaign's holdout kept it from the device (it then
    counts for that campaign's rules only). A global control's would-be push is a plain one: the
    device gets no real push, and its would-be ones pace it as real ones pace everybody else."""

    campaign_id: UUID
    fence_id: UUID | None
    store_id: UUID
    at: datetime
    held_out: bool = False


def consent_failure(device: DeviceContext) -> str | None:
    missing: list[str] = []
    if not device.marketing_consent:
        missing.append("the device has not consented to marketing pushes")
    if not device.has_push_address:
        missing.append("the device has no push address (FCM token or FID)")
    return "; ".join(missing) or None


def quiet_failure(quiet: QuietHours | None, device: DeviceContext, now: datetime) -> str | None:
    if quiet is None:
        return None
    zone = device.timezone or "UTC"
    local = now.astimezone(ZoneInfo(zone))
    if not in_window(minutes_of(quiet.from_), minutes_of(quiet.to), minute_of_day(local)):
        return None
    return f"quiet hours {quiet.from_}–{quiet.to}: it is {local:%H:%M} in {zone}"


def policy_failure(
    policy: Policy, device: DeviceContext, history: Sequence[PastPush], now: datetime
) -> str | None:
    zone = device.timezone or "UTC"
    midnight = local_midnight(now, ZoneInfo(zone))
    today = sum(1 for p in history if p.at >= midnight)
    if today >= policy.max_per_device_per_day:
        return (
            f"{today} pushes since midnight in {zone}; "
            f"the daily maximum is {policy.max_per_device_per_day}"
        )
    if not history or not policy.min_seconds_between_pushes:
        return None
    gap = seconds_between(max(p.at for p in history), now)
    if gap >= policy.min_seconds_between_pushes:
        return None
    return (
        f"the last push was {gap} s ago; "
        f"the minimum gap is {policy.min_seconds_between_pushes} s"
    )


def seconds_between(earlier: datetime, later: datetime) -> int:
    return int((later - earlier).total_seconds())
