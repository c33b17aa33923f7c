"""Arbitration's evidence on the real database: which deliveries count and how, and when a
process re-reads it (never per moment)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from app.db import init_connection
from app.learning import MAX_AGE, MIN_REFRESH, Learner
from campaigns import store as campaign_store
from campaigns.arbitrate import Outcomes
from tests.clock import CLOCK
from tests.e2e.conftest import World


async def four_deliveries(world: World, tokens: list[str] | None = None,
                          ) -> tuple[str, list[UUID], str]:
    """One campaign, four devices walked in: four deliveries with their why; returns the
    campaign, the delivery ids and their bucket (and fills `tokens`, in the same order)."""
    campaign = await world.campaign(name="learn me")
    by_device = {}
    for _ in range(4):
        device, token = await world.device()
        by_device[device] = token
        await world.walk_in(token)
    rows = await world.sql("SELECT id, device_id::text, why -> 'context' ->> 'bucket' AS bucket "
                           "FROM deliveries ORDER BY created_at, id")
    assert len(rows) == 4 and len({r["bucket"] for r in rows}) == 1
    if tokens is not None:
        tokens.extend(by_device[r["device_id"]] for r in rows)
    return campaign["id"], [r["id"] for r in rows], rows[0]["bucket"]


async def connect(world: World) -> asyncpg.Connection:
    conn = await asyncpg.connect(world.database_url)
    await init_connection(conn)
    return conn


async def test_outcomes_count_redeemed_as_one_opened_as_a_quarter_and_pending_not_yet(
    quiet_world: World,
) -> None:
    campaign, (redeemed, opened, dismissed, pending), bucket = await four_deliveries(quiet_world)
    now = CLOCK()
    await quiet_world.sql(
        "UPDATE deliveries SET status = 'sent', "
        "redeemed_at = CASE WHEN id = $1 THEN $5::timestamptz END, "
        "opened_at = CASE WHEN id IN ($1, $2) THEN $5::timestamptz END, "
        "dismissed_at = CASE WHEN id = $3 THEN $5::timestamptz END, "
        "expires_at = $5::timestamptz + interval '15 minutes' WHERE id IN ($1, $2, $3, $4)",
        redeemed, opened, dismissed, pending, now)
    conn = await connect(quiet_world)
    try:
        key = (UUID(campaign), bucket)
        # The opened one is not resolved yet either (it may still be redeemed): two trials.
        assert await campaign_store.outcomes(conn, [UUID(campaign)], now) == {
            key: Outcomes(trials=2.0, conversions=1.0)}
        after_expiry = now + timedelta(minutes=15)
        assert await campaign_store.outcomes(conn, [UUID(campaign)], after_expiry) == {
            key: Outcomes(trials=4.0, conversions=1.25)}
        assert await campaign_store.outcomes(conn, [], now) == {}
    finally:
        await conn.close()


async def test_a_purchase_at_the_store_within_the_offers_life_is_a_conversion(
    quiet_world: World,
) -> None:
    tokens: list[str] = []
    campaign, _, bucket = await four_deliveries(quiet_world, tokens)
    now = CLOCK()
    await quiet_world.sql("UPDATE deliveries SET status = 'sent', "
                          "expires_at = $1::timestamptz + interval '15 minutes'", now)
    here, elsewhere = quiet_world.store_id, str(uuid4())
    for token, store, minutes_ago in [(tokens[0], here, 0.1), (tokens[1], elsewhere, 0.1),
                                      (tokens[2], None, 0.1), (tokens[3], here, 10)]:
        attributes = {"amount": "12.50"} | ({"store_id": store} if store else {})
        answer = await quiet_world.api.ok("POST", "/v1/signals", token, expect=202, json={
            "signals": [{"kind": "purchase", "attributes": attributes,
                         "ts": (now - timedelta(minutes=minutes_ago)).isoformat()}]})
        assert answer["rejected"] == [], answer
    conn = await connect(quiet_world)
    try:
        key = (UUID(campaign), bucket)
        # Here and with no store named: converted (and so known before expiry); at another
        # store, or before the moment: not, and known only once the offer expired.
        assert await campaign_store.outcomes(conn, [UUID(campaign)], now) == {
            key: Outcomes(trials=2.0, conversions=2.0)}
        assert await campaign_store.outcomes(
            conn, [UUID(campaign)], now + timedelta(minutes=15)) == {
            key: Outcomes(trials=4.0, conversions=2.0)}
    finally:
        await conn.close()


async def test_a_purchase_on_the_customers_other_device_converts_and_old_deliveries_age_out(
    quiet_world: World,
) -> None:
    campaign = await quiet_world.campaign(name="learn me")
    phone, phone_token = await quiet_world.device(customer_id="c-learn")
    _, tablet_token = await quiet_world.device(customer_id="c-learn")
    _, stranger_token = await quiet_world.device()
    await quiet_world.walk_in(phone_token)
    now = CLOCK()
    rows = await quiet_world.sql(
        "UPDATE deliveries SET status = 'sent', expires_at = $1::timestamptz + "
        "interval '15 minutes' RETURNING why -> 'context' ->> 'bucket' AS bucket", now)
    assert len(rows) == 1
    key = (UUID(campaign["id"]), rows[0]["bucket"])
    conn = await connect(quiet_world)

    async def buy(token: str) -> None:
        answer = await quiet_world.api.ok("POST", "/v1/signals", token, expect=202, json={
            "signals": [{"kind": "purchase",
                         "attributes": {"amount": "9.90", "store_id": quiet_world.store_id},
                         "ts": (now - timedelta(seconds=5)).isoformat()}]})
        assert answer["rejected"] == [], answer

    try:
        await buy(stranger_token)  # someone else's purchase converts nothing
        assert await campaign_store.outcomes(conn, [UUID(campaign["id"])], now) == {}
        await buy(tablet_token)  # the same customer, on another device: converted
        assert await campaign_store.outcomes(conn, [UUID(campaign["id"])], now) == {
            key: Outcomes(trials=1.0, conversions=1.0)}
        # A delivery older than the evidence window no longer counts.
        await quiet_world.sql("UPDATE deliveries SET moment_at = $1::timestamptz", now - timedelta(
            days=campaign_store.EVIDENCE_DAYS, seconds=1))
        assert await campaign_store.outcomes(conn, [UUID(campaign["id"])], now) == {}
    finally:
        await conn.close()
    assert phone


async def test_a_process_rereads_after_its_own_feedback_at_most_once_a_second_else_every_30_s(
    quiet_world: World,
) -> None:
    campaign_id, deliveries, bucket = await four_deliveries(quiet_world)
    conn = await connect(quiet_world)
    campaigns = [await campaign_store.get_campaign(conn, UUID(campaign_id))]
    key = (UUID(campaign_id), bucket)
    learner = Learner()

    async def redeem(delivery: UUID, at: datetime) -> None:
        await quiet_world.sql("UPDATE deliveries SET status = 'sent', redeemed_at = $2 "
                              "WHERE id = $1", delivery, at)

    async def trials(at: datetime) -> float:
        return (await learner.current(conn, campaigns, at)).cells.get(key, Outcomes()).trials

    try:
        t0 = CLOCK()
        assert await trials(t0) == 0.0
        await redeem(deliveries[0], t0)
        learner.learned()
        assert await trials(t0 + MIN_REFRESH / 2) == 0.0, "re-read before a second passed"
        assert await trials(t0 + MIN_REFRESH) == 1.0
        await redeem(deliveries[1], t0)  # recorded by another process: no learned() here
        t1 = t0 + MIN_REFRESH
        assert await trials(t1 + MAX_AGE / 2) == 1.0, "re-read before the copy was 30 s old"
        assert await trials(t1 + MAX_AGE) == 2.0
    finally:
        await conn.close()
