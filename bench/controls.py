"""The end-to-end benchmark's control runs: what a feature adds to the ping path is the server CPU
per request of a full run against a run whose service skips it (`--skip-context`,
`--skip-arbitration`), on the same load.

One rule: a comparison only pairs runs of the same set-up and load (`RunKey`), and it says which
runs it paired and how old they are. Every run appends its figures to `RUNS_FILE`; a control run
prints itself against the latest full run, and the medians when there are several of each.

Also here, for the arbitration control: how the run's moments were decided (the deliveries' `why`),
so the reader sees that arbitration really drew.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

import asyncpg
import msgspec

RUNS_FILE = Path(".contexto") / "bench" / "e2e_runs.jsonl"
MEDIAN_OVER = 5  # the latest runs of each side that the medians take
# Above this much CPU used by other processes, a run's CPU per request drifts by several % (on
# the shared 2-core machine of the README, by up to ±15 % from run to run at 1.5 cores).
BUSY_CORES = 0.25
Mode = Literal["full", "skip-context", "skip-arbitration"]
FEATURE: dict[str, str] = {"skip-context": "the context engine",
                           "skip-arbitration": "arbitration (choosing among candidates)"}


class RunKey(msgspec.Struct, frozen=True):
    """What must be equal for two runs to be compared."""

    concurrency: int
    devices: int
    stores: int
    seconds: float
    warmup: float
    visit_share: float
    seed: int
    workers: int
    pool: int


class Measured(msgspec.Struct, frozen=True):
    pings_per_s: float
    requests_per_s: float
    server_ms_per_request: float  # 0 when the CPU was not sampled
    postgres_ms_per_request: float
    other_cores: float  # CPU that other processes on the machine used meanwhile


class RunFigures(msgspec.Struct, frozen=True):
    at: datetime
    mode: Mode
    key: RunKey
    command: str
    pings_per_s: float
    requests_per_s: float
    server_ms_per_request: float
    postgres_ms_per_request: float
    other_cores: float = 0.0


def record(run: RunFigures, path: Path = RUNS_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        out.write(msgspec.json.encode(run) + b"\n")


def earlier_runs(path: Path = RUNS_FILE) -> list[RunFigures]:
    if not path.exists():
        return []
    runs = []
    for line in path.read_bytes().splitlines():
        try:
            runs.append(msgspec.json.decode(line, type=RunFigures))
        except msgspec.DecodeError:
            continue  # a line from an older layout of the file
    return runs


def _change(with_: float, without: float) -> str:
    return f"{(with_ / without - 1) * 100:+.1f} %" if without > 0 else "n/a"


def compare(run: RunFigures, runs: Sequence[RunFigures]) -> list[str]:
    """Lines comparing a control run (included in `runs`) with the full runs of its key."""
    if run.mode == "full":
        return []
    full = [r for r in runs if r.mode == "full" and r.key == run.key]
    feature = FEATURE[run.mode]
    if not full:
        return [f"what {feature} adds: no full run with these settings yet (run it without "
                f"--{run.mode} and then this control again)"]
    latest = full[-1]
    age = (run.at - latest.at).total_seconds() / 60
    lines = [
        f"what {feature} adds, this control against the latest full run with these settings "
        f"({age:.0f} min earlier):",
        f"    server CPU per request {latest.server_ms_per_request:.2f} ms with, "
        f"{run.server_ms_per_request:.2f} ms without: "
        f"{_change(latest.server_ms_per_request, run.server_ms_per_request)}; postgres "
        f"{latest.postgres_ms_per_request:.2f} against {run.postgres_ms_per_request:.2f} ms; "
        f"{latest.pings_per_s:,.0f} pings/s with, {run.pings_per_s:,.0f} without",
    ]
    busy = max(latest.other_cores, run.other_cores)
    if busy > BUSY_CORES:
        lines.append(f"    warning: other processes used up to {busy:.2f} cores during these runs; "
                     "one pair is noise at that load: compare the medians of several")
    controls = [r for r in runs if r.mode == run.mode and r.key == run.key][-MEDIAN_OVER:]
    full = full[-MEDIAN_OVER:]
    if len(full) > 1 and len(controls) > 1:
        with_ms = statistics.median(r.server_ms_per_request for r in full)
        without_ms = statistics.median(r.server_ms_per_request for r in controls)
        lines.append(
            f"    medians of the latest {len(full)} full and {len(controls)} control runs: "
            f"server CPU per request {with_ms:.2f} ms with, {without_ms:.2f} ms without: "
            f"{_change(with_ms, without_ms)}; "
            f"{statistics.median(r.pings_per_s for r in full):,.0f} pings/s with, "
            f"{statistics.median(r.pings_per_s for r in controls):,.0f} without "
            f"(each run: {', '.join(f'{r.server_ms_per_request:.2f}' for r in full)} ms with; "
            f"{', '.join(f'{r.server_ms_per_request:.2f}' for r in controls)} ms without)")
    return lines


# ---------------------------------------------------------------------------------------------
# How the moments were decided
# ---------------------------------------------------------------------------------------------
# Per delivery: the rule its `why` names, and how many eligible campaigns shared the winner's
# priority (the contenders arbitration drew among; 1 when priority or a lone survivor decided).
DECIDED = """
SELECT rule, contenders, count(*) AS moments FROM (
    SELECT d.why -> 'chosen' ->> 'rule' AS rule,
           (SELECT count(*) FROM jsonb_array_elements(d.why -> 'candidates') AS c(doc)
            JOIN campaigns k ON k.id = (c.doc ->> 'campaign_id')::uuid
            WHERE (c.doc ->> 'eligible')::boolean AND k.priority = w.priority) AS contenders
    FROM deliveries d JOIN campaigns w ON w.id = d.campaign_id
    WHERE d.why IS NOT NULL
) AS t GROUP BY rule, contenders
"""


class Decided(msgspec.Struct, frozen=True):
    rules: dict[str, int]  # the `why.chosen.rule` of each pushed moment
    contenders: dict[int, int]  # eligible campaigns at the winner's priority -> moments

    @property
    def moments(self) -> int:
        return sum(self.rules.values())


async def decided(conn: asyncpg.Connection) -> Decided:
    rules: Counter[str] = Counter()
    contenders: Counter[int] = Counter()
    for row in await conn.fetch(DECIDED):
        rules[row["rule"]] += row["moments"]
        contenders[int(row["contenders"])] += row["moments"]
    return Decided(dict(rules), dict(sorted(contenders.items())))


def decided_line(d: Decided, *, skipped: bool) -> str:
    if not d.moments:
        return "arbitration: no pushed moment"
    order = ("expected value draw", "priority", "only candidate")
    rules = ", ".join(f'"{r}" {d.rules.get(r, 0):,}' for r in order)
    several = sum(n for k, n in d.contenders.items() if k >= 2)
    spread = ", ".join(f"{k}: {n:,}" for k, n in d.contenders.items())
    head = ("arbitration SKIPPED (CONTEXTO_BENCH_SKIP_ARBITRATION=1, the control run: ties at the "
            "top priority go by rank, recorded as \"priority\")" if skipped else "arbitration")
    return (f"{head}: {d.moments:,} pushed moments decided by {rules}; {several / d.moments:.0%} "
            f"had >= 2 contenders at the top priority (contenders: moments — {spread})")
