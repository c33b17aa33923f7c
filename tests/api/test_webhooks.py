"""Webhook subscriptions over the API: what is refused (with the field and the reason, nothing
stored), what is kept (the secret sealed, never listed, never audited), deletion, replay input."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from app.main import create_app
from tests.api.conftest import Api, settings_for
from tests.clock import CLOCK

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
        api: Api, database_url: str, name: str, body: dict[str, Any], field: str,
        reason: str) -> None:
    status, fields, message = await refusal(api, body)
    assert (status, fields[:1]) == (400, [field]), (name, message)
    assert reason in message, (name, message)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM webhooks") == 0
    finally:
        await conn.close()


async def test_the_secret_is_shown_once_and_stored_sealed(api: Api, database_url: str) -> None:
    secret = "receiver-chosen-secret-0123456789"
    created = await api.ok("POST", "/v1/webhooks", json={**GOOD, "secret": secret,
                                                          "events": ["moment", "conversion"]})
    assert (created["secret"], created["events"]) == (secret, ["moment", "conversion"])
    generated = await api.ok("POST", "/v1/webhooks", json=GOOD)
    assert generated["secret"].startswith("whsec_") and len(generated["secret"]) > 32

    listed = await api.ok("GET", "/v1/webhooks")
    assert [w["id"] for w in listed["items"]] == [created["id"], generated["id"]]
    assert all("secret" not in w for w in listed["items"])
    conn = await asyncpg.connect(database_url)
    try:
        rows = [*await conn.fetch("SELECT * FROM webhooks"),
                *await conn.fetch("SELECT * FROM audit_log")]
        dump = "\n".join(str(tuple(r)) for r in rows)
        sealed = await conn.fetch("SELECT secret_sealed FROM webhooks")
    finally:
        await conn.close()
    for clear in (secret, generated["secret"]):
        assert clear not in dump
        assert all(clear.encode() not in bytes(r["secret_sealed"]) for r in sealed)
    audit = await api.ok("GET", "/v1/audit?resource=webhook")
    assert [(e["action"], e["resource_id"]) for e in audit["items"]] == [
        ("create", generated["id"]), ("create", created["id"])]


async def test_a_deleted_subscription_is_gone_with_its_log(api: Api) -> None:
    created = await api.ok("POST", "/v1/webhooks", json=GOOD)
    await api.ok("DELETE", f"/v1/webhooks/{created['id']}")
    for method, path in (("DELETE", ""), ("GET", "/deliveries")):
        response = await api.call(method, f"/v1/webhooks/{created['id']}{path}",
                                  "test-admin-token-0123456789abcdef0123456789")
        assert response.status_code == 404, (method, path)
    assert (await api.ok("GET", "/v1/webhooks"))["items"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"from": "2026-06-17T10:00:00Z", "to": "2026-06-17T09:00:00Z"}, "from"),
    ({"from": "2026-06-17T10:00:00Z", "to": "2026-06-17T10:00:00Z"}, "from"),
    ({"from": "2026-06-17T10:00:00", "to": "2026-06-17T11:00:00Z"}, "from"),
    ({"from": "yesterday", "to": "2026-06-17T11:00:00Z"}, "from"),
    ({"to": "2026-06-17T11:00:00Z"}, "from"),
])
async def test_a_replay_needs_a_period_with_offsets_from_before_to(
        api: Api, body: dict[str, Any], field: str) -> None:
    created = await api.ok("POST", "/v1/webhooks", json=GOOD)
    response = await api.call("POST", f"/v1/webhooks/{created['id']}/replay",
                              "test-admin-token-0123456789abcdef0123456789", json=body)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, field)


async def test_a_replay_of_an_unknown_subscription_is_404(api: Api) -> None:
    response = await api.call(
        "POST", "/v1/webhooks/00000000-0000-4000-8000-000000000000/replay",
        "test-admin-token-0123456789abcdef0123456789",
        json={"from": "2026-06-17T09:00:00Z", "to": "2026-06-17T10:00:00Z"})
    assert response.status_code == 404


async def test_without_a_secret_key_webhooks_cannot_be_made(database_url: str) -> None:
    app = create_app(settings_for(database_url, webhook_secret_key=None), clock=CLOCK)
    async with AsyncTestClient(app=app) as client:
        api = Api(client)
        response = await api.call("POST", "/v1/webhooks",
                                  "test-admin-token-0123456789abcdef0123456789", json=GOOD)
    assert response.status_code == 409
    assert "WEBHOOK_SECRET_KEY" in response.json()["detail"]
