"""Uplift through the HTTP API on the real database: simulated shoppers walk in, the campaign's
50 % holdout splits them into treated (pushed through the FCM emulator) and control, and some come
back to the store within the day at rates the test sets for each group.

The return visits are drawn with a seeded generator, as exact quotas of each group (e.g. 60 % of
the treated devices, 30 % of the controls) rather than coin flips: which devices land in the
holdout depends on their ids, which the service draws, and with coin flips the true difference
would lie outside a 95 % interval on one run in twenty. With quotas the observed rates are the
true ones up to rounding, so "the interval covers the truth" fails only when the service counts
or computes wrongly. The figures are also recomputed with statsmodels from counts the test reads
from the database itself (deliveries, suppressions and geo events, not the service's own
assignments).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from statsmodels.stats import proportion

from tests.clock import CLOCK
from tests.e2e.conftest import World


async def dispatched(world: World, seconds: float = 30.0) -> None:
    """Wait until the dispatcher has sent (or failed) every queued push."""
    for _ in range(int(seconds / 0.1)):
        rows = await world.sql("SELECT count(*) AS n FROM deliveries "
                               "WHERE status IN ('queued', 'sending')")
        if rows[0]["n"] == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the dispatcher did not send every push in time")


async def sent_devices(world: World, campaign_id: str) -> set[str]:
    """The devices the campaign's sent deliveries went to, as the API lists them."""
    page = await world.api.ok("GET", f"/v1/campaigns/{campaign_id}/deliveries"
                                     "?status=sent&limit=1000")
    assert page["next_cursor"] is None
    return {d["device_id"] for d in page["items"]}


@dataclass
class Population:
    campaign_id: str
    treated: dict[str, str]  # device id → device token
    control: dict[str, str]


async def populate(world: World, size: int, **campaign: Any) -> Population:
    """`size` devices walk into the store once; each is treated or held out."""
    created = await world.campaign(holdout_percent=50, **campaign)
    devices = dict([await world.device() for _ in range(size)])
    for token in devices.values():
        await world.walk_in(token)
    await dispatched(world)
    treated = await sent_devices(world, created["id"])
    population = Population(created["id"], {d: t for d, t in devices.items() if d in treated},
                            {d: t for d, t in devices.items() if d not in treated})
    CLOCK.advance(timedelta(minutes=2))
    for token in devices.values():
        await world.walk_out(token)
    return population


async def come_back(world: World, population: Population, treated_rate: float,
                    control_rate: float, seed: int) -> None:
    """Two hours later, exact shares of each group (chosen by a seeded generator) walk into the
    store again; then a day passes, so every window has closed."""
    rng = random.Random(seed)
    CLOCK.advance(timedelta(hours=2))
    for group, rate in ((population.treated, treated_rate), (population.control, control_rate)):
        ids = sorted(group)
        for device in rng.sample(ids, round(rate * len(ids))):
            await world.walk_in(group[device])
    CLOCK.advance(timedelta(hours=23))


async def counts_from_the_database(world: World, campaign_id: str) -> tuple[int, ...]:
    """(treated conversions, treated n, control conversions, control n): treated devices are
    those a push was sent to, controls those suppressed as `holdout`, and a device converted
    when it entered the store again after its moment (every device had one moment)."""
    rows = await world.sql("""
        WITH arms AS (
            SELECT device_id, 'treated' AS arm FROM deliveries
            WHERE campaign_id = $1 AND status = 'sent'
            UNION ALL
            SELECT device_id, 'control' FROM suppressions
            WHERE campaign_id = $1 AND reason = 'holdout'),
        entries AS (
            SELECT device_id, count(*) AS n FROM geo_events WHERE kind = 'entered'
            GROUP BY device_id)
        SELECT arm, count(*) AS n, count(*) FILTER (WHERE e.n >= 2) AS converted
        FROM arms JOIN entries e USING (device_id) GROUP BY arm""", UUID(campaign_id))
    by_arm = {r["arm"]: (r["converted"], r["n"]) for r in rows}
    return (*by_arm["treated"], *by_arm["control"])


async def uplift(world: World, campaign_id: str, query: str = "") -> dict[str, Any]:
    answer: dict[str, Any] = await world.api.ok(
        "GET", f"/v1/campaigns/{campaign_id}/uplift{query}")
    return answer


def expected_figures(counts: tuple[int, ...]) -> dict[str, Any]:
    """What statsmodels says of the counts, in the answer's terms."""
    treated_conversions, treated_n, control_conversions, control_n = counts
    low, high = proportion.confint_proportions_2indep(*counts, method="newcomb", compare="diff")
    test = proportion.test_proportions_2indep(*counts, method="score", compare="diff")
    difference = treated_conversions / treated_n - control_conversions / control_n
    return {
        "treated": {"n": treated_n, "conversions": treated_conversions,
                    "rate": treated_conversions / treated_n},
        "control": {"n": control_n, "conversions": control_conversions,
                    "rate": control_conversions / control_n},
        "uplift": difference, "ci95": [float(low), float(high)],
        "p_value": float(test.pvalue), "incremental_conversions": difference * treated_n}


def close(answer: dict[str, Any], expected: dict[str, Any]) -> bool:
    def same(a: Any, b: Any) -> bool:
        if isinstance(b, dict):
            return a.keys() >= b.keys() and all(same(a[k], v) for k, v in b.items())
        if isinstance(b, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(b, float):
            return abs(a - b) <= 1e-9
        return bool(a == b)

    return same(answer, expected)


async def test_an_offer_that_brings_people_back_shows_an_uplift_whose_interval_covers_the_truth(
    world: World,
) -> None:
    population = await populate(world, 160)
    await come_back(world, population, treated_rate=0.6, control_rate=0.3, seed=12)

    answer = await uplift(world, population.campaign_id, "?goal=visit&window_hours=24")

    counts = await counts_from_the_database(world, population.campaign_id)
    assert counts[1] + counts[3] == 160, counts  # every device in one group, once
    assert close(answer, expected_figures(counts)), (answer, counts)
    low, high = answer["ci95"]
    assert low <= 0.3 <= high and low > 0, answer
    assert (answer["goal"], answer["window_hours"], answer["note"]) == ("visit", 24, None)
    assert answer["p_value"] < 0.05


async def test_an_offer_with_no_effect_has_an_interval_that_covers_zero(world: World) -> None:
    population = await populate(world, 100)
    await come_back(world, population, treated_rate=0.4, control_rate=0.4, seed=34)

    answer = await uplift(world, population.campaign_id)

    counts = await counts_from_the_database(world, population.campaign_id)
    assert close(answer, expected_figures(counts)), (answer, counts)
    low, high = answer["ci95"]
    assert low <= 0.0 <= high, answer


async def test_a_held_out_device_coming_back_is_capped_like_a_treated_one_not_a_new_control(
    world: World,
) -> None:
    population = await populate(world, 30)
    await come_back(world, population, treated_rate=1.0, control_rate=1.0, seed=56)

    stats = await world.stats(population.campaign_id)
    # Each device's second moment met the campaign's cap of one a day, held-out devices too:
    # their first moment counts as the push they would have had.
    assert (stats["sent"], stats["suppressed"]["holdout"], stats["suppressed"]["cap"]) == (
        len(population.treated), len(population.control), 30)


async def test_one_window_per_device_a_failed_push_treats_nobody_and_no_control_means_no_ci(
    world: World,
) -> None:
    campaign = await world.campaign(caps={})  # no cap: each walk-in is a push
    tokens = [(await world.device())[1] for _ in range(3)]
    _, unreachable = await world.device(token="unregistered-phone")
    for round_ in range(2):
        for token in [*tokens, unreachable]:
            await world.walk_in(token)
        await dispatched(world)
        CLOCK.advance(timedelta(minutes=2))
        for token in [*tokens, unreachable]:
            await world.walk_out(token)
        if round_ == 0:
            CLOCK.advance(timedelta(hours=2))
    CLOCK.advance(timedelta(hours=25))
    stats = await world.stats(campaign["id"])
    assert (stats["sent"], stats["failed"]) == (6, 1)  # the failed push retired the address

    day = await uplift(world, campaign["id"], "?window_hours=24")
    hour = await uplift(world, campaign["id"], "?window_hours=1")

    # Within a day, each device's second push falls in its first one's window: one moment per
    # device, converted by the second visit. Within an hour the two are apart and neither
    # converts. The push that failed treated nobody.
    assert (day["treated"], hour["treated"]) == (
        {"n": 3, "conversions": 3, "rate": 1.0}, {"n": 6, "conversions": 0, "rate": 0.0})
    assert (day["control"], day["uplift"], day["ci95"], day["p_value"]) == (
        {"n": 0, "conversions": 0, "rate": None}, None, None, None)
    assert "no control moment" in day["note"]
