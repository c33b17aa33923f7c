"""When a failed webhook attempt is tried again, and when it is a dead letter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.webhooks.relay import RetryPolicy
from campaigns.webhooks.sender import retry_after_of, verdict_of

FIRST = datetime(2026, 6, 17, 10, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=1.0, cap_seconds=3600.0, window_seconds=86400.0)


@pytest.mark.parametrize(("attempts", "low", "high"), [
    (1, 0.5, 1.0), (2, 1.0, 2.0), (5, 8.0, 16.0), (13, 1800.0, 3600.0), (40, 1800.0, 3600.0),
])
def test_waits_double_from_the_base_up_to_the_cap_with_jitter(
        attempts: int, low: float, high: float) -> None:
    shortest = POLICY.next_attempt(attempts, FIRST, FIRST, None, lambda: 0.0)
    longest = POLICY.next_attempt(attempts, FIRST, FIRST, None, lambda: 1.0)
    assert (shortest, longest) == (FIRST + timedelta(seconds=low), FIRST + timedelta(seconds=high))


def test_a_retry_after_is_a_floor() -> None:
    at = POLICY.next_attempt(1, FIRST, FIRST, 120.0, lambda: 1.0)
    assert at == FIRST + timedelta(seconds=120)


def test_the_last_try_falls_at_the_windows_end_and_a_failure_after_it_is_dead() -> None:
    late = FIRST + timedelta(hours=23, minutes=59)
    assert POLICY.next_attempt(30, FIRST, late, None, lambda: 1.0) == FIRST + timedelta(days=1)
    assert POLICY.next_attempt(31, FIRST, FIRST + timedelta(days=1), None) is None
    assert POLICY.next_attempt(2, FIRST, FIRST + timedelta(days=2), None) is None


@pytest.mark.parametrize(("status", "verdict"), [
    (200, "delivered"), (204, "delivered"), (301, "dead"), (400, "dead"), (401, "dead"),
    (404, "dead"), (408, "retry"), (410, "dead"), (429, "retry"), (500, "retry"),
    (503, "retry"),
])
def test_what_each_answer_means(status: int, verdict: str) -> None:
    assert verdict_of(status) == verdict


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0), ("Wed, 17 Jun 2026 10:05:00 GMT", 300.0),
    ("Wed, 17 Jun 2026 09:00:00 GMT", 0.0), ("soon", None), (None, None),
])
def test_retry_after_in_seconds_or_as_a_date(value: str | None, seconds: float | None) -> None:
    assert retry_after_of(value, FIRST) == seconds
