"""Worker processes share one base fence index: the first builds and saves it, the others map its
arrays read-only (`geo.index_share`), and answer exactly as a build of their own would."""

from __future__ import annotations

import math
import multiprocessing
import uuid
from pathlib import Path

import numpy as np

from geo.fences import EARTH_RADIUS_M, Point, Polygon, validate
from geo.index import FenceIndex, IndexedFence
from geo.index_share import shared_build

LAT0, LNG0 = 48.85, 2.35


def fence(k: int, east: float, radius: float = 40.0, polygon: bool = False) -> IndexedFence:
    lat = LAT0
    lng = LNG0 + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))
    if polygon:
        d = math.degrees(radius / EARTH_RADIUS_M)
        ring = [[lng - d, lat - d], [lng + d, lat - d], [lng + d, lat + d], [lng - d, lat + d],
                [lng - d, lat - d]]
        shape = validate(Polygon(coordinates=[ring]), None)
    else:
        shape = validate(Point(coordinates=[lng, lat]), radius)
    return IndexedFence(uuid.UUID(int=k + 1), uuid.UUID(int=1000), shape, 60, (), True)


FENCES = [fence(k, 70.0 * k, polygon=k % 2 == 1) for k in range(30)]


def pings() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    east = rng.uniform(-100, 70 * 30 + 100, 2_000)
    north = rng.uniform(-80, 80, 2_000)
    lat = LAT0 + np.degrees(north / EARTH_RADIUS_M)
    lng = LNG0 + np.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))
    return lat, lng


def answers(index: FenceIndex) -> list[tuple[int, uuid.UUID, bool, float]]:
    lat, lng = pings()
    m = index.match(lat, lng, np.where(np.arange(len(lat)) % 3 == 0, 100.0, 25.0))
    return sorted(zip(m.ping.tolist(), [m.fence_ids[f] for f in m.fence.tolist()],
                      m.inside.tolist(), m.distance_m.tolist(), strict=True))


def mapped(index: FenceIndex) -> bool:
    return isinstance(index._tables.refs, np.memmap)


def test_the_second_process_maps_what_the_first_built_and_answers_the_same(
    tmp_path: Path,
) -> None:
    first = shared_build(tmp_path, FENCES, 7)
    # Another worker: its own reading of the same fences, in another order.
    second = shared_build(tmp_path, list(reversed(FENCES)), 7)

    assert (mapped(first), mapped(second)) == (False, True)
    assert not second._tables.refs.flags.writeable
    assert answers(second) == answers(first) == answers(FenceIndex.build(FENCES))
    assert second.version == 7 and len(second) == len(FENCES)
    assert second.fence(FENCES[3].fence_id) is list(reversed(FENCES))[-4]


def test_other_fences_under_the_same_version_are_built_not_mapped(tmp_path: Path) -> None:
    shared_build(tmp_path, FENCES, 7)
    moved = [*FENCES[:-1], fence(29, 5_000.0)]  # same id, another place

    index = shared_build(tmp_path, moved, 7)

    assert not mapped(index)
    assert answers(index) == answers(FenceIndex.build(moved))


def test_an_index_saved_by_another_release_is_built_again_not_mapped(tmp_path: Path) -> None:
    shared_build(tmp_path, FENCES, 7)
    saved = tmp_path / "v7"
    (saved / "sources").write_text("an-older-index")  # its arrays may be laid out otherwise

    index = shared_build(tmp_path, FENCES, 7)

    assert not mapped(index)
    assert answers(index) == answers(FenceIndex.build(FENCES))
    assert mapped(shared_build(tmp_path, FENCES, 7))  # and saved again, for the next worker
    (saved / "sources").unlink()  # a release from before the marker
    assert not mapped(shared_build(tmp_path, FENCES, 7))


def test_a_new_version_replaces_the_saved_one(tmp_path: Path) -> None:
    shared_build(tmp_path, FENCES, 7)
    shared_build(tmp_path, FENCES[:20], 8)

    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["v8"]
    assert mapped(shared_build(tmp_path, FENCES[:20], 8))


def _worker(folder: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    index = shared_build(Path(folder), FENCES, 3)
    out.put((mapped(index), answers(index)))


def test_two_processes_at_once_build_it_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_worker, args=(str(tmp_path), out)) for _ in range(2)]
    for w in workers:
        w.start()
    results = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)

    assert sorted(m for m, _ in results) == [False, True]  # one built it, the other mapped it
    assert results[0][1] == results[1][1] == answers(FenceIndex.build(FENCES))
