"""Webhook subscriptions over the API: what is kept (the secret sealed, never listed, never
audited), deletion, an unknown subscription, and a service without a secret key. What is refused
is in test_webhook_refusals.py."""

from __future__ import annotations

import asyncpg
from litestar.testing import AsyncTestClient

from app.main import create_app
from tests.api.conftest import Api, settings_for
from tests.clock import CLOCK

GOOD = {"url": "http://127.0.0.1:9/hooks", "events": ["moment"]}


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
