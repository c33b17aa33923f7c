"""`make demo`'s fixtures and replay, against the app in-process with its dispatcher and the
FCM emulator.

The replay runs once for the module (`demo_run`, on its own database and event loop, at the
pinned instant); the tests only read what it did and printed.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.dsn import with_database
from app.main import create_app
from campaigns.model import CampaignSpec
from customers.model import CART_ADD, CHECKOUT, DIRECTIONS, PRODUCT_VIEW, PURCHASE, SEARCH
from customers.transactions_csv import columns_of, parse_rows
from customers.value import PRIOR, Purchase, histories, value_matrix
from fixtures import crowd, demo, district, purchases, shoppers
from geo.fences import Geometry, validate
from geo.model import FeatureCollection, StoreIn
from geo.pings import MAX_FUTURE, SignalIn, check_attributes, check_time
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.clock import CLOCK, PINNED
from tests.e2e.conftest import emulator_thread

DemoRun = tuple[demo.DemoResult, str]
# Fewer than `make demo`'s 160, to keep the module quick; still enough controls (25 % of them)
# for the visit uplift's interval to stay above 0.
TEST_CROWD = 100


async def _replay(database_url: str) -> DemoRun:
    with emulator_thread() as emulator_url:
        settings = settings_for(database_url, run_dispatcher=True, fcm_endpoint=emulator_url,
                                dispatch_lease_seconds=2.0)
        async with AsyncTestClient(app=create_app(settings, clock=CLOCK)) as client, \
                httpx.AsyncClient(base_url=emulator_url, timeout=30.0) as emulator:
            out = io.StringIO()
            result = await demo.Demo(client, emulator, ADMIN_TOKEN, out, pace=0.0,
                                     clock=CLOCK, crowd_size=TEST_CROWD).run()
            return result, out.getvalue()


async def _admin(server_dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def demo_run(server_dsn: str, template_db: str) -> Iterator[DemoRun]:
    name = f"contexto_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    try:
        # Module fixtures start before the per-test clock reset: pin it here.
        CLOCK.set(PINNED)
        yield asyncio.run(_replay(with_database(server_dsn, name)))
    finally:
        asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_every_store_and_fence_of_the_fixtures_is_valid() -> None:
    stores = district.load_district()
    assert len(stores) >= 10
    for store in stores:
        msgspec.convert({"name": store.name, "timezone": store.timezone,
                         "address": store.address, "external_id": store.external_id}, StoreIn)
        assert len(store.features) in (1, 2), store.external_id
        msgspec.convert({"type": "FeatureCollection", "features": store.features},
                        FeatureCollection)
        for feature in store.features:
            shape = validate(msgspec.convert(feature["geometry"], Geometry),
                             feature["properties"].get("radius_m"))
            assert 100 <= shape.area_m2 <= 3_000, (store.external_id, shape.area_m2)
    kinds = {f["geometry"]["type"] for s in stores for f in s.features}
    assert kinds == {"Polygon", "MultiPolygon", "Point"}


def test_the_campaigns_are_valid_and_cover_every_trigger_kind() -> None:
    stores = district.load_district()
    ids = {s.external_id: f"00000000-0000-0000-0000-{i:012d}" for i, s in enumerate(stores)}
    zones = {s.external_id: s.timezone for s in stores}
    doc = json.loads(district.CAMPAIGNS_PATH.read_text())
    now = CLOCK()
    specs = [msgspec.convert(b, CampaignSpec)
             for b in district.campaign_bodies(doc, ids, zones, now)]
    assert {s.trigger.kind for s in specs} == {"enter", "dwell", "exit", "predicted_next"}
    assert all(s.schedule.starts_at <= now < s.schedule.ends_at for s in specs)
    assert any(s.holdout_percent for s in specs)
    assert any(s.caps.cooldown_seconds for s in specs)


def test_audience_campaigns_cover_buy_with_a_category_and_go_and_leave_plain_ones_for_all() -> None:
    doc = json.loads(district.CAMPAIGNS_PATH.read_text())
    audiences = [c["audience"] for c in doc["campaigns"] if "audience" in c]
    assert any("buy" in a.get("micromoments", []) and a.get("categories") for a in audiences)
    assert any("go" in a.get("micromoments", []) for a in audiences)
    assert any(a.get("value_tiers") == ["high"] for a in audiences)
    assert len(audiences) < len(doc["campaigns"])


def test_the_shoppers_pings_are_acceptable_and_in_the_last_half_hour() -> None:
    now = CLOCK()
    doc = json.loads(shoppers.SHOPPERS_PATH.read_text())
    planned = shoppers.plan_shoppers(doc, district.load_district(), random.Random(1), now)
    assert len(planned) >= 15
    for shopper in planned:
        assert all(now - timedelta(minutes=30) < p.at < now for p in shopper.pings)
        assert all(0 < p.accuracy_m < 5000 for p in shopper.pings)


def test_the_shoppers_signals_are_acceptable_and_name_stores_of_the_district() -> None:
    now = CLOCK()
    doc = json.loads(shoppers.SHOPPERS_PATH.read_text())
    district_ids = {s.external_id for s in district.load_district()}
    ids = {external: str(uuid.uuid4()) for external in district_ids}
    planned = shoppers.plan_shoppers(doc, district.load_district(), random.Random(1), now)
    signals = [g for s in planned for g in s.signals]
    assert {g.kind for g in signals} >= {CART_ADD, DIRECTIONS, SEARCH, PRODUCT_VIEW}
    assert {g.kind for g in signals} <= {CART_ADD, CHECKOUT, DIRECTIONS, PURCHASE, SEARCH,
                                         PRODUCT_VIEW, "store_locator"}
    for signal in signals:
        assert signal.store is None or signal.store in district_ids, signal
        sent = msgspec.convert(signal.body(ids), SignalIn)
        assert (check_time(sent.ts, now), check_attributes(sent)) == (None, None), signal
        assert sent.ts < now, signal


def test_some_shoppers_send_no_signals_so_audiences_have_someone_to_pass_by() -> None:
    doc = json.loads(shoppers.SHOPPERS_PATH.read_text())
    with_signals = [s["name"] for s in doc["shoppers"] if s.get("signals")]
    assert 4 <= len(with_signals) <= len(doc["shoppers"]) - 4


def _purchase_plan(seed: int, now: datetime) -> list[purchases.PastPurchase]:
    doc = json.loads(shoppers.SHOPPERS_PATH.read_text())
    stores = sorted(s.external_id for s in district.load_district())
    return purchases.plan_purchases(doc, stores, random.Random(f"{seed}-purchases"), now)


@pytest.mark.parametrize("seed", [7, 1, 2, 3, 4, 5])
def test_the_purchase_histories_put_shoppers_in_each_tier_and_newcomers_low(seed: int) -> None:
    # As the service tiers a fresh database's customers: too few to fit, so the shipped prior.
    now = CLOCK()
    planned = _purchase_plan(seed, now)
    matrix = value_matrix(PRIOR, histories(
        [Purchase(p.buyer, p.at, p.amount) for p in planned], now))
    tiers = {name: matrix.of(name).tier for name in ("david", "gabrielle", "quentin", "amelie")}
    assert tiers == {"david": "high", "gabrielle": "medium", "quentin": "low", "amelie": "low"}
    # A big past spender whose potential has faded: high history, medium or low potential.
    assert matrix.of("gabrielle").historical == "high"
    assert matrix.of("gabrielle").potential in ("medium", "low")
    assert len(matrix.values) < 50  # below the fit's minimum: the prior answers, in milliseconds


def test_the_purchase_csv_is_importable_and_the_same_for_the_same_seed() -> None:
    now = CLOCK()
    planned = _purchase_plan(7, now)
    ids = {s.external_id: str(uuid.uuid4()) for s in district.load_district()}
    text = purchases.transactions_csv(planned, lambda name: f"demo-{name}", ids)
    header, *lines = text.splitlines()
    rows = parse_rows(lines, 2, columns_of(header), now)
    assert len(rows) == len(planned) and all(ts < now for _, ts, _, _ in rows)
    assert _purchase_plan(7, now) == planned != _purchase_plan(8, now)
    assert purchases.totals(planned)["david"] == round(sum(
        p.amount for p in planned if p.buyer == "david"), 2)


def test_the_demo_imports_the_fixtures_and_its_shoppers_get_pushes(demo_run: DemoRun) -> None:
    result, output = demo_run
    stores = district.load_district()
    assert result.stores == len(stores)
    assert result.fences == sum(len(s.features) for s in stores)
    assert len(result.pushes) >= 10, output
    assert sum(s["sent"] for s in result.stats.values()) == len(result.pushes), output
    by_name = {s.name: s for s in result.shoppers}
    assert all(s.rejected == 0 for s in result.shoppers), output
    for quiet in ("ines", "jules", "karim"):  # cyclist, poor GPS, no marketing consent
        assert by_name[quiet].pushes == [], (quiet, output)
    assert "campaign" in output and "triggered" in output


def test_every_push_keeps_the_context_it_was_decided_in(demo_run: DemoRun) -> None:
    result, output = demo_run
    contexts = [p.context for p in result.pushes]
    assert all(c is not None and 0.0 <= c["p_buy"] <= 1.0 and c["intent_model"] for c in contexts)
    assert all(p.evidence for p in result.pushes if p.micromoment is not None), output


def test_every_push_says_how_it_won_its_moment(demo_run: DemoRun) -> None:
    result, output = demo_run
    assert all(p.why is not None and p.why["chosen"]["campaign_id"] == p.campaign_id
               for p in result.pushes), output
    assert output.count("↳ won by ") == len(result.pushes), output


def test_audience_campaigns_push_only_in_their_micromoment_and_buy_and_go_both_happen(
        demo_run: DemoRun) -> None:
    result, output = demo_run
    audiences = {cid: c["audience"] for cid, c in result.campaigns.items()
                 if (c.get("audience") or {}).get("micromoments")}
    targeted = [p for p in result.pushes if p.campaign_id in audiences]
    assert all(p.micromoment in audiences[p.campaign_id]["micromoments"] for p in targeted)
    assert {p.micromoment for p in targeted} >= {"buy", "go"}, output


def test_shoppers_without_signals_get_nothing_from_audience_campaigns_which_count_them(
        demo_run: DemoRun) -> None:
    result, output = demo_run
    audiences = {cid for cid, c in result.campaigns.items() if c.get("audience")}
    by_signals = {cid for cid in audiences
                  if "value_tiers" not in result.campaigns[cid]["audience"]}
    silent = {s.name for s in result.shoppers if not s.signals}
    assert [p.shopper for p in result.pushes
            if p.campaign_id in by_signals and p.shopper in silent] == [], output
    for cid in audiences:
        suppressed = result.stats[cid]["suppressed"]["audience"]
        name = result.campaigns[cid]["name"]
        row = next(line for line in output.splitlines() if line.startswith(name[:27]))
        assert suppressed > 0 and f"audience {suppressed}" in row, (name, output)


def test_the_demo_ends_with_the_context_of_the_shoppers_who_sent_signals(
        demo_run: DemoRun) -> None:
    result, output = demo_run
    sent = {s.name for s in result.shoppers if s.signals}
    assert sent < set(result.contexts), output
    assert result.contexts["chloe"]["micromoment"]["kind"] == "buy", output


def test_the_shoppers_with_a_purchase_history_are_in_other_tiers_than_low(
        demo_run: DemoRun) -> None:
    result, output = demo_run
    assert {name: v["tier"] for name, v in result.values.items() if v["historical_amount"] > 0} \
        == {"david": "high", "gabrielle": "medium", "quentin": "low"}, output
    tiers = {p.shopper: p.tier for p in result.pushes}
    assert (tiers["david"], tiers["gabrielle"]) == ("high", "medium"), output
    assert "tier high (historical high × potential high)" in output
    assert "tier medium (historical high × potential low)" in output
    table = output[output.index("their value now"):]
    assert all(name in table for name in ("david", "gabrielle", "quentin")), output


def test_a_high_tier_offer_goes_to_the_high_value_shopper_and_the_low_one_is_told_why_not(
        demo_run: DemoRun) -> None:
    result, output = demo_run
    club = next(cid for cid, c in result.campaigns.items()
                if (c.get("audience") or {}).get("value_tiers") == ["high"])
    franprix = {p.shopper: p for p in result.pushes if p.store == "Franprix Cler-Grenelle"}
    assert franprix["david"].campaign_id == club, output
    quentin = franprix["quentin"]
    assert quentin.campaign_id != club and quentin.why is not None, output
    held = next(c for c in quentin.why["candidates"] if c["campaign_id"] == club)
    assert (held["reason"], held["detail"]) == ("audience", "tier low not in [high]")
    assert result.stats[club]["suppressed"]["audience"] >= 1
    assert f"{result.campaigns[club]['name']}: audience (tier low not in [high])" in output


def test_an_expected_value_draw_decides_between_offers_of_one_priority_and_other_values(
        demo_run: DemoRun) -> None:
    result, output = demo_run
    drawn = [p for p in result.pushes
             if p.why is not None and p.why["chosen"]["rule"] == "expected value draw"]
    assert drawn, output
    for push in drawn:
        assert push.why is not None
        scored = [c for c in push.why["candidates"] if c.get("score") is not None]
        assert len({c["value"] for c in scored}) == len(scored) >= 2, push.why
        assert max(scored, key=lambda c: c["score"])["campaign_id"] == push.campaign_id
    assert "won by expected value draw (drawn score" in output


def test_the_crowds_returners_are_exact_shares_of_each_group_and_the_same_for_a_seed() -> None:
    group = [crowd.CrowdShopper(f"crowd-{i:03d}", []) for i in range(43)]
    drawn = crowd.returners(random.Random(3), group, crowd.CONTROL_VISIT_RATE)
    assert len(drawn) == round(crowd.CONTROL_VISIT_RATE * 43) == 9
    assert drawn == crowd.returners(random.Random(3), group, crowd.CONTROL_VISIT_RATE)
    assert crowd.TREATED_VISIT_RATE > crowd.CONTROL_VISIT_RATE
    assert crowd.TREATED_PURCHASE_RATE > crowd.CONTROL_PURCHASE_RATE


def test_the_crowds_visits_are_acceptable_pings_inside_the_offers_lifetime() -> None:
    now = CLOCK()
    store = next(s for s in district.load_district() if s.external_id == crowd.CROWD_STORE)
    planned = crowd.plan_crowd(random.Random(1), crowd.shop_centre(store.features[0]), now, 20)
    for shopper in planned:
        assert 0 < len(shopper.first_visit) <= 500
        assert all(now - timedelta(hours=1) < p.at < now for p in shopper.first_visit)
    for seed in range(20):
        back = crowd.visit_pings(random.Random(seed), crowd.shop_centre(store.features[0]),
                                 now + crowd.RETURN_DELAY, crowd.RETURN_STAY, leave=False)
        assert now < back[0].at and back[-1].at < now + MAX_FUTURE - timedelta(seconds=30)


def test_the_demo_ends_with_the_uplift_of_its_held_out_campaign_treated_above_control(
        demo_run: DemoRun) -> None:
    result, output = demo_run
    measured = result.measured
    assert all(s.rejected == [] for s in measured.crowd), output
    answers = measured.uplifts[measured.campaign_id]
    for goal in ("visit", "purchase"):
        answer = answers[goal]
        treated, control = answer["treated"], answer["control"]
        assert treated["n"] > 0 and control["n"] > 0, (goal, answer)
        assert treated["n"] + control["n"] <= TEST_CROWD, answer
        assert treated["rate"] > control["rate"], (goal, answer)
    assert answers["visit"]["ci95"][0] > 0 and answers["visit"]["p_value"] < 0.05, answers
    assert set(measured.uplifts) == set(result.campaigns)
    table = output[output.index("uplift (GET /v1/campaigns/{id}/uplift"):]
    assert all(c["name"][:27] in table for c in result.campaigns.values()), output
    assert "method: Newcombe" in table and "visit" in table and "purchase" in table


def test_the_demo_ends_with_a_backtest_that_would_have_sent_pushes(demo_run: DemoRun) -> None:
    result, output = demo_run
    backtest = result.measured.backtest
    assert backtest["would_send"] > 0 and backtest["devices"] > 0, backtest
    assert backtest["moments"] == backtest["would_send"] + sum(backtest["suppressed"].values())
    assert backtest["by_geofence"], backtest
    summary = output[output.index("backtest (POST /v1/campaigns/backtest)"):]
    assert f"would send {backtest['would_send']} pushes" in summary and "top fences:" in summary
