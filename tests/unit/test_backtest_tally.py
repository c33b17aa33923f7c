"""The backtest's pure side: its request's rules, the proposal as a campaign, and the tally of
what the replay's ledger kept (counted once per moment, by hour of week in the store's zone and
by fence, with the stats' names for the reasons)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
import pytest

from campaigns.backtest import BacktestIn, Replayed, Tally, proposed_campaign
from campaigns.decide import Moment, Suppression, SuppressionReason
from campaigns.model import CampaignSpec

NS = uuid5(NAMESPACE_URL, "https://contexto.test/backtest")
PROPOSAL, OTHER = uuid5(NS, "proposal"), uuid5(NS, "other")
STORE, FENCE, FENCE_2 = uuid5(NS, "store"), uuid5(NS, "fence"), uuid5(NS, "fence-2")
# Sunday 22 November 2026, 23:30 UTC: Monday 00:30 in Paris, Sunday 18:30 in New York.
SUNDAY_NIGHT = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
START = datetime(2026, 11, 16, tzinfo=UTC)
REPLAYED = Replayed(devices=0, batches=0, pings=0)

SPEC: dict[str, Any] = {
    "name": "coffee",
    "trigger": {"kind": "enter"},
    "schedule": {"starts_at": "2026-11-01T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"},
    "offer": {"title": "Coffee", "body": "-20 %"},
    "offer_ttl_seconds": 900,
}


def device(name: str) -> UUID:
    return uuid5(NS, f"device/{name}")


def moment(who: str = "ann", *, at: datetime = SUNDAY_NIGHT, zone: str = "Europe/Paris",
           fence: UUID | None = FENCE) -> Moment:
    return Moment(device_id=device(who), kind="enter" if fence else "predicted_next",
                  fence_id=fence, store_id=STORE, fence_tags=(), occurred_at=at,
                  store_timezone=zone)


def held(reason: SuppressionReason, campaign: UUID = PROPOSAL) -> Suppression:
    return Suppression(campaign_id=campaign, reason=reason, detail="")


def body(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"campaign": SPEC, "from": "2026-11-16T00:00:00Z",
                           "to": "2026-11-23T00:00:00Z"}
    out.update(changes)
    return out


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"to": "2026-11-16T00:00:00Z"}, "to", "must be after `from`"),
    ({"to": "2026-11-15T00:00:00Z"}, "to", "must be after `from`"),
    ({"to": "2026-11-23T00:00:01Z"}, "to", "at most 7 days"),
    ({"from": "2026-11-16T00:00:00"}, "from", "needs a UTC offset"),
    ({"to": "2026-11-17T00:00:00"}, "to", "needs a UTC offset"),
    ({"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}, "from", "between"),
    ({"from": "9999-12-30T00:00:00Z", "to": "9999-12-31T00:00:00Z"}, "from", "between"),
])
def test_a_period_that_is_not_one_of_at_most_seven_days_is_refused_naming_the_field(
        changes: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(msgspec.ValidationError) as error:
        msgspec.json.decode(msgspec.json.encode(body(**changes)), type=BacktestIn)
    assert str(error.value).startswith(f"{field}: ")
    assert words in str(error.value)


def test_a_period_of_exactly_seven_days_is_accepted() -> None:
    decoded = msgspec.json.decode(msgspec.json.encode(body()), type=BacktestIn)
    assert decoded.to - decoded.from_ == timedelta(days=7)


def test_the_proposal_is_active_newest_and_named_by_its_body() -> None:
    spec = msgspec.convert(SPEC, CampaignSpec)
    now = datetime(2026, 11, 23, 14, tzinfo=UTC)
    proposal = proposed_campaign(spec, now)
    assert proposal.status == "active"
    assert proposal.activated_at == proposal.created_at == now
    assert proposed_campaign(spec, now + timedelta(days=1)).id == proposal.id
    other = msgspec.convert({**SPEC, "offer_ttl_seconds": 901}, CampaignSpec)
    assert proposed_campaign(other, now).id != proposal.id


def test_each_moment_counts_once_as_a_send_or_under_its_stats_name() -> None:
    tally = Tally(PROPOSAL)
    tally.count(moment("ann"), PROPOSAL, [held("outranked", OTHER)])
    tally.count(moment("ann", at=SUNDAY_NIGHT + timedelta(minutes=5)), OTHER,
                [held("outranked")])
    tally.count(moment("bob"), None, [held("expired"), held("cap", OTHER)])
    tally.count(moment("cid"), OTHER, [])  # the proposal did not match this moment
    result = tally.result(START, START + timedelta(days=7), REPLAYED)
    assert (result.moments, result.would_send) == (3, 1)
    assert {k: v for k, v in result.suppressed.items() if v} == \
        {"outranked": 1, "moment_expired": 1}
    assert set(result.suppressed) >= {"consent", "cap", "holdout", "moment_expired"}
    assert (result.devices, result.devices_reached) == (2, 1)


def test_hours_of_week_are_the_stores_local_hours_monday_first() -> None:
    tally = Tally(PROPOSAL)
    tally.count(moment("ann"), PROPOSAL, [])  # Monday 00:30 in Paris
    tally.count(moment("bob", zone="America/New_York"), None, [held("quiet_hours")])
    tally.count(moment("cid", zone="America/New_York"), PROPOSAL, [])  # Sunday 18:30
    result = tally.result(START, START + timedelta(days=7), REPLAYED)
    assert [(h.day, h.hour, h.moments, h.would_send) for h in result.by_hour] == \
        [(1, 0, 1, 1), (7, 18, 2, 1)]


def test_fences_are_listed_most_moments_first_with_their_own_reasons() -> None:
    tally = Tally(PROPOSAL)
    tally.count(moment("ann", fence=FENCE_2), PROPOSAL, [])
    for who, reason in (("bob", "cap"), ("cid", "cap"), ("dan", "consent")):
        tally.count(moment(who), None, [held(reason)])
    tally.count(moment("eve", fence=None), PROPOSAL, [])  # a predicted_next moment: no fence
    result = tally.result(START, START + timedelta(days=7), REPLAYED)
    rows = [(g.geofence_id, g.store_id, g.moments, g.would_send, g.suppressed)
            for g in result.by_geofence]
    assert rows[0] == (FENCE, STORE, 3, 0, {"cap": 2, "consent": 1})
    assert sorted(rows[1:], key=str) == sorted(
        [(FENCE_2, STORE, 1, 1, {}), (None, STORE, 1, 1, {})], key=str)
    assert result.devices == 5
