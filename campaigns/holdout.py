"""Holdouts: the devices kept from an offer so that its effect can be measured against them.

One rule: a device is held out only of a moment that would really have sent it the offer — the
campaign passed every decision rule *and* won arbitration — so a control moment is exactly a
treated moment that was not sent, and the two groups are comparable.

- **A campaign's holdout** (`holdout_percent`, 0..50): a stable hash of (device, campaign) puts
  the device in or out. When the winner of a moment holds the device out, the moment is that
  campaign's control and arbitration runs again without it, so the device may get another
  campaign's offer instead (the held-out campaign's control group is "what happens without this
  campaign", not "without any push"). Whether a campaign's turn comes never depends on its own
  holdout, only on the draws and on the holdouts of the campaigns that beat it, so the treated
  and control moments of every campaign are chosen alike.
- **The global control group** (the policy's `global_holdout_percent`, 0..20): a stable hash of
  the device alone (salted, so it is independent of every campaign's holdout) puts a device in
  it; such a device never gets a push. Checked last of all, after arbitration and the campaigns'
  holdouts: its would-be push — the campaign that would have gone out — is recorded as a global
  control, so the group is compared with moments that really produced a push, never with
  moments that consent, quiet hours, caps or a lost arbitration would have stopped anyway.

Pure: no clock, no database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from uuid import UUID

import msgspec

from campaigns.arbitrate import Arbitration, Evidence, Rank, arbitrate, by_rank
from campaigns.model import Campaign
from customers.context import MomentContext

_GLOBAL_SALT = b"contexto/global-holdout/v1"


def _position(data: bytes) -> float:
    """A stable position in [0, 100) from the bytes' hash."""
    digest = hashlib.sha256(data).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def in_holdout(device_id: UUID, campaign_id: UUID, percent: float) -> bool:
    """Whether the device is in the campaign's holdout group: the same answer every time."""
    # Positions are never negative: without a holdout, no device is in it (no hash needed).
    return percent > 0 and _position(device_id.bytes + campaign_id.bytes) < percent


def in_global_holdout(device_id: UUID, percent: float) -> bool:
    """Whether the device is in the global control group: the same answer every time, and
    independent of every campaign's holdout (another salt, no campaign in the hash)."""
    return percent > 0 and _position(_GLOBAL_SALT + device_id.bytes) < percent


class HeldOut(msgspec.Struct, kw_only=True, frozen=True):
    """Arbitration with the campaigns' holdouts: the campaign that goes out (None when every
    survivor held the device out), the arbitration that chose it, and the winners that held
    the device out, in the order they won."""

    chosen: Campaign | None
    arbitration: Arbitration
    held_out: tuple[Campaign, ...]


def arbitrate_with_holdouts(survivors: Sequence[Campaign], device_id: UUID,
                            context: MomentContext | None, evidence: Evidence, seed: int,
                            tie_rank: Rank, *, draw: bool = True) -> HeldOut:
    """Arbitrate; while the winner holds the device out, record it and arbitrate again
    among the rest (with the same seed, so the decision replays). `draw=False` is the
    benchmark's control only (`Settings.bench_skip_arbitration`): rank without a draw."""
    remaining = list(survivors)
    held: list[Campaign] = []
    while True:
        arbitration = arbitrate(remaining, context, evidence, seed, tie_rank) if draw \
            else by_rank(remaining, context, tie_rank)
        winner = arbitration.chosen
        if winner is None or not in_holdout(device_id, winner.id, winner.holdout_percent):
            return HeldOut(chosen=winner, arbitration=arbitration, held_out=tuple(held))
        held.append(winner)
        remaining = [c for c in remaining if c is not winner]
