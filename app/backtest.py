"""The backtest: a proposed campaign replayed over the stored pings and signals of a past period,
against the current fences, policy and other active campaigns, deciding as the live ping path
would have, and sending and changing nothing.

One rule: the replay runs the live path's own functions — `app.ingest.fence_hits`,
`geo.presence.advance` and `app.ingest.answer_batch` (moments, predictions, context, the
decision rules and arbitration) — batch by batch as the batches were received, each with its
arrival time as `now`; only the ledger differs. `ReplayLedger` answers from what was read for
the period and keeps decisions in memory: caps, cooldowns and the daily maximum count the pushes
queued or sent before `from`, then those the replay decided, as if the proposal had been live
all along. Everything is read in one read-only repeatable-read transaction: one consistent
snapshot, and PostgreSQL itself refuses a write.

The period is read a chunk of devices at a time (`app/backtest_store.py`); the next chunk is
read while the replay works through the current one, so PostgreSQL and Python work at once and
at most two chunks are in memory. The replay hands the event loop back every few milliseconds,
so the process goes on serving pings meanwhile.

What a replay cannot know of the past is taken as it is now: the devices (consent, time zone,
push address, customer id), the fences, the other active campaigns, the policy, arbitration's
learned evidence, and the intent, value and next-place models. Presence starts empty `WARMUP`
before `from`: the batches received in that warm-up move it (a device already in a shop at
`from` does not enter it then) but decide nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import numpy as np

from app import backtest_store as period
from app import collector
from app.backtest_store import PingArrays, StoredSignals, StoredVisit
from app.catalog import Catalog, CatalogView
from app.ingest import DEFAULT_ACCURACY_M, answer_batch, fence_hits
from app.intent import IntentModel
from app.prediction import HISTORY_LENGTH, Predictor
from app.value import ValueModel
from campaigns import outbox
from campaigns import store as campaign_store
from campaigns.arbitrate import Evidence
from campaigns.assignments import StoresOf, arms_of
from campaigns.backtest import Backtest, BacktestIn, Replayed, Tally, proposed_campaign
from campaigns.decide import Decision, PastPush, moment_key
from campaigns.devices import Device
from campaigns.model import Campaign
from customers.context import MomentEvidence
from customers.model import Signal
from customers.store import CONTEXT_SIGNALS, CONTEXT_WINDOW, customer_key
from geo import presence
from geo.errors import InvalidField
from geo.pings import MAX_AGE, MAX_FUTURE
from geo.predict import Visit
from geo.presence import DevicePresence, Fix
from geo.store import Connection

# Long enough for a device in a shop at `from` to have entered it before; a stay longer than
# this enters at the start of the warm-up, which is not counted either.
WARMUP = timedelta(hours=2)
DEVICES_PER_CHUNK = 256
YIELD_EVERY_S = 0.005


@dataclass
class Chunk:
    devices: list[Device]
    pings: PingArrays
    signals: dict[str, StoredSignals]
    visits: dict[str, list[StoredVisit]]
    pushes: dict[UUID, list[PastPush]]


class ReplayLedger:
    """What one replayed device's batches read and decide, in memory: `now` is the arrival of
    the batch being replayed."""

    def __init__(self, evidence: Evidence, tally: Tally) -> None:
        self.now: datetime | None = None
        self._evidence, self._tally = evidence, tally
        self._chunk: Chunk | None = None
        self._pushes: list[PastPush] = []
        # The live tables' unique keys, (campaign, moment) for this device: a moment decided
        # twice (a batch sent twice) queues and suppresses once.
        self._delivered: set[tuple[UUID, str]] = set()
        self._suppressed: set[tuple[UUID, str]] = set()
        self._held: set[tuple[UUID, str]] = set()

    def begin(self, chunk: Chunk, device: Device) -> None:
        self._chunk, self.now = chunk, None
        self._pushes = list(chunk.pushes.get(device.id, ()))
        self._delivered, self._suppressed, self._held = set(), set(), set()
        self._tally.device(device.id)

    async def recent_visits(self, customer_key: str) -> list[Visit]:
        assert self._chunk is not None and self.now is not None
        now = self.now
        known = [v.visit for v in self._chunk.visits.get(customer_key, ())
                 if v.recorded_at <= now]
        return known[-HISTORY_LENGTH:]

    async def signals(self, customer_id: str | None, device_id: UUID | None,
                      now: datetime) -> list[Signal]:
        assert self._chunk is not None
        key = customer_id if customer_id else customer_key(None, _known(device_id))
        held = self._chunk.signals.get(key)
        if held is None:
            return []
        lo, hi = bisect_right(held.at, now - CONTEXT_WINDOW), bisect_right(held.at, now)
        signals, received_at = held.signals, held.received_at
        arrived = [signals[i] for i in range(lo, hi) if received_at[i] <= now]
        return arrived[-CONTEXT_SIGNALS:]

    async def pushes(self, device_id: UUID, since: datetime) -> list[PastPush]:
        return [p for p in self._pushes if p.at >= since]

    async def evidence(self, campaigns: Sequence[Campaign], now: datetime) -> Evidence:
        return self._evidence

    async def record(self, decision: Decision, now: datetime,
                     evidence: MomentEvidence | None) -> PastPush | None:
        m = decision.moment
        key = moment_key(m)
        kept = [s for s in decision.suppressions if (s.campaign_id, key) not in self._suppressed]
        self._suppressed.update((s.campaign_id, key) for s in kept)
        chosen, push = decision.chosen, None
        if chosen is not None and decision.expires_at is not None \
                and (chosen.id, key) not in self._delivered:
            self._delivered.add((chosen.id, key))
            push = PastPush(campaign_id=chosen.id, fence_id=m.fence_id, store_id=m.store_id,
                            at=now)
            self._pushes.append(push)
        self._tally.count(m, None if push is None else push.campaign_id, kept)
        return push


    async def assign(self, decision: Decision, *, queued: bool, customer_key: str,
                     campaigns: Mapping[UUID, Campaign], stores_of: StoresOf,
                     now: datetime) -> list[PastPush]:
        """Nothing is written: a held-out winner only paces the device's next moments, as the
        live path's control rows do."""
        m, key = decision.moment, moment_key(decision.moment)
        held = []
        for campaign_id, arm in arms_of(decision, queued):
            if arm != "treated" and (campaign_id, key) not in self._held:
                self._held.add((campaign_id, key))
                held.append(PastPush(campaign_id=campaign_id, fence_id=m.fence_id,
                                     store_id=m.store_id, at=now, held_out=True))
        self._pushes.extend(held)
        return held


def _known(device_id: UUID | None) -> UUID:
    assert device_id is not None, "a customer without a customer id is its device"
    return device_id


@dataclass
class Replay:
    view: CatalogView
    predictor: Predictor
    intent_model: IntentModel
    value_model: ValueModel | None
    ledger: ReplayLedger
    start: datetime
    end: datetime
    context: bool = True
    # Step runs of quiet batches in one call (see `_replay`); off only to check that it changes
    # nothing.
    coalesce: bool = True
    devices: int = 0
    batches: int = 0
    pings: int = 0
    steps: int = 0  # calls of `presence.advance`

    async def run(self, conn: Connection) -> None:
        """Replay every device's batches of the period, a chunk of devices at a time, reading
        the next chunk meanwhile."""
        pending = asyncio.create_task(self._read(conn, None))
        try:
            with collector.paused():
                while (chunk := await pending) is not None:
                    pending = asyncio.create_task(self._read(conn, chunk.devices[-1].id))
                    await self._replay(chunk)
                    collector.collect_young()
        finally:
            if not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def _read(self, conn: Connection, after: UUID | None) -> Chunk | None:
        devices = await period.devices_after(conn, after, DEVICES_PER_CHUNK)
        if not devices:
            return None
        ids = [d.id for d in devices]
        warm = self.start - WARMUP
        pings = await period.pings_of(conn, ids, warm - MAX_AGE, self.end + MAX_FUTURE, warm,
                                      self.end)
        signals = await period.signals_of(conn, ids, warm - CONTEXT_WINDOW, self.end) \
            if len(pings) else {}
        visits = await period.visits_of(conn, devices, self.start, self.end) \
            if len(pings) and self.view.predicted_targets() else {}
        horizon = outbox.history_horizon(self.view.campaigns)
        pushes = await period.pushes_before(conn, ids, self.start - horizon, self.start) \
            if len(pings) else {}
        return Chunk(devices, pings, signals, visits, pushes)

    async def _replay(self, chunk: Chunk) -> None:
        p = chunk.pings
        if not len(p):
            return
        view = self.view
        accuracy = np.where(np.isnan(p.accuracy), DEFAULT_ACCURACY_M, p.accuracy)
        # Matching is per fix: the whole chunk at once finds what each batch's own call would.
        hits = fence_hits(view, p.lat, p.lng, accuracy)
        fixes = [Fix(at, lat, lng, acc) for at, lat, lng, acc in zip(
            period.datetimes(p.ts), p.lat.tolist(), p.lng.tolist(), accuracy.tolist(),
            strict=True)]
        changes = np.flatnonzero((p.device[1:] != p.device[:-1])
                                 | (p.received_at[1:] != p.received_at[:-1])) + 1
        starts = np.concatenate(([0], changes))
        ends = np.concatenate((changes, [len(p)]))
        fences = view.index.fences
        # The fixes that could enter a fence they hit (most fixes hit none).
        entering = np.zeros(len(p), dtype=bool)
        for i, hit in enumerate(hits):
            if hit and presence.may_enter(fixes[i], hit, fences):
                entering[i] = True
        batches = zip(
            starts.tolist(), ends.tolist(), period.datetimes(p.received_at[starts]),
            p.device[starts].tolist(), (np.add.reduceat(entering, starts) == 0).tolist(),
            p.ts[starts].tolist(), p.ts[ends - 1].tolist(), strict=True)
        # Without predictions, a batch that makes no presence event decides nothing.
        predicting = bool(view.predicted_targets())
        device: Device | None = None
        state = DevicePresence(device_id=chunk.devices[0].id)
        run: tuple[int, int, int] | None = None  # a run of quiet batches: (from, to, last ts)
        paused = time.perf_counter()
        for a, b, now, owner, quiet, first_ts, last_ts in batches:
            if device is None or device.id != chunk.devices[owner].id:
                device, run = chunk.devices[owner], None
                state = DevicePresence(device_id=device.id)
                self.ledger.begin(chunk, device)
                self.devices += 1
            # Quiet batches (no fix that could enter a fence, in none before: see
            # `presence.may_enter`) move presence only by its speed check's anchor and its
            # clock, and make no event: consecutive ones whose fixes follow each other in time
            # are stepped in one call, with the next batch when its fixes follow theirs too.
            # That steps the same fixes in the same order (`presence.advance` sorts by time)
            # and ends in the same state, and the events are the next batch's own.
            if self.coalesce and quiet and not predicting and not state.fences \
                    and (run is None or first_ts > run[2]):
                run = (a if run is None else run[0], b, last_ts)
                continue
            lo = a
            if run is not None and first_ts > run[2]:
                lo = run[0]
            elif run is not None:
                state, _ = presence.advance(state, fixes[run[0]:run[1]], hits[run[0]:run[1]],
                                            fences)
                self.steps += 1
            run = None
            after, events = presence.advance(state, fixes[lo:b], hits[lo:b], fences)
            self.steps += 1
            if now >= self.start and (events or predicting):
                self.ledger.now = now
                await answer_batch(self.ledger, view, self.predictor, self.intent_model,
                                   self.value_model, device, events, fixes[a:b], after, now,
                                   context=self.context)
            state = after
            if time.perf_counter() - paused > YIELD_EVERY_S:
                await asyncio.sleep(0)
                paused = time.perf_counter()
        self.batches += len(starts)
        self.pings += len(p)


async def backtest(conn: Connection, catalog: Catalog, predictor: Predictor,
                   intent_model: IntentModel, value_model: ValueModel | None,
                   body: BacktestIn, now: datetime, *, context: bool = True) -> Backtest:
    """What the proposed campaign would have done over the period (call on a connection
    outside any transaction: the backtest opens its own, read-only)."""
    proposal = proposed_campaign(body.campaign, now)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # Each chunk's queries are short and planned anew; compiling them would cost more.
        await conn.execute("SET LOCAL jit = off")
        try:
            await campaign_store.check_references(conn, body.campaign)
        except InvalidField as exc:
            raise InvalidField(f"campaign.{exc.field}", exc.message) from exc
        await catalog.refresh(conn)
        live = catalog.view()
        view = dataclasses.replace(live, campaigns=[*live.campaigns, proposal], stores_memo={})
        evidence = Evidence.of(await campaign_store.outcomes(
            conn, [c.id for c in live.campaigns], now))
        tally = Tally(proposal.id)
        replay = Replay(view, predictor, intent_model, value_model,
                        ReplayLedger(evidence, tally), body.from_, body.to, context)
        await replay.run(conn)
    return tally.result(body.from_, body.to,
                        Replayed(devices=replay.devices, batches=replay.batches,
                                 pings=replay.pings))
