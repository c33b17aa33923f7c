"""Python's cyclic garbage collector kept off the request path: what the service holds from its
start is moved out of its way once started, and it is held off while a long, allocation-heavy
computation runs in the service's process (the backtest's replay).

One rule: only the automatic collections pause, and only while at least one such computation
runs; the computation collects the young generation itself at points of its choosing (between
chunks), and the collector is back as it was when the last one ends.

Why the objects held from the start are frozen (`settled`): the modules the service imports
(numba's compiler above all), its catalog and its models are hundreds of thousands of objects
that live as long as the process. Every automatic full collection walked them all: under a
steady ping load a worker stopped for ~150 ms (up to 230 ms) every few seconds, which was most
of the requests' p99 latency. Frozen, they are no longer walked; objects made afterwards are
collected as before.

Why the collector is held off during a replay (`paused`): the service holds about half a million
long-lived objects (models, catalog, fence index), and a replay allocates millions of short-lived
ones. Each automatic full collection walks every tracked object, and a replay keeping a chunk of
devices alive triggers them again and again: in a replay of 1,000 devices over two days on 2
cores, they were half of its CPU. Reference
counting frees what the replay drops either way; only reference cycles wait for the next
collection.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_running = 0
_was_enabled = False


@contextmanager
def settled() -> Iterator[None]:
    """Collect once, then freeze every object alive (Python's permanent generation) until the
    block ends; then they are handed back to the collector (a process that starts and stops
    several services, as the tests do, leaks nothing)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def paused() -> Iterator[None]:
    """Hold off automatic collections until the last of the overlapping `paused()` blocks
    ends (then they resume if they were on when the first began)."""
    global _running, _was_enabled
    with _lock:
        if _running == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _was_enabled:
                gc.enable()


def collect_young() -> None:
    """Collect the youngest generation now (cheap: it holds only what was allocated since the
    last collection and is still alive), so that cycles made meanwhile, by the computation or
    by the requests the process serves alongside it, do not pile up."""
    gc.collect(0)
