"""A layered index (base minus dead, plus delta) answers exactly like a fresh build of its live
fences: same matches, same distances to the last bit, same fences."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import msgspec
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo.fences import FenceShape
from geo.index import FenceIndex, FenceMatches, IndexedFence, LayeredIndex
from tests.unit.test_index import indexed, offset, shapes, square


@dataclass(frozen=True)
class Edit:
    """A base, then one fence moved, one deleted, one disabled and one added."""

    base: list[IndexedFence]
    moved: IndexedFence  # same id as base[0], new geometry
    deleted: IndexedFence  # base[1]
    disabled: IndexedFence  # base[2] with enabled=False
    added: IndexedFence
    lat: np.ndarray
    lng: np.ndarray
    margin: np.ndarray  # per ping
    cell_m: float

    @property
    def live(self) -> list[IndexedFence]:
        return [self.moved, *self.base[3:], self.added]


def points_near(fences: list[FenceShape], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(lat, lng): points scattered around each shape and right next to its border."""
    lats, lngs = [], []
    for shape in fences:
        x0, y0, x1, y1 = shape.area.bounds
        pad = (x1 - x0) * 0.3 + 0.002
        lngs.append(rng.uniform(x0 - pad, x1 + pad, 120))
        lats.append(rng.uniform(y0 - pad, y1 + pad, 120))
        along = shapely.line_interpolate_point(shape.area.boundary, rng.uniform(0, 1, 40),
                                               normalized=True)
        for lng, lat in shapely.get_coordinates(along).tolist():
            step = float(rng.choice([0.05, 1.0, 10.0, 40.0, 99.0]) * rng.choice([-1, 1]))
            angle = float(rng.uniform(0, 2 * np.pi))
            plng, plat = offset(lat, lng, step * np.cos(angle), step * np.sin(angle))
            lngs.append(np.array([plng]))
            lats.append(np.array([plat]))
    return np.concatenate(lats), np.concatenate(lngs)


@st.composite
def edits(draw: st.DrawFn) -> Edit:
    lat0 = draw(st.floats(-60.0, 60.0))
    lng0 = draw(st.floats(-170.0, 170.0))
    base = [indexed(s) for s in draw(st.lists(shapes(lat0, lng0), min_size=3, max_size=6))]
    moved = msgspec.structs.replace(base[0], shape=draw(shapes(lat0, lng0)))
    disabled = msgspec.structs.replace(base[2], enabled=False)
    added = indexed(draw(shapes(lat0, lng0)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Points around the old versions too: a dead fence must match nothing any more.
    lat, lng = points_near([f.shape for f in (*base, moved, added)], rng)
    margin = rng.choice([0.0, 5.0, 30.0, 100.0], len(lat))
    cell_m = draw(st.sampled_from([25.0, 40.0, 90.0]))
    return Edit(base, moved, base[1], disabled, added, lat, lng, margin, cell_m)


def by_pair(m: FenceMatches) -> dict[tuple[int, uuid.UUID], tuple[bool, float]]:
    return {
        (p, m.fence_ids[f]): (i, d)
        for p, f, i, d in zip(m.ping.tolist(), m.fence.tolist(), m.inside.tolist(),
                              m.distance_m.tolist(), strict=True)
    }


def layered(edit: Edit) -> LayeredIndex:
    base = FenceIndex.build(edit.base, cell_m=edit.cell_m)
    delta = FenceIndex.build([edit.moved, edit.disabled, edit.added], cell_m=edit.cell_m)
    return LayeredIndex(base, delta, {edit.deleted.fence_id, edit.disabled.fence_id}, version=9)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(edits())
def test_a_layered_index_matches_like_a_fresh_build_of_its_live_fences(edit: Edit) -> None:
    index = layered(edit)
    fresh = FenceIndex.build(edit.live, cell_m=edit.cell_m)
    got = index.match(edit.lat, edit.lng, edit.margin)
    want = fresh.match(edit.lat, edit.lng, edit.margin)
    assert by_pair(got) == by_pair(want)
    assert len(got) == len(want) and got.pings == want.pings
    assert bool(np.all(np.diff(got.ping) >= 0)), "matches stay grouped by ping"
    assert [sorted(h.fence_id for h in hits) for hits in got.hits()] == \
        [sorted(h.fence_id for h in hits) for hits in want.hits()]


@settings(deadline=None, max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(edits())
def test_a_layered_index_holds_the_same_fences_as_a_fresh_build(edit: Edit) -> None:
    index = layered(edit)
    fresh = FenceIndex.build(edit.live, cell_m=edit.cell_m)
    assert dict(index.fences) == dict(fresh.fences)
    assert len(index) == len(index.fences) == len(fresh)
    assert sorted(index.fences) == sorted(fresh.fences)
    assert index.fence(edit.moved.fence_id) == edit.moved
    for gone in (edit.deleted, edit.disabled):
        assert gone.fence_id not in index.fences
        with pytest.raises(KeyError):
            index.fence(gone.fence_id)
    assert (index.version, index.cell_m) == (9, edit.cell_m)


MOVED_500_M_EAST = offset(48.85, 2.35, 500.0, 0.0)


@pytest.mark.parametrize("name_it_dead", [True, False], ids=["named dead", "only in delta"])
def test_a_moved_fence_matches_only_where_it_is_now(name_it_dead: bool) -> None:
    old = indexed(square(48.85, 2.35, 50))
    new = msgspec.structs.replace(old, shape=square(MOVED_500_M_EAST[1], MOVED_500_M_EAST[0], 50))
    dead = {old.fence_id} if name_it_dead else set()
    index = LayeredIndex(FenceIndex.build([old]), FenceIndex.build([new]), dead)
    m = index.match(np.array([48.85, MOVED_500_M_EAST[1]]), np.array([2.35, MOVED_500_M_EAST[0]]))
    assert [[h.fence_id for h in hits] for hits in m.hits()] == [[], [old.fence_id]]
    assert index.fence(old.fence_id) is new and len(index) == 1


def test_a_layer_without_changes_answers_like_its_base() -> None:
    base = FenceIndex.build([indexed(square(48.85, 2.35, 80))], version=3)
    index = LayeredIndex(base)
    lat, lng = np.array([48.85, 48.8507, 48.86]), np.array([2.35, 2.35, 2.35])
    assert by_pair(index.match(lat, lng, 50.0)) == by_pair(base.match(lat, lng, 50.0))
    assert index.version == 3 and index.fences == base.fences and not index.dead


def test_a_delta_with_another_cell_size_is_refused() -> None:
    with pytest.raises(ValueError, match="cell_m"):
        LayeredIndex(FenceIndex.build([]), FenceIndex.build([], cell_m=25.0))


def test_a_margin_wider_than_the_layers_were_built_for_is_refused() -> None:
    fence = indexed(square(0.0, 0.0, 50))
    index = LayeredIndex(FenceIndex.build([], max_margin_m=30.0),
                         FenceIndex.build([fence], max_margin_m=30.0))
    with pytest.raises(ValueError, match="margin_m"):
        index.match(np.array([0.0]), np.array([0.0]), 31.0)
