"""Presence on scripted traces: fixes go through a real one-fence index, events come out."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args

import msgspec
import numpy as np
import pytest

from geo.fences import EARTH_RADIUS_M, Point, validate
from geo.index import FenceIndex, IndexedFence
from geo.presence import (
    EXIT_AFTER,
    OUTSIDE,
    TRANSITIONS,
    DevicePresence,
    Dwelled,
    Entered,
    Exited,
    Fix,
    GeoEvent,
    PresenceState,
    Signal,
    advance,
    facts_of,
    match_margins,
    step,
)

T0 = datetime(2025, 3, 7, 17, 0, tzinfo=UTC)
LAT0, LNG0 = 45.7640, 4.8357  # a shop in Lyon
DEVICE = uuid.UUID("00000000-0000-0000-0000-00000000d001")
DWELL_S = 300


def fence(radius_m: float = 60.0, dwell_seconds: int = DWELL_S) -> IndexedFence:
    shape = validate(Point(coordinates=[LNG0, LAT0]), radius_m)
    return IndexedFence(uuid.uuid4(), uuid.uuid4(), shape, dwell_seconds, (), True)


def at(east_m: float, north_m: float = 0.0) -> tuple[float, float]:
    lat = LAT0 + math.degrees(north_m / EARTH_RADIUS_M)
    lng = LNG0 + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))
    return lat, lng


def fix(second: float, east_m: float, accuracy_m: float = 10.0, north_m: float = 0.0) -> Fix:
    lat, lng = at(east_m, north_m)
    return Fix(T0 + timedelta(seconds=second), lat, lng, accuracy_m)


@dataclass
class Trace:
    """Runs fixes through an index of the given fences and presence, batch by batch."""

    fences: Sequence[IndexedFence]

    def __post_init__(self) -> None:
        self.index = FenceIndex.build(self.fences)
        self.state = DevicePresence(DEVICE)

    def feed(self, fixes: Sequence[Fix]) -> list[GeoEvent]:
        lat = np.array([f.lat for f in fixes])
        lng = np.array([f.lng for f in fixes])
        margins = match_margins(np.array([f.accuracy_m for f in fixes]))
        hits = self.index.match(lat, lng, margins).hits()
        self.state, events = advance(self.state, fixes, hits, self.index.fences)
        return events


def kinds(events: Sequence[GeoEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def walk(start_s: float, from_m: float, to_m: float, speed: float, every_s: float,
         accuracy_m: float = 10.0) -> list[Fix]:
    steps = max(1, int(abs(to_m - from_m) / speed / every_s))
    return [
        fix(start_s + k * every_s, from_m + (to_m - from_m) * k / steps, accuracy_m)
        for k in range(steps + 1)
    ]


def stay(start_s: float, east_m: float, seconds: float, every_s: float) -> list[Fix]:
    return [fix(start_s + k * every_s, east_m) for k in range(1, int(seconds / every_s) + 1)]


def walk_in_and_out() -> list[Fix]:
    inbound = walk(0, 200, 0, 1.4, 10)
    end_in = inbound[-1].at
    t = (end_in - T0).total_seconds()
    parked = stay(t, 0, 600, 30)
    t += 600
    return inbound + parked + walk(t + 10, 0, 300, 1.4, 10)


def drive_by(offset_north_m: float) -> list[Fix]:
    # 15 m/s east to west, a fix every 5 s, passing `offset_north_m` from the centre.
    return [fix(k * 5.0, 600 - 75.0 * k, 10.0, offset_north_m) for k in range(25)]


def border_jitter(seed: int = 7) -> list[Fix]:
    rnd = random.Random(seed)
    return [
        fix(k * 5.0, 60.0 + rnd.uniform(-20, 20), 30.0, rnd.uniform(-20, 20))
        for k in range(120)
    ]


def teleport_blip() -> list[Fix]:
    far = [fix(k * 10.0, 5_000.0) for k in range(3)]
    blip = [fix(35.0, 0.0)]  # 5 km in 15 s: 333 m/s
    return far + blip + [fix(40.0 + k * 10.0, 5_000.0) for k in range(3)]


CASES: list[tuple[str, Callable[[], list[Fix]], float, list[str]]] = [
    ("walking in, staying 10 minutes and out enters, dwells, exits", walk_in_and_out, 60,
     ["Entered", "Dwelled", "Exited"]),
    ("driving through faster than the dwell enters and exits without dwelling",
     lambda: drive_by(0.0), 60, ["Entered", "Exited"]),
    ("driving by within the enter margin of the edge never enters",
     lambda: drive_by(58.0), 60, []),
    # Once in, a border that is never clearly crossed is a stay, hence the Dwelled.
    ("standing on the border with jitter enters at most once and never exits",
     border_jitter, 60, ["Entered", "Dwelled"]),
    ("a 500 m accuracy fix in the middle of a 60 m fence does not enter",
     lambda: [fix(0, 0.0, 500.0), fix(30, 0.0, 500.0)], 60, []),
    ("a one-fix teleport into the fence is ignored", teleport_blip, 60, []),
    ("two consistent fixes after a jump are a relocation, and enter",
     lambda: [fix(0, 5_000.0), fix(10, 0.0), fix(20, 5.0)], 60, ["Entered"]),
]


@pytest.mark.parametrize(("fixes", "radius", "expected"),
                         [pytest.param(c[1], c[2], c[3], id=c[0]) for c in CASES])
def test_trace_gives_expected_events(
    fixes: Callable[[], list[Fix]], radius: float, expected: list[str],
) -> None:
    trace = Trace([fence(radius)])
    assert kinds(trace.feed(fixes())) == expected


@pytest.mark.parametrize("seed", range(10))
def test_ten_minutes_of_border_jitter_never_enter_twice_nor_exit(seed: int) -> None:
    events = Trace([fence(60)]).feed(border_jitter(seed))
    assert kinds(events).count("Entered") <= 1
    assert "Exited" not in kinds(events)


def test_an_out_of_order_batch_gives_the_events_of_the_sorted_one() -> None:
    f = fence(60)
    ordered = walk_in_and_out()
    shuffled = ordered[:]
    random.Random(3).shuffle(shuffled)
    assert Trace([f]).feed(shuffled) == Trace([f]).feed(ordered)


def test_feeding_in_batches_gives_the_events_of_one_batch() -> None:
    f = fence(60)
    fixes = walk_in_and_out()
    split = Trace([f])
    events = [e for k in range(0, len(fixes), 7) for e in split.feed(fixes[k:k + 7])]
    assert events == Trace([f]).feed(fixes)


def test_a_fix_older_than_the_last_processed_is_ignored() -> None:
    trace = Trace([fence(60)])
    assert kinds(trace.feed([fix(0, 300.0), fix(100, 0.0)])) == ["Entered"]
    before = trace.state
    # Late fixes from far away would otherwise start the exit clock.
    assert trace.feed([fix(50, 300.0), fix(60, 300.0), fix(99, 300.0)]) == []
    assert trace.state == before


def test_events_carry_device_fence_and_times() -> None:
    f = fence(60)
    events = Trace([f]).feed(walk_in_and_out())
    entered, dwelled, exited = events
    assert isinstance(entered, Entered)
    assert isinstance(dwelled, Dwelled)
    assert isinstance(exited, Exited)
    assert {e.device_id for e in events} == {DEVICE}
    assert {e.fence_id for e in events} == {f.fence_id}
    assert dwelled.entered_at == exited.entered_at == entered.at
    assert dwelled.at - entered.at >= timedelta(seconds=DWELL_S)
    assert entered.at < dwelled.at < exited.at


def test_exit_waits_for_the_minimum_time_outside() -> None:
    trace = Trace([fence(60)])
    trace.feed([fix(0, 0.0)])
    assert trace.feed([fix(10, 400.0), fix(10 + EXIT_AFTER.total_seconds() - 1, 400.0)]) == []
    assert kinds(trace.feed([fix(10 + EXIT_AFTER.total_seconds(), 400.0)])) == ["Exited"]


def test_a_fix_back_inside_restarts_the_exit_clock() -> None:
    trace = Trace([fence(60)])
    events = trace.feed([fix(0, 0.0), fix(10, 400.0), fix(30, 0.0), fix(60, 400.0),
                         fix(80, 400.0)])
    assert kinds(events) == ["Entered"]


def test_a_restart_from_persisted_state_does_not_enter_again() -> None:
    trace = Trace([fence(60)])
    assert kinds(trace.feed([fix(0, 0.0)])) == ["Entered"]
    raw = msgspec.json.encode(trace.state)
    trace.state = msgspec.json.decode(raw, type=DevicePresence)
    assert trace.feed([fix(30, 0.0)]) == []


@pytest.mark.parametrize("codec", [msgspec.json, msgspec.msgpack], ids=["json", "msgpack"])
def test_device_state_round_trips(codec: object) -> None:
    trace = Trace([fence(60), fence(200)])
    trace.feed([fix(0, 0.0), fix(10, 5_000.0), fix(400, 0.0), fix(430, 200.0)])
    encode = codec.encode  # type: ignore[attr-defined]
    decode = codec.decode  # type: ignore[attr-defined]
    assert trace.state.fences and trace.state.anchor and trace.state.suspect is None
    assert decode(encode(trace.state), type=DevicePresence) == trace.state


def test_events_round_trip_as_a_tagged_union() -> None:
    events = Trace([fence(60)]).feed(walk_in_and_out())
    raw = msgspec.json.encode(events)
    assert [e["kind"] for e in msgspec.json.decode(raw)] == ["entered", "dwelled", "exited"]
    assert msgspec.json.decode(raw, type=list[GeoEvent]) == events


def test_a_fence_that_disappears_is_forgotten_without_an_event() -> None:
    f = fence(60)
    trace = Trace([f])
    trace.feed([fix(0, 0.0)])
    trace.index = FenceIndex.build([])
    assert trace.feed([fix(30, 0.0)]) == []
    assert trace.state.fences == {}


def test_step_with_an_implausible_fix_changes_nothing() -> None:
    f = fence(60)
    facts = facts_of(f)
    inside = PresenceState("inside", T0, None)
    new, events = step(inside, fix(1_000, 5_000.0), None, facts, device_id=DEVICE,
                       plausible=False)
    assert (new, events) == (inside, [])
    assert step(OUTSIDE, fix(0, 0.0), None, facts, device_id=DEVICE) == (OUTSIDE, [])


def test_the_transition_table_covers_every_reachable_phase_and_signal() -> None:
    never_outside: set[Signal] = {"dwell_due", "out_long"}
    for phase in ("outside", "inside", "dwelling"):
        for signal in get_args(Signal):
            reachable = not (phase == "outside" and signal in never_outside) and not (
                phase == "dwelling" and signal == "dwell_due"
            )
            assert ((phase, signal) in TRANSITIONS) == reachable, (phase, signal)
