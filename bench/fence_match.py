"""Benchmark of fence matching: pings per second per core at 1 k, 10 k and 100 k fences.

One rule: measure what the service does (build the index once, then `FenceIndex.match` on batches
of 500 pings at the presence margin) on one core, and print the command line with the figures.

Fences are store-sized (30-300 m across: half circles, half rotated rectangles) spread over a
40 × 40 km metropolitan area; 60 % of the pings fall within 150 m of a fence, the rest anywhere.
Run: `python -m bench.fence_match [--sizes 1000,10000,100000] [--batches N]`.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
import uuid

import numpy as np

from geo.fences import EARTH_RADIUS_M, Point, Polygon, validate
from geo.index import FenceIndex, IndexedFence
from geo.presence import match_margins

LAT0, LNG0 = 48.8566, 2.3522  # Paris
HALF_SIDE_M = 20_000.0
BATCH = 500
NEAR_SHARE = 0.6


def _degrees(east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = LAT0 + np.degrees(north / EARTH_RADIUS_M)
    lng = LNG0 + np.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))
    return lat, lng


def make_fences(n: int, rng: np.random.Generator) -> tuple[list[IndexedFence], np.ndarray]:
    """n fences and their centres (metres east/north of the city centre)."""
    centres = rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, (n, 2))
    fences = []
    for k, (e, nn) in enumerate(centres.tolist()):
        size = rng.uniform(30.0, 300.0)  # across
        if k % 2:
            lat, lng = _degrees(np.array([e]), np.array([nn]))
            shape = validate(Point(coordinates=[float(lng[0]), float(lat[0])]), size / 2)
        else:
            w, h = size / 2, size / 2 * rng.uniform(0.3, 1.0)
            a = rng.uniform(0, math.pi)
            cx = np.array([-w, w, w, -w, -w])
            cy = np.array([-h, -h, h, h, -h])
            xs = e + cx * math.cos(a) - cy * math.sin(a)
            ys = nn + cx * math.sin(a) + cy * math.cos(a)
            lat, lng = _degrees(xs, ys)
            ring = [[float(x), float(y)] for x, y in zip(lng, lat, strict=True)]
            shape = validate(Polygon(coordinates=[ring]), None)
        fences.append(IndexedFence(uuid.uuid4(), uuid.uuid4(), shape, 300, (), True))
    return fences, centres


def make_accuracies(n: int, rng: np.random.Generator) -> np.ndarray:
    """70 % GPS (5-20 m), 25 % degraded (20-65 m), 5 % network fixes (100-1000 m)."""
    u = rng.random(n)
    return np.where(u < 0.70, rng.uniform(5, 20, n),
                    np.where(u < 0.95, rng.uniform(20, 65, n), rng.uniform(100, 1000, n)))


def make_pings(n: int, centres: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    near = rng.random(n) < NEAR_SHARE
    pick = centres[rng.integers(0, len(centres), n)]
    r = 150.0 * np.sqrt(rng.random(n))
    a = rng.uniform(0, 2 * math.pi, n)
    east = np.where(near, pick[:, 0] + r * np.cos(a), rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, n))
    north = np.where(near, pick[:, 1] + r * np.sin(a), rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, n))
    return _degrees(east, north)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def run(n_fences: int, batches: int, rng: np.random.Generator) -> None:
    fences, centres = make_fences(n_fences, rng)
    # numba's compiled loops loaded (or compiled) before anything is timed
    FenceIndex.build(fences[:10]).match(np.array([0.0]), np.array([0.0]), 0.0)
    before = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    index = FenceIndex.build(fences)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    grown = rss_mb() - before
    lat, lng = make_pings(batches * BATCH, centres, rng)
    margin = match_margins(make_accuracies(batches * BATCH, rng))
    index.match(lat[:BATCH], lng[:BATCH], margin[:BATCH])  # warm-up
    matches = 0
    t0 = time.process_time()
    for b in range(batches):
        s = slice(b * BATCH, (b + 1) * BATCH)
        matches += len(index.match(lat[s], lng[s], margin[s]))
    cpu = time.process_time() - t0
    t0 = time.process_time()
    for b in range(min(batches, 50)):
        s = slice(b * BATCH, (b + 1) * BATCH)
        index.match(lat[s], lng[s], margin[s]).hits()
    hits_cpu = (time.process_time() - t0) / min(batches, 50) * batches
    pings = batches * BATCH
    print(
        f"{n_fences:>7,} fences | build {build_s:5.1f} s ({build_cpu:5.1f} s CPU) | "
        f"index {index.nbytes / 1e6:4.0f} MB "
        f"(process +{grown:5.0f} MB), {index.entries:>10,} cell entries | "
        f"match {pings / cpu:>9,.0f} pings/s/core ({matches / pings:.2f} fences/ping) | "
        f"with FenceHit lists {pings / hits_cpu:>9,.0f} pings/s/core"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fence_match", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--batches", type=int, default=400, help="batches of 500 pings per size")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print("$ python -m bench.fence_match " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"batches of {BATCH} pings, margins from accuracy (geo.presence.match_margins), "
          f"{NEAR_SHARE:.0%} of pings within 150 m of a fence; pings/s = pings / CPU seconds")
    rng = np.random.default_rng(args.seed)
    for n in (int(s) for s in args.sizes.split(",")):
        run(n, args.batches, rng)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")


if __name__ == "__main__":
    main()
