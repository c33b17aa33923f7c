"""Webhook subscriptions the API refuses: each bad body answers 400 naming the field and the
reason, and stores nothing; a replay needs a period with offsets, `from` before `to`."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.asyncio(loop_scope="module")

GOOD = {"url": "http://127.0.0.1:9/hooks", "events": ["moment"]}


async def refusal(api: Api, body: dict[str, Any]) -> tuple[int, list[str], str]:
    response = await api.call("POST", "/v1/webhooks", "test-admin-token-0123456789abcdef0123456789",
                              json=body)
    problem = response.json()
    errors = problem.get("errors") or []
    return (response.status_code, [e["field"] for e in errors],
            " ".join(e["message"] for e in errors))


@pytest.mark.parametrize(("name", "body", "field", "reason"), [
    ("an ftp URL", {**GOOD, "url": "ftp://example.com/x"}, "url", "https"),
    ("plain http to a host not allowed", {**GOOD, "url": "http://example.com/x"}, "url",
     "https"),
    ("a private address", {**GOOD, "url": "https://10.1.2.3/x"}, "url", "private"),
    ("a loopback address not allowed", {**GOOD, "url": "https://127.0.0.2/x"}, "url",
     "loopback"),
    ("localhost, which resolves to loopback", {**GOOD, "url": "https://localhost/x"}, "url",
     "loopback"),
    ("the cloud metadata address", {**GOOD, "url": "https://169.254.169.254/latest"}, "url",
     "link-local"),
    ("IPv6 loopback", {**GOOD, "url": "https://[::1]/x"}, "url", "loopback"),
    ("an IPv4-mapped private address", {**GOOD, "url": "https://[::ffff:192.168.1.1]/x"}, "url",
     "private"),
    ("credentials in the URL", {**GOOD, "url": "https://u:p@example.com/x"}, "url",
     "credentials"),
    ("no host", {**GOOD, "url": "https:///x"}, "url", "host"),
    ("an unknown event type", {**GOOD, "events": ["moment", "delivery.exploded"]},
     "events[1]", "delivery.exploded"),
    ("no event type", {**GOOD, "events": []}, "events", ""),
    ("an event type twice", {**GOOD, "events": ["moment", "moment"]}, "events", "once"),
    ("a secret too short", {**GOOD, "secret": "short"}, "secret", ""),
    ("an unknown field", {**GOOD, "retries": 3}, "retries", ""),
])
async def test_a_bad_subscription_is_refused_naming_the_field_and_nothing_is_stored(
        module_api: Api, module_db: asyncpg.Connection, name: str, body: dict[str, Any],
        field: str, reason: str) -> None:
    before = await module_db.fetchval("SELECT count(*) FROM webhooks")
    status, fields, message = await refusal(module_api, body)
    assert (status, fields[:1]) == (400, [field]), (name, message)
    assert reason in message, (name, message)
    assert await module_db.fetchval("SELECT count(*) FROM webhooks") == before


@pytest.mark.parametrize(("body", "field"), [
    ({"from": "2026-06-17T10:00:00Z", "to": "2026-06-17T09:00:00Z"}, "from"),
    ({"from": "2026-06-17T10:00:00Z", "to": "2026-06-17T10:00:00Z"}, "from"),
    ({"from": "2026-06-17T10:00:00", "to": "2026-06-17T11:00:00Z"}, "from"),
    ({"from": "yesterday", "to": "2026-06-17T11:00:00Z"}, "from"),
    ({"to": "2026-06-17T11:00:00Z"}, "from"),
])
async def test_a_replay_needs_a_period_with_offsets_from_before_to(
        module_api: Api, body: dict[str, Any], field: str) -> None:
    created = await module_api.ok("POST", "/v1/webhooks", json=GOOD)
    response = await module_api.call("POST", f"/v1/webhooks/{created['id']}/replay",
                              "test-admin-token-0123456789abcdef0123456789", json=body)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, field)
