"""Holdouts as the decision applies them: only a moment that would really have been sent is
held out (after every rule and arbitration), a held-out winner lets the next survivor through, the
global control group gets nothing, and a device's would-be pushes pace it like real ones."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from campaigns.decide import Decision, PastPush, decide
from campaigns.holdout import in_global_holdout, in_holdout
from campaigns.model import Campaign, Caps, PerDeviceCap, Policy
from tests.unit.test_decide import DEVICES, LOOSE, NOW, ago, campaign, cid, device, moment

ONE_A_WEEK = Caps(per_device=PerDeviceCap(count=1, period_seconds=7 * 86_400))
GLOBAL_10 = Policy(max_per_device_per_day=100, min_seconds_between_pushes=0, quiet_hours=None,
                   global_holdout_percent=10.0)


def pick(*, held_by: tuple[str, ...] = (), free_of: tuple[str, ...] = (),
         global_: bool | None = None) -> UUID:
    """A device in the 30 % holdout of each campaign of `held_by`, in none of `free_of`'s, and
    in (or out of) the 10 % global control group when `global_` says so."""
    return next(
        d for d in DEVICES
        if all(in_holdout(d, cid(n), 30.0) for n in held_by)
        and not any(in_holdout(d, cid(n), 30.0) for n in free_of)
        and (global_ is None or in_global_holdout(d, 10.0) is global_))


def run(device_id: UUID, campaigns: tuple[Campaign, ...], policy: Policy = LOOSE,
        history: tuple[PastPush, ...] = ()) -> tuple[str | None, dict[str, str], Decision]:
    decision = decide(moment(device_id=device_id), device(device_id=device_id), campaigns,
                      policy, history, NOW)
    names = {c.id: c.name for c in campaigns}
    chosen = None if decision.chosen is None else decision.chosen.name
    return chosen, {names[s.campaign_id]: s.reason for s in decision.suppressions}, decision


def ghost(of: str, seconds_ago: float) -> PastPush:
    """A would-be push of campaign `of`, held out from the device."""
    return PastPush(campaign_id=cid(of), fence_id=None, store_id=cid("store"),
                    at=ago(seconds_ago), held_out=True)


HIGH = campaign("high", priority=5, holdout=30.0)
LOW = campaign("low", priority=1, holdout=30.0)


def test_a_held_out_winner_is_a_control_and_the_next_survivor_goes_out() -> None:
    chosen, reasons, _ = run(pick(held_by=("high",), free_of=("low",), global_=False),
                             (HIGH, LOW))
    assert (chosen, reasons) == ("low", {"high": "holdout"})


def test_a_held_out_campaign_that_would_have_lost_is_outranked_not_a_control() -> None:
    chosen, reasons, _ = run(pick(held_by=("low",), free_of=("high",), global_=False),
                             (HIGH, LOW))
    assert (chosen, reasons) == ("high", {"low": "outranked"})


def test_a_device_held_out_by_every_survivor_gets_nothing_and_each_winner_is_a_control() -> None:
    chosen, reasons, _ = run(pick(held_by=("high", "low"), global_=False), (HIGH, LOW))
    assert (chosen, reasons) == (None, {"high": "holdout", "low": "holdout"})


def test_why_names_the_held_out_winner_with_its_reason() -> None:
    *_, decision = run(pick(held_by=("high",), free_of=("low",), global_=False), (HIGH, LOW))
    assert decision.why is not None
    reasons = {c.campaign_id: c.reason for c in decision.why.candidates}
    assert reasons == {cid("high"): "holdout", cid("low"): None}


def test_the_global_control_group_gets_nothing_and_records_the_would_be_winner() -> None:
    chosen, reasons, decision = run(pick(free_of=("high", "low"), global_=True), (HIGH, LOW),
                                    GLOBAL_10)
    assert (chosen, reasons, decision.global_holdout, decision.why) == (
        None, {"high": "global_holdout", "low": "outranked"}, True, None)


def test_a_global_control_device_that_nothing_would_reach_records_no_global_control() -> None:
    chosen, reasons, _ = run(pick(global_=True), (campaign(),),
                             Policy(max_per_device_per_day=0, global_holdout_percent=10.0))
    assert (chosen, reasons) == (None, {"base": "policy"})


def test_outside_the_global_control_group_the_winner_goes_out() -> None:
    chosen, reasons, decision = run(pick(free_of=("high", "low"), global_=False), (HIGH, LOW),
                                    GLOBAL_10)
    assert (chosen, reasons, decision.global_holdout) == ("high", {"low": "outranked"}, False)


def test_a_would_be_push_of_the_campaign_counts_toward_its_own_cap() -> None:
    held = pick(held_by=("base",), global_=False)
    chosen, reasons, _ = run(held, (campaign(caps=ONE_A_WEEK, holdout=30.0),),
                             history=(ghost("base", 3 * 86_400),))
    assert (chosen, reasons) == (None, {"base": "cap"})


def test_a_would_be_push_of_another_campaign_does_not_count_toward_the_policy() -> None:
    gap = Policy(max_per_device_per_day=100, min_seconds_between_pushes=3600, quiet_hours=None)
    chosen, reasons, _ = run(pick(free_of=("base",), global_=False), (campaign(),), gap,
                             history=(ghost("elsewhere", 60),))
    assert (chosen, reasons) == ("base", {})


def test_a_would_be_push_of_the_campaign_counts_toward_the_policy_for_it() -> None:
    gap = Policy(max_per_device_per_day=100, min_seconds_between_pushes=3600, quiet_hours=None)
    chosen, reasons, _ = run(pick(held_by=("base",), global_=False),
                             (campaign(holdout=30.0),), gap, history=(ghost("base", 60),))
    assert (chosen, reasons) == (None, {"base": "policy"})


def test_a_global_controls_would_be_push_paces_it_like_a_real_one() -> None:
    would_be = PastPush(campaign_id=cid("elsewhere"), fence_id=None, store_id=cid("store"),
                        at=NOW - timedelta(seconds=60))
    gap = Policy(max_per_device_per_day=100, min_seconds_between_pushes=3600, quiet_hours=None,
                 global_holdout_percent=10.0)
    chosen, reasons, _ = run(pick(global_=True), (campaign(),), gap, history=(would_be,))
    assert (chosen, reasons) == (None, {"base": "policy"})


def test_the_global_control_group_is_stable_and_about_the_requested_share() -> None:
    first = [in_global_holdout(d, 10.0) for d in DEVICES]
    again = [in_global_holdout(UUID(str(d)), 10.0) for d in DEVICES]
    assert first == again
    assert 0.08 <= sum(first) / len(DEVICES) <= 0.12


def test_the_global_control_group_is_independent_of_a_campaigns_holdout() -> None:
    both = sum(in_global_holdout(d, 20.0) and in_holdout(d, cid("base"), 20.0) for d in DEVICES)
    assert 0.02 <= both / len(DEVICES) <= 0.06  # independent groups overlap about 4 %


def test_a_zero_global_holdout_holds_out_nobody() -> None:
    assert not any(in_global_holdout(d, 0.0) for d in DEVICES)
