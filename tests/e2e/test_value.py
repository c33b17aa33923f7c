"""The value matrix through the HTTP API on the real database: imported transactions are tiered
by the refit an import schedules, the customer's context shows their `value`, and a campaign
aimed at `value_tiers: ["high"]` fires for a high-value customer and is suppressed as `audience`
for a low-value one at the same fence (issue 11, item 5's first sentence).

The clock is pinned (tests/clock.py): every transaction is relative to it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.api.conftest import ADMIN_TOKEN
from tests.clock import ago
from tests.e2e.conftest import World
from tests.e2e.test_context import customer_device


def shop_history() -> str:
    """Twelve customers: `C-big` bought weekly for half a year, big baskets, until yesterday;
    `C-small` bought once, a small basket, eight months ago; the others in between."""
    rows = ["customer_id,ts,amount"]
    rows += [f"C-big,{ago(days=1 + 7 * week).isoformat()},120.00" for week in range(26)]
    rows += [f"C-small,{ago(days=240).isoformat()},4.50"]
    for i in range(10):
        rows += [f"C-mid{i},{ago(days=10 + 20 * k + i).isoformat()},{20 + 3 * i}.00"
                 for k in range(1 + i % 4)]
    return "\n".join(rows) + "\n"


async def value_of(world: World, customer: str, wanted: str, seconds: float = 20.0) -> Any:
    """The customer's `value` once the refit the import scheduled has tiered them `wanted`."""
    deadline = time.monotonic() + seconds
    while True:
        found = await world.api.ok("GET", f"/v1/customers/{customer}/context")
        if found["value"]["tier"] == wanted or time.monotonic() > deadline:
            return found["value"]
        await asyncio.sleep(0.1)


async def test_an_import_is_tiered_and_a_high_value_audience_fires_for_the_big_spender_only(
        world: World) -> None:
    big, small = await customer_device(world, "C-big"), await customer_device(world, "C-small")
    before = (await world.api.ok("GET", "/v1/customers/C-big/context"))["value"]
    imported = await world.api.ok("POST", "/v1/transactions/import", content=shop_history(),
                                  headers={"content-type": "text/csv"})

    big_value = await value_of(world, "C-big", "high")
    small_value = await value_of(world, "C-small", "low")
    assert (before["historical"], before["historical_amount"]) == ("low", 0.0)
    assert imported == {"received": 50, "imported": 50, "refit": "scheduled"}
    assert big_value == {"historical": "high", "potential": "high", "tier": "high",
                         "historical_amount": 3120.0,
                         "expected_amount_90d": big_value["expected_amount_90d"]}
    assert big_value["expected_amount_90d"] > 10 * small_value["expected_amount_90d"] > 0
    assert (small_value["historical"], small_value["potential"]) == ("low", "low")
    # A past buyer without the app yet: their context is their value, with no signals.
    mid = await world.api.ok("GET", "/v1/customers/C-mid3/context")
    assert mid["value"]["historical_amount"] == 4 * 29.0 and mid["intent"]["by_category"] == []
    assert mid["micromoment"]["kind"] is None
    unknown = await world.api.call("GET", "/v1/customers/C-nobody/context", ADMIN_TOKEN)
    assert unknown.status_code == 404, unknown.text

    campaign = await world.campaign(audience={"value_tiers": ["high"]})
    await world.walk_in(big)
    await world.walk_in(small)

    rows = await world.delivery_rows(campaign["id"])
    suppressed = await world.sql(
        "SELECT reason, detail FROM suppressions WHERE campaign_id = $1", campaign["id"])
    assert len(rows) == 1
    assert [(r["reason"], r["detail"]) for r in suppressed] == [
        ("audience", "tier low not in [high]")]
    messages = await world.wait_for(lambda m: len(m) >= 1)
    assert len(messages) == 1
