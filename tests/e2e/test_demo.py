"""`make demo`'s fixtures and replay, against the app in-process with its dispatcher and the
FCM emulator."""

from __future__ import annotations

import io
import json
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.main import create_app
from campaigns.model import CampaignSpec
from fixtures import demo, district, shoppers
from geo.fences import Geometry, validate
from geo.model import FeatureCollection, StoreIn
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.clock import CLOCK
from tests.e2e.conftest import emulator_thread


@pytest.fixture
async def demo_run(database_url: str) -> AsyncIterator[tuple[demo.DemoResult, str]]:
    with emulator_thread() as emulator_url:
        settings = settings_for(database_url, run_dispatcher=True, fcm_endpoint=emulator_url,
                                dispatch_lease_seconds=2.0)
        async with AsyncTestClient(app=create_app(settings, clock=CLOCK)) as client, \
                httpx.AsyncClient(base_url=emulator_url) as emulator:
            out = io.StringIO()
            result = await demo.Demo(client, emulator, ADMIN_TOKEN, out, pace=0.0,
                                     clock=CLOCK).run()
            yield result, out.getvalue()


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


def test_the_shoppers_pings_are_acceptable_and_in_the_last_half_hour() -> None:
    now = CLOCK()
    doc = json.loads(shoppers.SHOPPERS_PATH.read_text())
    planned = shoppers.plan_shoppers(doc, district.load_district(), random.Random(1), now)
    assert len(planned) >= 15
    for shopper in planned:
        assert all(now - timedelta(minutes=30) < p.at < now for p in shopper.pings)
        assert all(0 < p.accuracy_m < 5000 for p in shopper.pings)


async def test_the_demo_imports_the_fixtures_and_its_shoppers_get_pushes(
        demo_run: tuple[demo.DemoResult, str]) -> None:
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
