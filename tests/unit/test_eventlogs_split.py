"""The converted log's time split into TRAIN and TEST, and its sample of whole histories."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from customers.eventlogs_split import EmptySplit, sample_users, time_split
from customers.intent_events import Event
from customers.model import Signal

# --- the time split ------------------------------------------------------------------------------

T0 = datetime(2019, 10, 1, tzinfo=UTC)


def ev(user: str, seconds: float, kind: str = "product_view") -> Event:
    return Event(user, Signal(at=T0 + timedelta(seconds=seconds), kind=kind))


@dataclass(frozen=True)
class SplitCase:
    name: str
    events: list[Event]
    train_frac: float
    min_events: int
    train: list[Event]
    test: list[Event]
    cut_seconds: int


SPLIT_CASES = [
    SplitCase("a user with fewer than min_events events is in neither half",
              [ev("a", 0), ev("lone", 10), ev("a", 100)], 0.5, 2,
              [ev("a", 0)], [ev("a", 100)], 50),
    SplitCase("the cut is train_frac of the way from the first to the last kept event, and a "
              "row at the cut goes to test",
              [ev("a", 0), ev("b", 74), ev("a", 75), ev("b", 100)], 0.75, 2,
              [ev("a", 0), ev("b", 74)], [ev("a", 75), ev("b", 100)], 75),
    SplitCase("the cut is whole seconds, so a row in the cut's second goes to test",
              [ev("a", 0), ev("a", 1), ev("a", 3)], 0.5, 1,
              [ev("a", 0)], [ev("a", 1), ev("a", 3)], 1),
    SplitCase("the range is the kept users', not the whole log's",
              [ev("early", 0), ev("a", 100), ev("a", 200), ev("late", 1000)], 0.5, 2,
              [ev("a", 100)], [ev("a", 200)], 150),
    SplitCase("a train share of 1 leaves only the last instant to test",
              [ev("a", 0), ev("a", 50), ev("a", 100)], 1.0, 1,
              [ev("a", 0), ev("a", 50)], [ev("a", 100)], 100),
]


@pytest.mark.parametrize("case", SPLIT_CASES, ids=lambda c: c.name)
def test_time_split(case: SplitCase) -> None:
    split = time_split(case.events, case.train_frac, case.min_events)
    assert (split.train, split.test, split.cut) == (
        case.train, case.test, T0 + timedelta(seconds=case.cut_seconds))


def test_a_log_where_no_user_has_enough_events_cannot_be_split() -> None:
    with pytest.raises(EmptySplit, match="no user has 3 or more events"):
        time_split([ev("a", 0), ev("a", 1), ev("b", 2)], 0.75, 3)


# --- the sample ----------------------------------------------------------------------------------

HEADER_LINE = "user_id,ts,kind,category,product_id,amount\n"
VIEW_LINE = "u1,2019-10-01 00:00:00,product_view,,,\n"  # every row below is this long


def views(user: str, n: int) -> list[Event]:
    assert len(user) == 2  # the rows' byte length below depends on it
    return [ev(user, i) for i in range(n)]


@dataclass(frozen=True)
class SampleCase:
    name: str
    events: list[Event]
    n_users: int
    max_bytes: int
    users: int  # how many are sampled
    includes: frozenset[str] = frozenset()
    excludes: frozenset[str] = frozenset()


PLAIN = [e for i in range(16) for e in views(f"v{i:x}", 2)]
SAMPLE_CASES = [
    SampleCase("a user with a single event is never sampled",
               [*views("s1", 1), *views("t1", 2)], 10, 10**6, 1, frozenset({"t1"}),
               frozenset({"s1"})),
    SampleCase("a cart or purchase user takes one of the first half of the places",
               [*PLAIN, ev("rb", 5, "cart_add"), ev("rb", 6, "purchase")], 2, 10**6, 2,
               frozenset({"rb"})),
    SampleCase("no more than n users are taken", PLAIN, 5, 10**6, 5),
    SampleCase("a history that does not fit the bytes left is passed over, smaller ones still fit",
               [*views("bb", 10), *views("s1", 2), *views("s2", 2)], 10,
               len(HEADER_LINE) + 4 * len(VIEW_LINE), 2, frozenset({"s1", "s2"}),
               frozenset({"bb"})),
    SampleCase("the header counts: rows that fit exactly are taken",
               views("s1", 2), 10, len(HEADER_LINE) + 2 * len(VIEW_LINE), 1,
               frozenset({"s1"})),
    SampleCase("the header counts: one byte short, nobody is taken",
               views("s1", 2), 10, len(HEADER_LINE) + 2 * len(VIEW_LINE) - 1, 0,
               frozenset(), frozenset({"s1"})),
]


@pytest.mark.parametrize("case", SAMPLE_CASES, ids=lambda c: c.name)
def test_sample(case: SampleCase) -> None:
    chosen = {e.user_id for e in sample_users(case.events, case.n_users, case.max_bytes)}
    assert (len(chosen), case.includes <= chosen, chosen & case.excludes) == (
        case.users, True, set())


@pytest.mark.parametrize("case", SAMPLE_CASES, ids=lambda c: c.name)
def test_the_sample_holds_whole_histories_in_the_log_order(case: SampleCase) -> None:
    sample = sample_users(case.events, case.n_users, case.max_bytes)
    chosen = {e.user_id for e in sample}
    assert sample == [e for e in case.events if e.user_id in chosen]


def test_the_sample_is_the_same_whatever_the_order_of_the_log() -> None:
    shuffled = list(PLAIN)
    random.Random(7).shuffle(shuffled)
    assert ({e.user_id for e in sample_users(PLAIN, 6, 10**6)}
            == {e.user_id for e in sample_users(shuffled, 6, 10**6)})
