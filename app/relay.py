"""The webhook relay as the settings describe it, for the server's lifespan and for
`python -m campaigns.webhooks.relay` (which imports only this, not the whole app, to start fast).

One rule: every knob of the relay comes from `Settings`; nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import asyncpg

from app.clock import Clock, system_clock
from app.settings import Settings
from campaigns.webhooks.relay import Relay, RetryPolicy
from campaigns.webhooks.safety import AllowList
from campaigns.webhooks.sealing import Sealer


def relay_of(settings: Settings, pool: asyncpg.Pool, *, clock: Clock = system_clock,
             on_attempt: Callable[[str], None] | None = None) -> Relay:
    """The relay `settings` describe (which must hold a WEBHOOK_SECRET_KEY)."""
    if settings.webhook_secret_key is None:
        raise ValueError("the webhook relay needs WEBHOOK_SECRET_KEY")
    return Relay(
        pool, Sealer(settings.webhook_secret_key), AllowList.parse(settings.webhook_allow_hosts),
        clock=clock, lease=timedelta(seconds=settings.webhook_lease_seconds),
        retry=RetryPolicy(base_seconds=settings.webhook_backoff_base_seconds,
                          cap_seconds=settings.webhook_backoff_cap_seconds,
                          window_seconds=settings.webhook_retry_window_seconds),
        timeout=settings.webhook_timeout_seconds, concurrency=settings.webhook_concurrency,
        on_attempt=on_attempt)
