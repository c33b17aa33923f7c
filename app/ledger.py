"""What one ping batch reads of the past and where its decisions go, beyond its own pings.

One rule: the batch's decisions (`app.ingest.answer_batch`) reach the world only through a
`Ledger`, so the same code decides for the live ping path and for the backtest. The live path's
`StoredLedger` reads the database and queues into the outbox, in the batch's transaction under
the device's lock; the backtest's ledger (`app/backtest.py`) reads what it loaded for the period
and only counts, in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from app.learning import Learner
from app.prediction import recent_visits
from campaigns import assignments, outbox
from campaigns.arbitrate import Evidence
from campaigns.decide import Decision, PastPush
from campaigns.model import Campaign
from campaigns.webhooks import events as webhook_events
from customers import store as customer_store
from customers.context import MomentEvidence
from customers.model import Signal
from geo.predict import Visit
from geo.store import Connection


class Ledger(Protocol):
    async def recent_visits(self, customer_key: str) -> list[Visit]:
        """The customer's latest visits, oldest first (the next-place model's history)."""

    async def signals(self, customer_id: str | None, device_id: UUID | None,
                      now: datetime) -> list[Signal]:
        """The customer's signals of the context window up to `now`, oldest first (all the
        devices naming `customer_id`, or the one device)."""

    async def pushes(self, device_id: UUID, since: datetime) -> list[PastPush]:
        """The device's pushes queued or sent since `since`, oldest first (caps count them)."""

    async def evidence(self, campaigns: Sequence[Campaign], now: datetime) -> Evidence:
        """What earlier deliveries' outcomes taught arbitration."""

    async def record(self, decision: Decision, now: datetime,
                     evidence: MomentEvidence | None) -> PastPush | None:
        """Keep one decision; the push it queued, if any."""

    async def assign(self, decision: Decision, *, queued: bool, customer_key: str,
                     campaigns: Mapping[UUID, Campaign], stores_of: assignments.StoresOf,
                     now: datetime) -> list[PastPush]:
        """Keep the decision's treated and control moments (measurement); the held-out
        would-be pushes it kept, which pace the device's next moments."""


class StoredLedger:
    """The live path's ledger: the database, in the batch's transaction. It keeps the batch's
    decisions too (`decided`), for the live feed once the batch is committed."""

    __slots__ = ("conn", "decided", "learner")

    def __init__(self, conn: Connection, learner: Learner) -> None:
        self.conn, self.learner = conn, learner
        self.decided: list[Decision] = []

    async def recent_visits(self, customer_key: str) -> list[Visit]:
        return await recent_visits(self.conn, customer_key)

    async def signals(self, customer_id: str | None, device_id: UUID | None,
                      now: datetime) -> list[Signal]:
        return await customer_store.customer_signals(self.conn, customer_id, device_id, now)

    async def pushes(self, device_id: UUID, since: datetime) -> list[PastPush]:
        return await outbox.history(self.conn, device_id, since)

    async def evidence(self, campaigns: Sequence[Campaign], now: datetime) -> Evidence:
        return await self.learner.current(self.conn, campaigns, now)

    async def record(self, decision: Decision, now: datetime,
                     evidence: MomentEvidence | None) -> PastPush | None:
        self.decided.append(decision)
        m = decision.moment
        if m.kind == "predicted_next":  # presence moments go on the stream with their events
            await webhook_events.record_prediction(self.conn, m.device_id, m.store_id,
                                                   m.occurred_at, m.probability,
                                                   outbox.moment_key(decision), now)
        return await outbox.record(self.conn, decision, now, evidence)

    async def assign(self, decision: Decision, *, queued: bool, customer_key: str,
                     campaigns: Mapping[UUID, Campaign], stores_of: assignments.StoresOf,
                     now: datetime) -> list[PastPush]:
        return await assignments.record(
            self.conn, decision, queued=queued, customer_key=customer_key,
            campaigns=campaigns, stores_of=stores_of, now=now)
