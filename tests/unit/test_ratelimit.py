"""The per-device budget: a burst, then a steady rate, per device and route."""

from __future__ import annotations

import uuid

import pytest

from app.errors import TooManyRequests
from app.ratelimit import DeviceBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


DEVICE, OTHER = uuid.uuid4(), uuid.uuid4()


def test_a_burst_is_allowed_and_the_next_request_is_told_when_to_retry() -> None:
    clock = Clock()
    budget = DeviceBudget(burst=3, per_second=0.5, clock=clock)
    for _ in range(3):
        budget.spend(DEVICE, "pings")
    with pytest.raises(TooManyRequests) as refused:
        budget.spend(DEVICE, "pings")
    assert refused.value.retry_after_seconds == 2


@pytest.mark.parametrize(("device", "route", "wait", "allowed"), [
    pytest.param(DEVICE, "pings", 1.9, False, id="the same device and route before refill"),
    pytest.param(DEVICE, "pings", 2.0, True, id="the same device and route after one refill"),
    pytest.param(DEVICE, "signals", 0.0, True, id="another route of the same device"),
    pytest.param(OTHER, "pings", 0.0, True, id="another device"),
])
def test_an_exhausted_bucket_holds_back_only_its_device_and_route(
        device: uuid.UUID, route: str, wait: float, allowed: bool) -> None:
    clock = Clock()
    budget = DeviceBudget(burst=2, per_second=0.5, clock=clock)
    budget.spend(DEVICE, "pings")
    budget.spend(DEVICE, "pings")
    clock.now += wait
    try:
        budget.spend(device, route)
        ok = True
    except TooManyRequests:
        ok = False
    assert ok is allowed
