"""Side-by-side fence matching: contexto's index, shapely 2's STRtree and PostGIS, same data.

One rule: the same fences and pings (`bench.match_data`) go to every engine, each pinned to one
core, and the bench counts the (ping, fence) pairs on which they disagree about "inside".

  (a) contexto: `FenceIndex.build`, then `FenceIndex.match(lat, lng, margins)` per batch of 500,
      with the margins presence asks for (`geo.presence.match_margins`), so it also returns every
      fence near each ping with its signed distance; its "inside" pairs are compared;
  (b) shapely: `STRtree(geometries)`, then `tree.query(points, predicate="intersects")` per batch;
  (c) PostGIS: `ST_Intersects` against a GiST index, one query per batch (`bench.match_postgis`).

Boundary tolerance: circles are 64-gons to shapely and PostGIS but true circles to contexto (a
chord is at most r·(1 - cos(π/64)) = 0.18 m inside a 150 m circle), so a pair on which they
differ while contexto puts the ping within TOLERANCE_M of the border is counted apart, as
"boundary"; every other difference is a disagreement, which must be 0.

Figures: build time (seconds; PostGIS: CREATE INDEX and ANALYZE, its load apart), memory (growth
of the process's RSS; shapely: its geometries, then the tree; PostGIS: the index's size) and
points per CPU second of the core doing the work (PostGIS: its backend's CPU seconds); each the
median of `--repeats` runs. contexto's compiled loops are compiled (or loaded from numba's cache)
before anything is timed. Then a fence edit, the way the catalog applies one: the changed fence
built alone into a delta over the unchanged base (`LayeredIndex`), timed on the wall clock until
a match sees the fence's new shape. A table on stdout, everything in `--json`.
Run: `python -m bench.match_compare [--quick] [--sizes 1000,10000,100000,1000000]` (the default
sizes; 1M fences take ~10 minutes of the ~20 and ~8 GB).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from bench.match_data import LAYOUTS, Layout, make_fences, make_pings
from bench.match_postgis import Postgis
from geo.index import FenceIndex, IndexedFence, LayeredIndex
from geo.presence import match_margins

BATCH = 500
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: RSS then includes freed heap the allocator keeps
    _LIBC = None
TOLERANCE_M = 0.5
I64 = NDArray[np.int64]


def rss_mb() -> float:
    """The process's resident memory, after handing freed heap back to the system (so that a
    build's freed temporaries do not count as memory it keeps)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _median_build(build: Any, budget_s: float, repeats: int) -> tuple[Any, float, int]:
    """Build `repeats` times (fewer if they take over `budget_s` in all): last result, median
    CPU seconds, runs."""
    times: list[float] = []
    out = None
    while len(times) < repeats and (not times or sum(times) < budget_s):
        out = None
        gc.collect()
        t0 = time.process_time()
        out = build()
        times.append(time.process_time() - t0)
    return out, statistics.median(times), len(times)


def _pairs(ping: I64, fence: I64, n_fences: int) -> I64:
    return np.unique(ping.astype(np.int64) * n_fences + fence.astype(np.int64))


def _compare(
    reference: I64, other: I64, near_key: I64, near_dist: NDArray[np.float64],
) -> tuple[int, int]:
    """(disagreements, boundary) between contexto's inside pairs and another engine's."""
    differ = np.setxor1d(reference, other, assume_unique=True)
    at = np.searchsorted(near_key, differ)
    at = np.minimum(at, max(len(near_key) - 1, 0))
    known = (near_key[at] == differ) if len(near_key) else np.zeros(len(differ), dtype=bool)
    boundary = known & (np.abs(near_dist[at] if len(near_key) else 0.0) <= TOLERANCE_M)
    return int((~boundary).sum()), int(boundary.sum())


def run_size(
    n: int, layout: Layout, args: argparse.Namespace, postgis: Postgis | None,
) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed + n)
    t0 = time.perf_counter()
    fences, where = make_fences(n, layout, rng)
    lat, lng, accuracy = make_pings(args.pings, layout, where, rng)
    margins = match_margins(accuracy)
    gen_s = time.perf_counter() - t0
    wkb = shapely.to_wkb(np.array([f.shape.area for f in fences], dtype=object))
    row: dict[str, Any] = {"layout": layout.name, "fences": n, "pings": len(lat),
                           "generate_s": round(gen_s, 2)}

    # (b) shapely: its geometries' own memory, then the tree's.
    gc.collect()
    before = rss_mb()
    geoms = shapely.from_wkb(wkb)
    geoms_mb = rss_mb() - before
    tree, build_s, runs = _median_build(lambda: shapely.STRtree(geoms), 10.0, args.repeats)
    tree_mb = rss_mb() - before - geoms_mb
    speeds = []
    for _ in range(args.repeats):
        found_p, found_f = [], []
        t0 = time.process_time()
        for lo in range(0, len(lat), BATCH):
            q = tree.query(shapely.points(lng[lo:lo + BATCH], lat[lo:lo + BATCH]),
                           predicate="intersects")
            found_p.append(q[0] + lo)
            found_f.append(q[1])
        speeds.append(len(lat) / (time.process_time() - t0))
    strtree_pairs = _pairs(np.concatenate(found_p), np.concatenate(found_f), n)
    row["strtree"] = {"build_s": build_s, "build_runs": runs, "points_per_s": statistics.median(
        speeds), "geometries_mb": geoms_mb, "tree_mb": tree_mb}
    del tree

    # (a) contexto
    FenceIndex.build(fences[:10]).match(lat[:10], lng[:10], margins[:10])  # compiled
    gc.collect()
    before = rss_mb()
    t0 = time.process_time()
    index = FenceIndex.build(fences)
    builds = [time.process_time() - t0]
    grown = rss_mb() - before
    while len(builds) < args.repeats and sum(builds) < args.build_budget_s:
        gc.collect()
        t0 = time.process_time()
        FenceIndex.build(fences)
        builds.append(time.process_time() - t0)
    build_s, runs = statistics.median(builds), len(builds)
    index.match(lat[:BATCH], lng[:BATCH], margins[:BATCH])  # warm-up
    speeds = []
    for _ in range(args.repeats):
        parts = []
        t0 = time.process_time()
        for lo in range(0, len(lat), BATCH):
            parts.append((lo, index.match(lat[lo:lo + BATCH], lng[lo:lo + BATCH],
                                          margins[lo:lo + BATCH])))
        speeds.append(len(lat) / (time.process_time() - t0))
    ping = np.concatenate([m.ping + lo for lo, m in parts])
    # The index keeps its fences in its own order: back to the fences' places in `fences`.
    place = {f.fence_id: k for k, f in enumerate(fences)}
    to_input = np.array([place[fid] for fid in parts[0][1].fence_ids], dtype=np.int64)
    fence = to_input[np.concatenate([m.fence for _, m in parts])]
    inside = np.concatenate([m.inside for _, m in parts])
    dist = np.concatenate([m.distance_m for _, m in parts])
    near_key = ping * n + fence
    order = np.argsort(near_key)
    near_key, near_dist = near_key[order], dist[order]
    contexto_pairs = np.unique(ping[inside] * n + fence[inside])
    bad, edge = _compare(contexto_pairs, strtree_pairs, near_key, near_dist)
    row["contexto"] = {
        "build_s": build_s, "build_runs": runs, "points_per_s": statistics.median(speeds),
        "rss_mb": grown, "index_mb": index.nbytes / 1e6, "entries": index.entries,
        "inside_pairs": len(contexto_pairs), "near_pairs": len(near_key),
        "vs_strtree": {"disagree": bad, "boundary": edge},
    }
    row["contexto"]["edit_s"] = _edit_seconds(index, fences, args.repeats)
    row["inside_per_ping"] = len(contexto_pairs) / len(lat)
    row["pings_in_no_fence"] = 1.0 - len(np.unique(contexto_pairs // n)) / len(lat)
    del index, parts

    # (c) PostGIS
    if postgis is not None:
        row["postgis"] = asyncio.run(_postgis(postgis, geoms, lat, lng, n, args, contexto_pairs,
                                              strtree_pairs, near_key, near_dist))
    return row


def _edit_seconds(index: FenceIndex, fences: list[IndexedFence], repeats: int) -> float:
    """Median wall seconds from a fence's new shape to a match that sees it, without a rebuild:
    fence k takes the shape of fence -1 - k (another place), as a one-fence delta."""
    times = []
    for k in range(max(1, repeats)):
        old, other = fences[k], fences[-1 - k]
        moved = IndexedFence(old.fence_id, old.store_id, other.shape, old.dwell_seconds,
                             old.tags, True)
        x, y = shapely.get_coordinates(shapely.point_on_surface(other.shape.area))[0]
        t0 = time.perf_counter()
        view = LayeredIndex(index, FenceIndex.build([moved]), [old.fence_id])
        found = view.match(np.array([y]), np.array([x]), 0.0)
        times.append(time.perf_counter() - t0)
        seen = {found.fence_ids[f] for f in found.fence[found.inside].tolist()}
        if old.fence_id not in seen:
            raise AssertionError("the edited fence is not matched at its new place")
    return statistics.median(times)


async def _postgis(
    pg: Postgis, geoms: NDArray[np.object_], lat: NDArray[np.float64], lng: NDArray[np.float64],
    n: int, args: argparse.Namespace, contexto_pairs: I64, strtree_pairs: I64, near_key: I64,
    near_dist: NDArray[np.float64],
) -> dict[str, Any]:
    if not await pg.open():
        return {"skipped": pg.reason}
    try:
        loaded = await pg.load(geoms)
        m = min(len(lat), args.postgis_pings)
        speeds = []
        for _ in range(args.repeats):
            c0, t0 = pg.cpu_s(), time.perf_counter()
            p, f = await pg.match(lat[:m], lng[:m], BATCH)
            cpu, wall = pg.cpu_s() - c0, time.perf_counter() - t0
            speeds.append((m / max(cpu, 1e-9), m / wall))
        pairs = _pairs(p, f, n)
        limit = m * n
        bad, edge = _compare(contexto_pairs[contexto_pairs < limit], pairs, near_key, near_dist)
        same_as_strtree = len(np.setxor1d(strtree_pairs[strtree_pairs < limit], pairs))
        return {
            "load_s": loaded.load_s, "build_s": loaded.build_s, "index_mb": loaded.index_mb,
            "table_mb": loaded.table_mb, "pings": m,
            "points_per_s": statistics.median(s[0] for s in speeds),
            "points_per_s_wall": statistics.median(s[1] for s in speeds),
            "vs_contexto": {"disagree": bad, "boundary": edge},
            "vs_strtree_differ": same_as_strtree,
        }
    finally:
        await pg.close()


def _print_row(r: dict[str, Any]) -> None:
    c, s, p = r["contexto"], r["strtree"], r.get("postgis", {})
    pg = (f"{p['build_s']:6.2f} s {p['index_mb']:6.1f} MB {p['points_per_s']:>9,.0f}/s "
          f"{p['vs_contexto']['disagree']}/{p['vs_contexto']['boundary']} "
          f"x{c['points_per_s'] / p['points_per_s']:5.1f}"
          if "points_per_s" in p else f"skipped: {p.get('skipped', 'off')}")
    print(f"{r['layout']:6} {r['fences']:>9,} | {r['inside_per_ping']:4.2f} "
          f"{r['pings_in_no_fence']:4.0%} | "
          f"{c['build_s']:7.3f} s {c['rss_mb']:+7.0f} MB {c['points_per_s']:>9,.0f}/s "
          f"{c['vs_strtree']['disagree']}/{c['vs_strtree']['boundary']} | "
          f"{s['build_s']:7.4f} s {s['geometries_mb']:+6.0f}{s['tree_mb']:+5.0f} MB "
          f"{s['points_per_s']:>9,.0f}/s | {pg} | "
          f"x{c['points_per_s'] / s['points_per_s']:4.2f} "
          f"b{c['build_s'] / max(s['build_s'], 1e-9):6.0f} "
          f"m{c['rss_mb'] / max(s['geometries_mb'], 1e-9):5.2f} | "
          f"{c['edit_s'] * 1e3:6.1f} ms", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.match_compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--layouts", default="dense,sparse")
    parser.add_argument("--pings", type=int, default=200_000)
    parser.add_argument("--postgis-pings", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--build-budget-s", type=float, default=40.0,
                        help="stop repeating contexto's build past this many seconds")
    parser.add_argument("--no-postgis", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="1k and 10k fences, 20k pings, one run each")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", type=Path, default=Path(".contexto/bench/match_compare.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.pings, args.postgis_pings, args.repeats = 20_000, 5_000, 1
        if args.sizes == parser.get_default("sizes"):
            args.sizes = "1000,10000"
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[0]})
    print("$ python -m bench.match_compare " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; bench pinned to "
          f"core {cores[0]}, PostGIS's backend to core {cores[-1]}; batches of {BATCH}; "
          f"medians of {args.repeats} runs; points/s = points per CPU second of the working core")
    print(f"disagree/boundary: pairs on which an engine's 'inside' differs from contexto's, apart "
          f"from those within {TOLERANCE_M} m of the border (boundary)")
    print("layout    fences | in/p none | contexto build, memory, points/s, disagree/boundary | "
          "STRtree build, geometries+tree, points/s | PostGIS build, index, points/s, d/b, "
          "contexto/PostGIS points/s | contexto/STRtree points/s, build, memory/geometries | "
          "fence edit visible")
    postgis = None if args.no_postgis else Postgis()
    rows = []
    for name in args.layouts.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(run_size(n, LAYOUTS[name], args, postgis))
            _print_row(rows[-1])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": "python -m bench.match_compare " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "machine": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "tolerance_m": TOLERANCE_M, "batch": BATCH, "rows": rows,
    }, indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
