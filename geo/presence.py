"""Presence detection: a device's fixes and fence hits in, Entered / Dwelled / Exited events out.

One rule: every (device, fence) pair moves only along `TRANSITIONS` below, one fix at a time in
time order, and only on evidence that survives GPS error: enter when clearly inside, leave when
clearly outside for a while, never on a fix that implies an impossible speed.

Pure: no clock (times come from the fixes), no I/O. `DevicePresence` is what the service persists
per device (msgspec-serialisable) and hands back with the next batch, so a restart never re-fires
an Entered: the state says the device is already inside.

The rules, with their constants:
  - A fix *enters* a fence when it is inside by at least
    min(ENTER_ACCURACY_FACTOR · accuracy, ENTER_MARGIN_CAP_M, ENTER_RADIUS_FRACTION · r) where r is
    the fence's equivalent radius √(area/π), and its accuracy is at most r (a 500 m fix cannot say
    anything about a 60 m shop). One such fix is enough: micro-moments are worth most at the door,
    and the exit hysteresis below is what keeps jitter from re-firing.
    So a drive-by enters if one fix lands inside by the margin, and exits EXIT_AFTER later; it
    never dwells unless it stays `dwell_seconds`.
  - A fix is *out* evidence when it is outside by more than max(accuracy, EXIT_MIN_MARGIN_M);
    a fence is *exited* when every fix for EXIT_AFTER has been out evidence (any other fix
    restarts that clock).
  - A fix is *dwelled* when it is not out evidence and the device entered `dwell_seconds` ago.
  - A fix implying a speed above MAX_SPEED_M_S from the last accepted fix (accuracies granted)
    is a teleport: ignored for every fence. Two consecutive mutually plausible fixes accept a
    genuine relocation (after a flight, a tunnel, a phone left off).
  - A fix older than the last processed one is ignored (it is stored, but does not move state).
  - A fence the device is inside but that is no longer indexed (deleted, disabled) is forgotten
    without an event: nobody left it, it stopped existing.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, Literal
from uuid import UUID

import msgspec
import numpy as np
import shapely
from numpy.typing import NDArray

from geo.fences import haversine_m
from geo.index import DEFAULT_MAX_MARGIN_M, FenceHit, IndexedFence, haversine_array

# Android's accuracy is a 68 % radius: being inside by half of it is more likely in than not,
# yet still reachable for ordinary 10-30 m fixes in a 30-300 m store fence.
ENTER_ACCURACY_FACTOR: Final = 0.5
# Beyond 25 m of required depth, a good-enough fix in a big fence would be held back for nothing.
ENTER_MARGIN_CAP_M: Final = 25.0
# For small fences the margin may not exceed half the fence's radius, or nobody could enter.
ENTER_RADIUS_FRACTION: Final = 0.5
# Reported accuracies under 10 m are optimistic in streets between buildings.
EXIT_MIN_MARGIN_M: Final = 10.0
# 45 s outside: long enough to outlast a burst of multipath jitter or a walk past the back wall,
# short enough that an "exit" offer still reaches someone near the shop.
EXIT_AFTER: Final = timedelta(seconds=45)
# 70 m/s = 252 km/h: nothing a shopper does on the ground goes faster.
MAX_SPEED_M_S: Final = 70.0
# Fixes closer than this are compared as if 1 s apart, so equal timestamps are not a teleport.
MIN_SPEED_INTERVAL_S: Final = 1.0
# The widest margin a fix asks `FenceIndex.match` for (the index's default maximum).
MATCH_MARGIN_M: Final = DEFAULT_MAX_MARGIN_M

Phase = Literal["outside", "inside", "dwelling"]
Signal = Literal["in", "unsure", "dwell_due", "out", "out_long", "ignore"]
EventKind = Literal["entered", "dwelled", "exited"]

# The whole state machine. Signals come from `_signal` (one per fix and fence); a pair that is
# absent cannot happen (the outside phase has no dwell or exit clock).
TRANSITIONS: Final[Mapping[tuple[Phase, Signal], tuple[Phase, EventKind | None]]] = {
    ("outside", "in"): ("inside", "entered"),
    ("outside", "unsure"): ("outside", None),
    ("outside", "out"): ("outside", None),
    ("outside", "ignore"): ("outside", None),
    ("inside", "in"): ("inside", None),
    ("inside", "unsure"): ("inside", None),
    ("inside", "dwell_due"): ("dwelling", "dwelled"),
    ("inside", "out"): ("inside", None),  # the exit clock runs
    ("inside", "out_long"): ("outside", "exited"),
    ("inside", "ignore"): ("inside", None),
    ("dwelling", "in"): ("dwelling", None),
    ("dwelling", "unsure"): ("dwelling", None),
    ("dwelling", "out"): ("dwelling", None),  # the exit clock runs
    ("dwelling", "out_long"): ("outside", "exited"),
    ("dwelling", "ignore"): ("dwelling", None),
}


class Fix(msgspec.Struct, frozen=True):
    """One location fix of a device: `at` is timezone-aware, accuracy a 68 % radius in metres."""

    at: datetime
    lat: float
    lng: float
    accuracy_m: float


class Entered(msgspec.Struct, tag="entered", tag_field="kind", frozen=True):
    device_id: UUID
    fence_id: UUID
    at: datetime


class Dwelled(msgspec.Struct, tag="dwelled", tag_field="kind", frozen=True):
    device_id: UUID
    fence_id: UUID
    at: datetime
    entered_at: datetime


class Exited(msgspec.Struct, tag="exited", tag_field="kind", frozen=True):
    """`at` is the fix that confirmed the exit (EXIT_AFTER after the first clearly-out fix)."""

    device_id: UUID
    fence_id: UUID
    at: datetime
    entered_at: datetime


GeoEvent = Entered | Dwelled | Exited


class PresenceState(msgspec.Struct, frozen=True, omit_defaults=True):
    """One (device, fence) pair; `outside_since` is the running exit clock, if any."""

    phase: Phase = "outside"
    entered_at: datetime | None = None
    outside_since: datetime | None = None


OUTSIDE: Final = PresenceState()


class DevicePresence(msgspec.Struct, frozen=True, omit_defaults=True):
    """Everything presence remembers about one device between batches."""

    device_id: UUID
    last_at: datetime | None = None  # latest fix processed
    anchor: Fix | None = None  # latest plausible fix, the reference for the speed check
    suspect: Fix | None = None  # latest implausible fix, to accept a genuine relocation
    fences: dict[UUID, PresenceState] = msgspec.field(default_factory=dict)  # never "outside"


class FenceFacts(msgspec.Struct, frozen=True):
    """What presence needs to know about a fence."""

    fence_id: UUID
    dwell_seconds: int
    equivalent_radius_m: float  # √(area/π)
    center_lat: float
    center_lng: float
    reach_m: float  # no point of the fence is farther than this from the centre


# FenceFacts of the fences stepped lately, by the id() of their IndexedFence (which is immutable,
# and kept alive here with its facts so that its id cannot be reused meanwhile).
_FACTS: dict[int, tuple[IndexedFence, FenceFacts]] = {}
_FACTS_KEPT = 50_000


def facts_of(fence: IndexedFence) -> FenceFacts:
    known = _FACTS.get(id(fence))
    if known is not None and known[0] is fence:
        return known[1]
    if len(_FACTS) >= _FACTS_KEPT:
        _FACTS.clear()
    facts = _facts_of(fence)
    _FACTS[id(fence)] = (fence, facts)
    return facts


def _facts_of(fence: IndexedFence) -> FenceFacts:
    shape = fence.shape
    if shape.radius_m is not None:
        reach = shape.radius_m
    else:
        # The bounding box's farthest corner: an upper bound, which is all exits need.
        x0, y0, x1, y1 = shapely.bounds(shape.area).tolist()
        reach = max(
            haversine_m(shape.center_lat, shape.center_lng, lat, lng)
            for lat in (y0, y1) for lng in (x0, x1)
        )
    return FenceFacts(
        fence.fence_id, fence.dwell_seconds, math.sqrt(shape.area_m2 / math.pi),
        shape.center_lat, shape.center_lng, reach,
    )


def match_margin_m(accuracy_m: float) -> float:
    """The margin to match a fix with: a missing hit then means "farther out than this".

    It must cover the deepest enter margin (ENTER_MARGIN_CAP_M) and, so that a missing hit is
    exit evidence, the exit threshold max(accuracy, EXIT_MIN_MARGIN_M); fixes worse than
    MATCH_MARGIN_M fall back on the distance to the fence's centre. Asking no more than needed
    keeps the number of (ping, fence) pairs, hence the matching cost, low.
    """
    return min(max(accuracy_m, ENTER_MARGIN_CAP_M, EXIT_MIN_MARGIN_M), MATCH_MARGIN_M)


def match_margins(accuracy_m: NDArray[np.float64]) -> NDArray[np.float64]:
    """`match_margin_m` of each fix of a batch: pass it to `FenceIndex.match`."""
    floor = max(ENTER_MARGIN_CAP_M, EXIT_MIN_MARGIN_M)
    return np.clip(np.asarray(accuracy_m, dtype=np.float64), floor, MATCH_MARGIN_M)


def enter_margin_m(fix: Fix, fence: FenceFacts) -> float:
    """How deep inside `fence` a fix must be to enter it."""
    return min(
        ENTER_ACCURACY_FACTOR * fix.accuracy_m,
        ENTER_MARGIN_CAP_M,
        ENTER_RADIUS_FRACTION * fence.equivalent_radius_m,
    )


def is_plausible(previous: Fix, fix: Fix) -> bool:
    """Whether `fix` can follow `previous` without exceeding MAX_SPEED_M_S."""
    gap = haversine_m(previous.lat, previous.lng, fix.lat, fix.lng)
    gap -= previous.accuracy_m + fix.accuracy_m
    seconds = max(abs((fix.at - previous.at).total_seconds()), MIN_SPEED_INTERVAL_S)
    return gap <= MAX_SPEED_M_S * seconds


def _signal(
    state: PresenceState, fix: Fix, hit: FenceHit | None, fence: FenceFacts, plausible: bool,
) -> Signal:
    if not plausible:
        return "ignore"
    if hit is not None:
        outside_by = -math.inf if hit.inside else hit.distance_m
    else:
        # Not matched: farther out than the match margin, and at least this far from the centre.
        centre = haversine_m(fix.lat, fix.lng, fence.center_lat, fence.center_lng)
        outside_by = max(match_margin_m(fix.accuracy_m), centre - fence.reach_m)
    if outside_by > max(fix.accuracy_m, EXIT_MIN_MARGIN_M):
        since = state.outside_since
        return "out_long" if since is not None and fix.at - since >= EXIT_AFTER else "out"
    if state.phase == "inside" and state.entered_at is not None and (
        fix.at - state.entered_at >= timedelta(seconds=fence.dwell_seconds)
    ):
        return "dwell_due"
    if hit is not None and _enters(fix, hit, fence):
        return "in"
    return "unsure"


def _enters(fix: Fix, hit: FenceHit, fence: FenceFacts) -> bool:
    """The fix is clearly inside the fence: the "in" signal, when nothing else comes first."""
    return (hit.inside and hit.distance_m <= -enter_margin_m(fix, fence)
            and fix.accuracy_m <= fence.equivalent_radius_m)


def may_enter(fix: Fix, hits: Sequence[FenceHit], fences: Mapping[UUID, IndexedFence]) -> bool:
    """Whether the fix could enter any fence it hits. A device inside no fence stays inside
    none, with no event, over fixes that cannot: from "outside" only "in" moves (TRANSITIONS),
    so stepping them changes its anchor, its suspect and its clock only."""
    for hit in hits:
        indexed = fences.get(hit.fence_id)
        if indexed is not None and _enters(fix, hit, facts_of(indexed)):
            return True
    return False


def step(
    state: PresenceState,
    fix: Fix,
    hit: FenceHit | None,
    fence: FenceFacts,
    *,
    device_id: UUID,
    plausible: bool = True,
) -> tuple[PresenceState, list[GeoEvent]]:
    """Move one (device, fence) pair by one fix; `hit` is None when the index did not match it.

    The hit must come from `FenceIndex.match` with `match_margin_m(fix.accuracy_m)`.
    """
    signal = _signal(state, fix, hit, fence, plausible)
    phase, event = TRANSITIONS[(state.phase, signal)]
    if phase == "outside":
        new = OUTSIDE
    elif event == "entered":
        new = PresenceState(phase, fix.at, None)
    elif signal == "ignore":
        new = state
    elif signal in ("out", "out_long"):
        new = PresenceState(phase, state.entered_at, state.outside_since or fix.at)
    else:
        new = PresenceState(phase, state.entered_at, None)
    entered_at = state.entered_at or fix.at
    events: list[GeoEvent] = []
    if event == "entered":
        events.append(Entered(device_id, fence.fence_id, fix.at))
    elif event == "dwelled":
        events.append(Dwelled(device_id, fence.fence_id, fix.at, entered_at))
    elif event == "exited":
        events.append(Exited(device_id, fence.fence_id, fix.at, entered_at))
    return new, events


def advance(
    device: DevicePresence,
    fixes: Sequence[Fix],
    hits: Sequence[Sequence[FenceHit]],
    fences: Mapping[UUID, IndexedFence],
) -> tuple[DevicePresence, list[GeoEvent]]:
    """Apply a batch of fixes (any order; `hits[i]` are the index's hits for `fixes[i]`, matched
    with the margins `match_margins` gives for their accuracies).

    `fences` are the indexed fences (`FenceIndex.fences`); those the device is inside but
    which do not appear in a fix's hits are stepped with no hit, i.e. towards an exit.
    """
    if len(hits) != len(fixes):
        raise ValueError("hits must have one entry per fix")
    # A total order on content, so the same batch gives the same events whatever its order
    # (fixes strictly in time order are in it already: the usual case, checked for less).
    times = [f.at for f in fixes]
    if all(map(operator.lt, times, times[1:])):
        order = list(range(len(fixes)))
    else:
        order = sorted(
            range(len(fixes)),
            key=lambda i: (fixes[i].at, fixes[i].lat, fixes[i].lng, fixes[i].accuracy_m),
        )
    states = dict(device.fences)
    # Sorted by time, a fix older than the last processed one can only precede the newer ones.
    last_at = device.last_at
    fresh = order if last_at is None or (order and times[order[0]] >= last_at) \
        else [i for i in order if times[i] >= last_at]
    if not fresh:
        return device, []
    plausible_of = _plausibility(device, [fixes[i] for i in fresh])
    anchor, suspect = device.anchor, device.suspect
    events: list[GeoEvent] = []
    for i, plausible in zip(fresh, plausible_of, strict=True):
        fix = fixes[i]
        if plausible:
            anchor, suspect = fix, None
        else:
            suspect = fix
        if not states and not hits[i]:
            continue  # far from every fence and inside none: nothing to step
        by_fence = {h.fence_id: h for h in hits[i]}
        for fence_id in sorted(states.keys() | by_fence.keys()):
            indexed = fences.get(fence_id)
            if indexed is None:
                states.pop(fence_id, None)
                continue
            fence = facts_of(indexed)
            state, new_events = step(
                states.get(fence_id, OUTSIDE), fix, by_fence.get(fence_id), fence,
                device_id=device.device_id, plausible=plausible,
            )
            if state.phase == "outside":
                states.pop(fence_id, None)
            else:
                states[fence_id] = state
            events.extend(new_events)
    last_at = fixes[fresh[-1]].at
    return DevicePresence(device.device_id, last_at, anchor, suspect, states), events


# Under this many fixes (the anchor included), walking them is cheaper than numpy's set-up.
_WALK_UNDER = 24


def _plausibility(device: DevicePresence, fixes: Sequence[Fix]) -> list[bool]:
    """Whether each fix (in time order) passes the speed check, as the sequential rule says:
    against the latest plausible fix, or confirming the latest implausible one.

    The common case — every fix plausible after the one before — is checked for the whole batch
    at once; only a batch with a jump in it is walked fix by fix. A short batch is walked
    directly: below `_WALK_UNDER` fixes, numpy's set-up costs more than the walk.
    """
    chain = ([device.anchor] if device.anchor is not None else []) + list(fixes)
    if len(chain) > _WALK_UNDER:
        lat = np.fromiter((f.lat for f in chain), np.float64, len(chain))
        lng = np.fromiter((f.lng for f in chain), np.float64, len(chain))
        acc = np.fromiter((f.accuracy_m for f in chain), np.float64, len(chain))
        at = np.fromiter((f.at.timestamp() for f in chain), np.float64, len(chain))
        gap = haversine_array(lat[:-1], lng[:-1], lat[1:], lng[1:]) - acc[:-1] - acc[1:]
        seconds = np.maximum(np.abs(np.diff(at)), MIN_SPEED_INTERVAL_S)
        if bool(np.all(gap <= MAX_SPEED_M_S * seconds)):
            return [True] * len(fixes)
    anchor, suspect = device.anchor, device.suspect
    result = []
    for fix in fixes:
        # A second fix consistent with a rejected one means the device really moved.
        relocated = suspect is not None and is_plausible(suspect, fix)
        if anchor is None or is_plausible(anchor, fix) or relocated:
            anchor, suspect = fix, None
            result.append(True)
        else:
            suspect = fix
            result.append(False)
    return result
