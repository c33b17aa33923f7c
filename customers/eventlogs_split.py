"""A converted event log's time split into TRAIN and TEST, its sample, and the summary that
describes them (`customers/eventlogs.py` writes them).

One rule: pure functions of the events (in time order); TRAIN and TEST partition the kept users'
events at one instant, in whole seconds, and the sample holds whole histories, never part of
a user's events.

Split: users with at least `min_events` events are kept; the first `train_frac` of the time range
of their events (first .. last) goes to TRAIN, the rest (from the cut on) to TEST.

Sample: complete histories of up to `n_users` kept users with at least 2 events whose rows fit in
`max_bytes` of CSV (header included). Users are taken in an order fixed by a hash of their id:
those with anything but views (carts, purchases) first, up to half the places, then everyone else
(the rest of those included); a user whose rows do not fit what is left is passed over.
"""

from __future__ import annotations

import hashlib
import io
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from customers.intent_events import COLUMNS, TS_FORMAT, Event, write_events
from customers.model import PRODUCT_VIEW, PURCHASE

HEADER_BYTES = len(",".join(COLUMNS)) + 1


class EmptySplit(ValueError):
    """No user has enough events to split."""


@dataclass(frozen=True)
class TimeSplit:
    min_events: int
    train_frac: float
    first: datetime
    last: datetime
    cut: datetime  # TRAIN is before it, TEST from it on
    kept: list[Event]
    train: list[Event]
    test: list[Event]


def time_split(events: Sequence[Event], train_frac: float, min_events: int) -> TimeSplit:
    counts = Counter(e.user_id for e in events)
    kept = [e for e in events if counts[e.user_id] >= min_events]
    if not kept:
        raise EmptySplit(f"no user has {min_events} or more events ({len(events)} events, "
                         f"{len(counts)} users): nothing to split")
    first = min(e.signal.at for e in kept)
    last = max(e.signal.at for e in kept)
    # whole seconds, as the files write time: a row at the cut's second is in TEST
    cut = (first + (last - first) * train_frac).replace(microsecond=0)
    return TimeSplit(min_events, train_frac, first, last, cut, kept,
                     [e for e in kept if e.signal.at < cut],
                     [e for e in kept if e.signal.at >= cut])


def _hash(user: str) -> str:
    return hashlib.sha256(user.encode()).hexdigest()


def _csv_bytes(events: Sequence[Event]) -> int:
    """The bytes these rows take in the written CSV (without the header)."""
    out = io.StringIO()
    write_events(out, events)
    return len(out.getvalue().encode()) - HEADER_BYTES



def sample_users(events: Sequence[Event], n_users: int, max_bytes: int) -> list[Event]:
    """The chosen users' events, in the given order."""
    by_user: dict[str, list[Event]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    eligible = [u for u, es in by_user.items() if len(es) >= 2]
    rich = sorted((u for u in eligible
                   if any(e.signal.kind != PRODUCT_VIEW for e in by_user[u])), key=_hash)
    rich_set = set(rich)
    plain = [u for u in eligible if u not in rich_set]
    # rich users first, but only up to half: the other half stays a fair draw of everyone
    order = rich[: n_users // 2] + sorted(plain + rich[n_users // 2:], key=_hash)
    chosen: set[str] = set()
    size = HEADER_BYTES
    for user in order:
        if len(chosen) >= n_users:
            break
        add = _csv_bytes(by_user[user])
        if size + add <= max_bytes:
            chosen.add(user)
            size += add
    return [e for e in events if e.user_id in chosen]


def summarize(name: str, events: Sequence[Event]) -> str:
    users = Counter(e.user_id for e in events)
    kinds = Counter(e.signal.kind for e in events)
    buyers = {e.user_id for e in events if e.signal.kind == PURCHASE}
    with_amount = sum(1 for e in events
                      if e.signal.kind == PURCHASE and e.signal.amount is not None)
    with_category = sum(1 for e in events if e.signal.category)
    lines = [f"[{name}] events={len(events)} users={len(users)}"]
    if events:
        lines.append(f"  date range: {min(e.signal.at for e in events).strftime(TS_FORMAT)} .. "
                     f"{max(e.signal.at for e in events).strftime(TS_FORMAT)} UTC")
    lines.append("  events by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    if users:
        n_buys = kinds.get(PURCHASE, 0)
        lines.append(
            f"  purchases per user: mean={n_buys / len(users):.3f} over all users; "
            f"users with >=1 purchase={len(buyers)} ({100 * len(buyers) / len(users):.1f}%); "
            f"mean among purchasers={n_buys / len(buyers) if buyers else 0:.2f}")
        lines.append(f"  events per user: mean={len(events) / len(users):.2f}, "
                     f"median={statistics.median_high(users.values())}")
        lines.append(f"  rows with category={with_category} "
                     f"({100 * with_category / len(events):.1f}%); "
                     f"purchases with amount={with_amount}")
    return "\n".join(lines)


def report(source: str, notes: Mapping[str, int], events: Sequence[Event], split: TimeSplit,
           sample: Sequence[Event]) -> str:
    """SUMMARY.txt: what was read, what was left out, and each file's figures."""
    both = {e.user_id for e in split.train} & {e.user_id for e in split.test}
    lines = [source,
             "conversion notes: " + (", ".join(f"{k}={v}" for k, v in sorted(notes.items()))
                                     or "none"),
             summarize("events.csv (all)", events),
             f"split: users with >= {split.min_events} events; cutoff "
             f"{split.cut.strftime(TS_FORMAT)} UTC (first {split.train_frac:.0%} of "
             f"{split.first.strftime(TS_FORMAT)} .. {split.last.strftime(TS_FORMAT)})",
             summarize("train.csv", split.train),
             summarize("test.csv", split.test),
             f"users in both train and test: {len(both)}",
             summarize("sample.csv", sample)]
    return "\n".join(lines) + "\n"
