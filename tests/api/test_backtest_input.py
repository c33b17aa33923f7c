"""POST /v1/campaigns/backtest over HTTP: each bad input is a 400 naming the field, the campaign
refused with the very errors POST /v1/campaigns gives (under `campaign.`), and an empty period
answers zeros. Roles are in test_roles.py; what a backtest decides, in tests/e2e."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.asyncio(loop_scope="module")

Json = dict[str, Any]
FROM, TO = "2026-06-10T00:00:00Z", "2026-06-17T00:00:00Z"


def campaign(**changes: Any) -> Json:
    body: Json = {
        "name": "coffee",
        "trigger": {"kind": "enter"},
        "schedule": {"starts_at": "2026-06-01T00:00:00Z", "ends_at": "2026-07-01T00:00:00Z"},
        "offer": {"title": "Coffee -20 %", "body": "At the counter"},
        "offer_ttl_seconds": 900,
    }
    body.update(changes)
    return body


def backtest(**changes: Any) -> Json:
    body: Json = {"campaign": campaign(), "from": FROM, "to": TO}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def errors(api: Api, path: str, body: Json) -> list[tuple[str, str]]:
    response = await api.call("POST", path, "test-admin-token-0123456789abcdef0123456789",
                              json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [(e["field"], e["message"]) for e in response.json()["errors"]]


@pytest.mark.parametrize(("body", "field", "words"), [
    (backtest(to="2026-06-17T00:00:01Z"), "to", "at most 7 days"),
    (backtest(to=FROM), "to", "must be after `from`"),
    (backtest(to="2026-06-09T00:00:00Z"), "to", "must be after `from`"),
    (backtest(**{"from": None}), "from", "missing required field"),
    (backtest(to=None), "to", "missing required field"),
    (backtest(campaign=None), "campaign", "missing required field"),
    (backtest(**{"from": "2026-06-10T00:00:00"}), "from", "needs a UTC offset"),
    (backtest(**{"from": "last tuesday"}), "from", "Invalid RFC3339"),
    (backtest(**{"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}), "from",
     "between"),
    (backtest(period="last week"), "period", "unknown field"),
])
async def test_a_bad_period_or_body_is_refused_naming_the_field(
        module_api: Api, body: Json, field: str, words: str) -> None:
    found = await errors(module_api, "/v1/campaigns/backtest", body)
    assert [f for f, _ in found] == [field]
    assert words in found[0][1]


@pytest.mark.parametrize("bad", [
    campaign(offer_ttl_seconds=10),
    campaign(trigger={"kind": "walk_by"}),
    campaign(trigger={"kind": "enter", "min_probability": 0.5}),
    campaign(trigger={"kind": "enter", "store_ids": [str(uuid.uuid4())]}),
    campaign(schedule={"starts_at": "2026-07-01T00:00:00Z", "ends_at": "2026-06-01T00:00:00Z"}),
    campaign(offer={"title": " ", "body": "b"}),
    campaign(audience={}),
    campaign(dwel_seconds=60),
    {"name": "no trigger"},
])
async def test_a_bad_campaign_gets_the_errors_creating_it_would_get(module_api: Api,
                                                                    bad: Json) -> None:
    created = await errors(module_api, "/v1/campaigns", bad)
    tested = await errors(module_api, "/v1/campaigns/backtest", backtest(campaign=bad))
    assert tested == [(f"campaign.{field}", message) for field, message in created]


async def test_a_period_without_pings_answers_zeros(module_api: Api) -> None:
    result = await module_api.ok("POST", "/v1/campaigns/backtest", expect=200, json=backtest())
    assert (result["moments"], result["devices"], result["would_send"]) == (0, 0, 0)
    assert set(result["suppressed"].values()) == {0}
    assert (result["by_hour"], result["by_geofence"]) == ([], [])
    assert (result["from"], result["to"]) == (FROM, TO)
    # the same body is the same proposal: its holdout group does not change between calls
    again = await module_api.ok("POST", "/v1/campaigns/backtest", expect=200, json=backtest())
    assert again["campaign_id"] == result["campaign_id"]
