"""`app.collector.settled`: what is alive when a service has started is frozen out of the garbage
collector's walks while it runs, what is made afterwards is still collected, and nothing stays
frozen once it stops."""

from __future__ import annotations

import gc
import weakref

from app import collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_what_lives_at_the_start_is_frozen_until_the_end() -> None:
    held = [_Node() for _ in range(1_000)]
    with collector.settled():
        walked = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
        assert gc.get_freeze_count() >= len(held)
        assert not any(id(n) in walked for n in held)
    assert gc.get_freeze_count() == 0


def test_a_cycle_made_while_settled_is_still_collected() -> None:
    with collector.settled():
        ref = _cycle()  # unreachable at once, kept alive only by its own cycle
        assert ref() is not None
        gc.collect()
        assert ref() is None


def test_a_cycle_left_over_from_before_is_collected_before_the_freeze() -> None:
    ref = _cycle()
    with collector.settled():
        assert ref() is None
