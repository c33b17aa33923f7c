"""The arbitration learner's evidence, replicated in each process: outcomes of earlier
deliveries per (campaign, learning bucket), read from the deliveries table.

One rule: the ping path never pays a query per moment. A batch with moments to decide asks for
the evidence; it is re-read (one aggregate query, in the batch's transaction) only when the active
campaigns changed, when this process recorded feedback or a purchase and the copy is at least
`MIN_REFRESH` old, or when it is `MAX_AGE` old (what other processes recorded); otherwise the
copy in memory serves.
Staleness costs a little learning speed, never a rule: arbitration only ranks survivors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from campaigns import store as campaign_store
from campaigns.arbitrate import Evidence
from campaigns.model import Campaign
from geo.store import Connection

MIN_REFRESH = timedelta(seconds=1)
MAX_AGE = timedelta(seconds=30)


@dataclass
class Learner:
    evidence: Evidence = field(default_factory=Evidence)
    loaded_at: datetime | None = None
    campaigns: frozenset[UUID] = frozenset()
    feedback_pending: bool = False

    def learned(self) -> None:
        """Feedback or a purchase was recorded in this process: the next batch may re-read the
        evidence."""
        self.feedback_pending = True

    async def current(self, conn: Connection, campaigns: Sequence[Campaign],
                      now: datetime) -> Evidence:
        ids = frozenset(c.id for c in campaigns)
        if self._due(ids, now):
            self.evidence = Evidence.of(await campaign_store.outcomes(conn, list(ids), now))
            self.loaded_at, self.campaigns, self.feedback_pending = now, ids, False
        return self.evidence

    def _due(self, ids: frozenset[UUID], now: datetime) -> bool:
        if self.loaded_at is None or ids != self.campaigns:
            return True
        age = now - self.loaded_at
        # A clock set back (tests, a corrected host clock) makes the copy due too.
        return age < timedelta(0) or age >= MAX_AGE or (
            self.feedback_pending and age >= MIN_REFRESH)
