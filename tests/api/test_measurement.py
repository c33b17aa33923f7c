"""The measurement routes' edges over HTTP: each bad parameter is refused with 400 naming it, an
unknown campaign is 404, and a campaign with nothing measured yet answers with null figures and a
note rather than numbers made of nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.clock import CLOCK

pytestmark = pytest.mark.asyncio(loop_scope="module")


def campaign_body() -> dict[str, Any]:
    now = CLOCK()
    return {
        "name": "Measured", "trigger": {"kind": "enter"},
        "schedule": {"starts_at": (now - timedelta(days=1)).isoformat(),
                     "ends_at": (now + timedelta(days=1)).isoformat()},
        "offer": {"title": "Hello", "body": "Come in"}, "offer_ttl_seconds": 900,
        "holdout_percent": 50,
    }


def iso(days: float, now: datetime | None = None) -> str:
    """An instant `days` from now (or from `now`), ready for a query string."""
    return ((now or CLOCK()) + timedelta(days=days)).isoformat().replace("+", "%2B")


BAD_CAMPAIGN_QUERIES = [
    pytest.param("goal=visits", "goal", id="a goal outside the enum names goal"),
    pytest.param("goal=", "goal", id="an empty goal names goal"),
    pytest.param("window_hours=0", "window_hours", id="a window of 0 hours names window_hours"),
    pytest.param("window_hours=721", "window_hours",
                 id="a window of 721 hours names window_hours"),
    pytest.param("window_hours=1.5", "window_hours",
                 id="a fractional window names window_hours"),
    pytest.param("window_hours=a%20day", "window_hours",
                 id="a window that is no number names window_hours"),
]


@pytest.mark.parametrize(("query", "field"), BAD_CAMPAIGN_QUERIES)
async def test_a_bad_campaign_uplift_parameter_is_refused_naming_it(
        module_api: Api, query: str, field: str) -> None:
    campaign = await module_api.ok("POST", "/v1/campaigns", json=campaign_body())
    response = await module_api.call("GET", f"/v1/campaigns/{campaign['id']}/uplift?{query}",
                                     ADMIN_TOKEN)
    assert (response.status_code, [e["field"] for e in response.json()["errors"]]) == (
        400, [field])


BAD_REPORT_QUERIES = [
    pytest.param("goal=revenue", "goal", id="a goal outside the enum names goal"),
    pytest.param("window_hours=-3", "window_hours", id="a negative window names window_hours"),
    pytest.param("from=yesterday", "from", id="a from that is no time names from"),
    pytest.param("to=2026-06-17T10:00:00", "to", id="a to without an offset names to"),
    pytest.param(lambda now: f"from={iso(-1, now)}&to={iso(-2, now)}", "from",
                 id="a from after to names from"),
    pytest.param(lambda now: f"from={iso(-1, now)}&to={iso(-1, now)}", "from",
                 id="an empty period names from"),
    pytest.param(lambda now: f"from={iso(-90.001, now)}&to={iso(0, now)}", "from",
                 id="a period over 90 days names from"),
]


@pytest.mark.parametrize(("query", "field"), BAD_REPORT_QUERIES)
async def test_a_bad_report_parameter_is_refused_naming_it(
        module_api: Api, query: Any, field: str) -> None:
    text = query(CLOCK()) if callable(query) else query
    response = await module_api.call("GET", f"/v1/reports/uplift?{text}", ADMIN_TOKEN)
    assert (response.status_code, [e["field"] for e in response.json()["errors"]]) == (
        400, [field])


async def test_a_period_of_exactly_90_days_is_compared(module_api: Api) -> None:
    now = CLOCK()
    answer = await module_api.ok("GET", f"/v1/reports/uplift?from={iso(-90, now)}&to={iso(0, now)}")
    assert (answer["treated"]["n"], answer["control"]["n"], answer["ci95"]) == (0, 0, None)


async def test_an_unknown_campaign_has_no_uplift(module_api: Api) -> None:
    response = await module_api.call("GET", f"/v1/campaigns/{uuid4()}/uplift", ADMIN_TOKEN)
    assert response.status_code == 404


async def test_a_campaign_with_no_moment_answers_null_figures_and_says_why(
        module_api: Api) -> None:
    campaign = await module_api.ok("POST", "/v1/campaigns", json=campaign_body())
    answer = await module_api.ok("GET", f"/v1/campaigns/{campaign['id']}/uplift"
                                        "?goal=purchase&window_hours=48")
    figures = {k: answer[k] for k in ("goal", "window_hours", "treated", "control", "uplift",
                                      "ci95", "p_value", "incremental_conversions")}
    assert figures == {
        "goal": "purchase", "window_hours": 48,
        "treated": {"n": 0, "conversions": 0, "rate": None},
        "control": {"n": 0, "conversions": 0, "rate": None},
        "uplift": None, "ci95": None, "p_value": None, "incremental_conversions": None}
    assert "no treated moment" in answer["note"] and "no control moment" in answer["note"]
    assert "Newcombe" in answer["method"]


async def test_the_report_defaults_to_the_30_days_before_now_a_visit_and_24_hours(
        module_api: Api) -> None:
    CLOCK.running = False  # the request's "now" is the test's
    try:
        answer = await module_api.ok("GET", "/v1/reports/uplift")
        now = CLOCK()
    finally:
        CLOCK.running = True
    assert (answer["goal"], answer["window_hours"], answer["from"], answer["to"]) == (
        "visit", 24, iso_z(now - timedelta(days=30)), iso_z(now))


def iso_z(at: datetime) -> str:
    return str(at.isoformat().replace("+00:00", "Z"))
