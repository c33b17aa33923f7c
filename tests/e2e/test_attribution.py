"""Attribution through the HTTP API: a purchase is credited to the last push sent to the customer
before it, within 24 hours, among the pushes whose campaign covers the store it names — once,
whichever device of the customer reports it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.clock import CLOCK
from tests.e2e.conftest import World
from tests.e2e.test_uplift import dispatched


async def buy(world: World, token: str, amount: str, store_id: str | None = None) -> None:
    attributes = {"amount": amount} | ({"store_id": store_id} if store_id else {})
    answer = await world.api.ok("POST", "/v1/signals", token, expect=202, json={
        "signals": [{"kind": "purchase", "attributes": attributes, "ts": CLOCK().isoformat()}]})
    assert answer["rejected"] == [], answer


def credited(stats: dict[str, Any]) -> tuple[int, float]:
    return stats["conversions"], stats["revenue"]


async def test_each_purchase_is_credited_once_to_the_last_push_that_covers_its_store(
    world: World,
) -> None:
    other = await world.api.ok("POST", "/v1/stores",
                               json={"name": "Rue Cler, the other shop", "timezone": "UTC"})
    # The door offer covers both shops; the "come back" offer, pushed on leaving, only this one.
    door = await world.campaign(name="door", trigger={
        "kind": "enter", "store_ids": [world.store_id, other["id"]]})
    leaving = await world.campaign(name="come back", trigger={
        "kind": "exit", "store_ids": [world.store_id], "min_stay_seconds": 0})
    _, phone = await world.device(customer_id="c-attribution")
    _, tablet = await world.device(customer_id="c-attribution")
    _, stranger = await world.device()
    await world.walk_in(phone)
    await dispatched(world)
    CLOCK.advance(timedelta(minutes=2))
    await world.walk_out(phone)
    await dispatched(world)
    assert [(await world.stats(c["id"]))["sent"] for c in (door, leaving)] == [1, 1]
    CLOCK.advance(timedelta(minutes=10))

    await buy(world, tablet, "24.90", world.store_id)  # both pushes cover it: the later one
    await buy(world, phone, "10.00", other["id"])  # only the door offer covers the other shop
    await buy(world, stranger, "99.00")  # someone else's purchase
    CLOCK.advance(timedelta(hours=25))
    await buy(world, phone, "7.00")  # more than a day after every push

    assert [credited(await world.stats(c["id"])) for c in (door, leaving)] == [
        (1, 10.0), (1, 24.9)]
