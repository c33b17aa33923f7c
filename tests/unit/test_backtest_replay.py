"""The backtest's replay loop in memory (no database): stepping runs of quiet batches in one
call of `presence.advance` decides exactly what stepping every batch alone decides, on random
days of shoppers who stay at home far from any fence, send late batches, pass by shops and
walk in and out of them."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import pytest

from app.backtest import Chunk, Replay, ReplayLedger
from app.backtest_store import PingArrays, pg_micros
from app.catalog import CatalogView
from app.intent import IntentModel
from app.prediction import Predictor
from campaigns.arbitrate import Evidence
from campaigns.backtest import Replayed, Tally, proposed_campaign
from campaigns.decide import Decision, PastPush
from campaigns.devices import Consent, Device
from campaigns.model import CampaignSpec, Policy
from customers.context import MomentEvidence
from geo.cells import cells_of
from geo.fences import EARTH_RADIUS_M, Point, validate
from geo.index import FenceIndex, IndexedFence, LayeredIndex

LAT0, LNG0 = 48.8566, 2.3522
START = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
END = START + timedelta(hours=12)
SHOPS = [(0.0, 0.0, 40.0), (150.0, 60.0, 25.0), (-120.0, 200.0, 60.0)]  # east, north, radius


def position(east_m: Any, north_m: Any) -> tuple[Any, Any]:
    """Metres east and north of the centre as (lat, lng); numbers or arrays."""
    lat = LAT0 + np.degrees(np.asarray(north_m) / EARTH_RADIUS_M)
    lng = LNG0 + np.degrees(np.asarray(east_m) / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))
    return lat, lng


def view() -> CatalogView:
    fences = []
    for k, (east, north, radius) in enumerate(SHOPS):
        lat, lng = (float(v) for v in position(east, north))
        fences.append(IndexedFence(uuid.UUID(int=k + 1), uuid.UUID(int=100 + k),
                                   validate(Point(coordinates=[lng, lat]), radius), 60, (),
                                   True))
    spec: dict[str, Any] = {
        "name": "p", "offer": {"title": "t", "body": "b"}, "offer_ttl_seconds": 600,
        "schedule": {"starts_at": "2026-11-01T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"},
        "caps": {"per_device": {"count": 3, "period_seconds": 86_400}, "cooldown_seconds": 900}}
    campaigns = [proposed_campaign(msgspec.convert({**spec, "trigger": {"kind": kind}},
                                                   CampaignSpec), START)
                 for kind in ("enter", "dwell", "exit")]
    return CatalogView(LayeredIndex(FenceIndex.build(fences)), 11,
                       {f.store_id: "Europe/Paris" for f in fences}, {}, campaigns,
                       Policy(max_per_device_per_day=100, min_seconds_between_pushes=0,
                              quiet_hours=None))


def day(rng: np.random.Generator, devices: int) -> PingArrays:
    """Each device: a morning at home 2 km away (batches every 20 min, one of them late), then
    walks between random shops and points near them (a fix every 15 s, a batch every 2 min),
    staying in some; the warm-up hour before START included."""
    rows: list[tuple[int, float, float, float, float, float]] = []
    for d in range(devices):
        t = (START - timedelta(hours=1)).timestamp()
        home = (2000.0 + 50 * d, -1500.0)
        for k in range(int(rng.integers(2, 8))):
            sent = t + 1200 * (k + 1) + 5
            fixes = np.sort(rng.uniform(t + 1200 * k, t + 1200 * (k + 1), rng.integers(1, 4)))
            if k == 1:
                sent += 1300  # arrives after the next batch
            rows += [(d, sent, s, home[0] + rng.normal(0, 15), home[1] + rng.normal(0, 15), 30.0)
                     for s in fixes.tolist()]
        t += 1200 * 8
        here = home
        for _ in range(int(rng.integers(2, 6))):
            east, north, radius = SHOPS[int(rng.integers(0, len(SHOPS)))]
            goal = (east + rng.uniform(-2, 2) * radius, north + rng.uniform(-2, 2) * radius)
            legs = max(2, int(math.hypot(goal[0] - here[0], goal[1] - here[1]) / 20))
            path = [(here[0] + (goal[0] - here[0]) * i / legs,
                     here[1] + (goal[1] - here[1]) * i / legs) for i in range(1, legs + 1)]
            path += [goal] * int(rng.integers(0, 12))  # a stay
            for x, y in path:
                t += 15
                rows.append((d, (math.floor(t / 120) + 1) * 120 + 3, t, x + rng.normal(0, 4),
                             y + rng.normal(0, 4), float(rng.uniform(5, 25))))
            here = goal
    device, received, ts, east_m, north_m, accuracy = (np.array(c) for c in zip(*rows, strict=True))
    order = np.lexsort((ts, received, device))
    lat, lng = position(east_m[order], north_m[order])

    def micros(seconds: np.ndarray) -> np.ndarray:
        return np.array([pg_micros(datetime.fromtimestamp(s, UTC)) for s in seconds.tolist()])

    return PingArrays(device=device[order].astype(np.int32), received_at=micros(received[order]),
                      ts=micros(ts[order]), lat=lat, lng=lng, accuracy=accuracy[order],
                      cell=cells_of(lat, lng, 11))


class Kept(ReplayLedger):
    """The replay's ledger, keeping every decision it is handed."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(Evidence(), tally)
        self.decisions: list[tuple[Any, ...]] = []

    async def record(self, decision: Decision, now: datetime,
                     evidence: MomentEvidence | None) -> PastPush | None:
        self.decisions.append((now, decision.moment.kind, decision.moment.fence_id,
                               decision.moment.occurred_at,
                               None if decision.chosen is None else decision.chosen.id,
                               sorted((s.campaign_id, s.reason) for s in decision.suppressions)))
        return await super().record(decision, now, evidence)


async def replay(chunk: Chunk, *, coalesce: bool) -> tuple[Replay, Kept, Any]:
    v = view()
    tally = Tally(v.campaigns[0].id)
    ledger = Kept(tally)
    r = Replay(v, Predictor(), IntentModel(), None, ledger, START, END, coalesce=coalesce)
    await r._replay(chunk)
    return r, ledger, tally.result(START, END, Replayed(devices=0, batches=0, pings=0))


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_stepping_quiet_batches_together_decides_what_stepping_each_alone_does(
        seed: int) -> None:
    pings = day(np.random.default_rng(seed), 12)
    devices = [Device(id=uuid.UUID(int=1000 + d), platform="android", fcm_token="t", fid=None,
                      push_retired_at=None, customer_id=None, locale=None, timezone="UTC",
                      app_version=None, consent=Consent(location=True, marketing_push=True),
                      consent_updated_at=START, created_at=START, updated_at=START)
               for d in range(12)]
    chunk = Chunk(devices, pings, {}, {}, {})
    alone, kept_alone, result_alone = await replay(chunk, coalesce=False)
    together, kept_together, result_together = await replay(chunk, coalesce=True)
    assert kept_together.decisions == kept_alone.decisions
    assert result_together == result_alone
    assert len(kept_alone.decisions) > 10 and result_alone.would_send > 0
    assert alone.steps == alone.batches  # every batch alone
    assert together.steps < alone.steps  # some runs were stepped together
