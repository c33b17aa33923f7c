"""One ping batch, end to end, in one transaction: lock the device, store the pings with COPY,
move presence, record geo events (and their webhook events), decide, queue deliveries.

One rule: the only database round trips are per batch, never per ping; geometry and decisions
run on the in-memory catalog, refreshed inside the same transaction.

What a batch decides from its fixes (`fence_hits`, then `geo.presence.advance`, then
`answer_batch`: moments, predictions, context, decisions) reads and writes only through a
`Ledger` (`app/ledger.py`): the database here, memory in the backtest (`app/backtest.py`), which
replays stored pings through these same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import msgspec
import numpy as np
from numpy.typing import NDArray

from app.catalog import Catalog, CatalogView
from app.context import with_context
from app.intent import IntentModel
from app.ledger import Ledger, StoredLedger
from app.prediction import Predictor
from app.value import ValueModel
from campaigns import outbox
from campaigns.arbitrate import Evidence
from campaigns.decide import Decision, DeviceContext, Moment, PastPush, decide
from campaigns.devices import Device
from campaigns.webhooks import events as webhook_events
from customers.context import MomentEvidence
from customers.store import customer_key
from geo import presence
from geo import store as geo_store
from geo.cells import cells_of
from geo.fences import haversine_m
from geo.index import FenceHit
from geo.pings import PingIn
from geo.predict import Visit
from geo.presence import DevicePresence, Entered, Exited, Fix, GeoEvent
from geo.store import Connection

# A fix that does not say how good it is is taken as a typical urban smartphone fix.
DEFAULT_ACCURACY_M = 25.0

KIND_OF_EVENT: dict[str, Literal["enter", "dwell", "exit"]] = {
    "entered": "enter", "dwelled": "dwell", "exited": "exit",
}

# Read after the device's row lock is held (a separate statement, so it sees the presence the
# previous batch committed), together with the catalog's versions: one round trip.
LOAD_PRESENCE = """
SELECT (SELECT state FROM presence WHERE device_id = $1) AS state,
       (SELECT version FROM catalog_version) AS fences,
       (SELECT version FROM campaign_version) AS campaigns
"""
SAVE_PRESENCE = """
INSERT INTO presence (device_id, state, last_at, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (device_id) DO UPDATE SET state = $2, last_at = $3, updated_at = $4
"""
INSERT_VISITS = """
INSERT INTO visits (customer_key, device_id, place_id, arrived_at, departed_at, lat, lng, source,
                    created_at)
SELECT $1, $2, p, a, d, la, ln, 'presence', $8
FROM unnest($3::text[], $4::timestamptz[], $5::timestamptz[], $6::float8[], $7::float8[])
     AS t(p, a, d, la, ln)
ON CONFLICT (customer_key, place_id, arrived_at) DO NOTHING
"""
MARK_ARRIVALS = """
UPDATE deliveries d SET arrived_at = t.at
FROM unnest($2::uuid[], $3::timestamptz[]) AS t(store, at)
WHERE d.device_id = $1 AND d.predicted_store_id = t.store AND d.arrived_at IS NULL
  AND d.status IN ('queued', 'sending', 'sent') AND t.at BETWEEN d.moment_at AND d.expires_at
"""
# Moving without a fresh exit: predict from the last place if it was left this recently.
MOVING_AFTER_VISIT = timedelta(minutes=30)
MOVING_MIN_DISPLACEMENT_M = 100.0


class BatchOutcome(msgspec.Struct, frozen=True):
    events: list[GeoEvent]
    queued: int
    visits: list[Visit] = msgspec.field(default_factory=list)  # ended in this batch
    decisions: list[Decision] = msgspec.field(default_factory=list)  # for the live feed


def device_context(device: Device) -> DeviceContext:
    has_address = (device.fcm_token or device.fid) is not None and device.push_retired_at is None
    return DeviceContext(device_id=device.id, marketing_consent=device.consent.marketing_push,
                         timezone=device.timezone, has_push_address=has_address)


async def load_presence(conn: Connection, catalog: Catalog,
                        device_id: UUID) -> DevicePresence:
    """The device's presence state, with the catalog brought up to date on the way."""
    row = await conn.fetchrow(LOAD_PRESENCE, device_id)
    assert row is not None
    await catalog.ensure(conn, row["fences"], row["campaigns"])
    if row["state"] is None:
        return DevicePresence(device_id=device_id)
    return msgspec.convert(row["state"], DevicePresence)


async def ingest_pings(conn: Connection, catalog: Catalog, predictor: Predictor,
                       intent_model: IntentModel, device: Device, pings: Sequence[PingIn],
                       now: datetime, *, context: bool = True, arbitration: bool = True,
                       value_model: ValueModel | None = None) -> BatchOutcome:
    """Run the pipeline for a device's accepted pings (call inside a transaction that holds
    the device's row lock). `context=False` is the benchmark's control run only
    (`Settings.bench_skip_context`): moments go to the rules without a context;
    `arbitration=False` likewise (`Settings.bench_skip_arbitration`): no evidence is read and
    survivors are ranked without a draw. Without a `value_model` (the context benchmark), every
    customer's value tier is unknown."""
    if not pings:
        return BatchOutcome([], 0)
    before = await load_presence(conn, catalog, device.id)
    view = catalog.view()
    lat = np.fromiter((p.lat for p in pings), np.float64, len(pings))
    lng = np.fromiter((p.lng for p in pings), np.float64, len(pings))
    cells = cells_of(lat, lng, view.resolution)
    # H3 cells are unsigned 64-bit; PostgreSQL's bigint is signed (H3 never sets bit 63).
    records = [
        (device.id, p.ts, p.lat, p.lng, p.accuracy_m, p.speed_mps, p.heading_deg, c, now)
        for p, c in zip(pings, cells.view(np.int64).tolist(), strict=True)
    ]
    await geo_store.copy_pings(conn, records)

    accuracy = np.fromiter((DEFAULT_ACCURACY_M if p.accuracy_m is None else p.accuracy_m
                            for p in pings), np.float64, len(pings))
    fixes = [Fix(p.ts, p.lat, p.lng, a) for p, a in zip(pings, accuracy.tolist(), strict=True)]
    hits = fence_hits(view, lat, lng, accuracy)
    after, events = presence.advance(before, fixes, hits, view.index.fences)
    if after != before:
        await conn.execute(SAVE_PRESENCE, device.id, msgspec.to_builtins(after), after.last_at,
                           now)
    visits: list[Visit] = []
    if events:
        await _record_events(conn, view, device, events, now)
        visits = await _record_visits(conn, view, device, events, now)
    ledger = StoredLedger(conn, catalog.learner)
    queued = await answer_batch(ledger, view, predictor, intent_model, value_model, device,
                                events, fixes, after, now, context=context,
                                arbitration=arbitration)
    return BatchOutcome(events, queued, visits, ledger.decided)


def fence_hits(view: CatalogView, lat: NDArray[np.float64], lng: NDArray[np.float64],
               accuracy: NDArray[np.float64]) -> list[list[FenceHit]]:
    """The fences near each fix, matched with the margins presence needs for its accuracy."""
    index = view.index
    if not len(index):
        return [[] for _ in range(len(lat))]
    return index.match(lat, lng, presence.match_margins(accuracy)).hits()


async def answer_batch(ledger: Ledger, view: CatalogView, predictor: Predictor,
                       intent_model: IntentModel, value_model: ValueModel | None,
                       device: Device, events: Sequence[GeoEvent], fixes: Sequence[Fix],
                       after: DevicePresence, now: datetime, *, context: bool = True,
                       arbitration: bool = True) -> int:
    """What the batch's presence events (and the customer's predicted next place) make of it:
    each moment with its context, decided in time order and kept by `ledger`. Return how many
    pushes were queued."""
    moments = moments_of(view, events)
    moments.extend(await predicted_moments(ledger, view, predictor, device, events, fixes,
                                           after))
    contexted: list[tuple[Moment, MomentEvidence | None]] = []
    if view.campaigns and context and moments:
        contexted.extend(await with_context(ledger, view, intent_model, value_model,
                                            device.customer_id, device.id, moments, fixes, now))
    elif view.campaigns:
        contexted.extend((m, None) for m in moments)
    evidence = await ledger.evidence(view.campaigns, now) \
        if view.campaigns and contexted and arbitration else None
    return await decide_moments(ledger, view, device, contexted, now, evidence, draw=arbitration)


async def _record_visits(conn: Connection, catalog: CatalogView, device: Device,
                         events: Sequence[GeoEvent], now: datetime) -> list[Visit]:
    """Exits end visits at the fence's store; entries confirm predicted arrivals."""
    fences = catalog.index.fences
    key = customer_key(device.customer_id, device.id)
    ended = [
        Visit(user_id=key, place_id=str(fences[e.fence_id].store_id), arrived_at=e.entered_at,
              departed_at=e.at, lat=fences[e.fence_id].shape.center_lat,
              lng=fences[e.fence_id].shape.center_lng)
        for e in events if isinstance(e, Exited)
    ]
    if ended:
        await conn.execute(INSERT_VISITS, key, device.id, [v.place_id for v in ended],
                           [v.arrived_at for v in ended], [v.departed_at for v in ended],
                           [v.lat for v in ended], [v.lng for v in ended], now)
    entered = [e for e in events if isinstance(e, Entered)]
    if entered:
        await conn.execute(MARK_ARRIVALS, device.id,
                           [fences[e.fence_id].store_id for e in entered],
                           [e.at for e in entered])
    return ended


async def predicted_moments(ledger: Ledger, catalog: CatalogView, predictor: Predictor,
                            device: Device, events: Sequence[GeoEvent], fixes: Sequence[Fix],
                            after: DevicePresence) -> list[Moment]:
    """The customer's predicted next store, as a moment, when they just left a place (an
    Exited) or are moving away from the last one; only for stores a campaign targets."""
    targets = catalog.predicted_targets()
    if not targets:
        return []
    key = customer_key(device.customer_id, device.id)
    exits = [e for e in events if isinstance(e, Exited)]
    left_store: UUID | None
    if exits:
        left_at, left_store = exits[-1].at, catalog.index.fences[exits[-1].fence_id].store_id
        history = await ledger.recent_visits(key)
    else:
        if after.fences or not _moving(fixes):
            return []
        history = await ledger.recent_visits(key)
        last = history[-1] if history else None
        latest = max(f.at for f in fixes)
        if last is None or last.departed_at is None or \
                not timedelta(0) <= latest - last.departed_at <= MOVING_AFTER_VISIT:
            return []
        left_at, left_store = last.departed_at, _uuid_or_none(last.place_id)
    for place, probability in predictor.predict(key, history, left_at, k=10):
        store = _uuid_or_none(place)
        if store is None or store == left_store or store not in targets:
            continue
        return [Moment(
            device_id=device.id, kind="predicted_next", fence_id=None, store_id=store,
            fence_tags=catalog.store_tags.get(store, ()), occurred_at=left_at,
            store_timezone=catalog.store_timezones.get(store, "UTC"), probability=probability,
        )]
    return []


def _moving(fixes: Sequence[Fix]) -> bool:
    ordered = sorted(fixes, key=lambda f: f.at)
    first, last = ordered[0], ordered[-1]
    return haversine_m(first.lat, first.lng, last.lat, last.lng) >= MOVING_MIN_DISPLACEMENT_M


def _uuid_or_none(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


async def _record_events(conn: Connection, catalog: CatalogView, device: Device,
                         events: Sequence[GeoEvent], now: datetime) -> None:
    """The geo events, and their webhook `moment` events when subscribed (one statement)."""
    fences = catalog.index.fences
    await webhook_events.record_moments(
        conn, device.id, device.customer_id,
        [e.fence_id for e in events], [fences[e.fence_id].store_id for e in events],
        [_kind(e) for e in events], [e.at for e in events],
        [getattr(e, "entered_at", None) for e in events], now,
    )


def _kind(event: GeoEvent) -> str:
    kind: str = type(event).__struct_config__.tag  # type: ignore[assignment]
    return kind


def moments_of(catalog: CatalogView, events: Sequence[GeoEvent]) -> list[Moment]:
    fences = catalog.index.fences
    moments = []
    for e in events:
        fence = fences[e.fence_id]
        moments.append(Moment(
            device_id=e.device_id, kind=KIND_OF_EVENT[_kind(e)], fence_id=e.fence_id,
            store_id=fence.store_id, fence_tags=fence.tags, occurred_at=e.at,
            store_timezone=catalog.store_timezones.get(fence.store_id, "UTC"),
            stay_seconds=(e.at - e.entered_at).total_seconds() if isinstance(e, Exited)
            else None,
        ))
    return moments


async def decide_moments(ledger: Ledger, catalog: CatalogView, device: Device,
                         moments: Sequence[tuple[Moment, MomentEvidence | None]],
                         now: datetime, learned: Evidence | None = None, *,
                         draw: bool = True) -> int:
    """Decide every moment in time order and keep the winners through `ledger`, each delivery
    keeping its moment's evidence and why it won; `learned` is arbitration's evidence
    (`draw=False`: the benchmark's control, see `ingest_pings`). Return how many were
    queued."""
    campaigns = catalog.campaigns
    if not campaigns or not moments:
        return 0
    past: list[PastPush] = await ledger.pushes(
        device.id, now - outbox.history_horizon(campaigns))
    context = device_context(device)
    key = customer_key(device.customer_id, device.id)
    by_id = {c.id: c for c in campaigns}
    queued = 0
    for moment, evidence in sorted(moments, key=lambda m: m[0].occurred_at):
        decision = decide(moment, context, campaigns, catalog.policy, past, now, learned,
                          draw=draw)
        push = await ledger.record(decision, now, evidence)
        if push is not None:
            past.append(push)
            queued += 1
        # Treated and control moments, for measurement; held-out ones pace the next moments.
        past.extend(await ledger.assign(
            decision, queued=push is not None, customer_key=key, campaigns=by_id,
            stores_of=catalog.campaign_stores, now=now))
    return queued
