"""`geo.cells.children` and `is_pentagon` (bulk, bit arithmetic) agree with h3's own per-cell
functions, pentagons included."""

from __future__ import annotations

import numpy as np
import pytest
from h3.api import numpy_int as h3n

from geo.cells import cell_centres, children, is_pentagon


def cells_at(resolution: int) -> np.ndarray:
    rng = np.random.default_rng(resolution)
    pentagons = [int(p) for p in h3n.get_pentagons(resolution)]
    hexagons = [int(h3n.latlng_to_cell(float(a), float(b), resolution))
                for a, b in zip(rng.uniform(-85, 85, 40), rng.uniform(-180, 180, 40), strict=True)]
    return np.array(pentagons + hexagons + pentagons[:2], dtype=np.uint64)


@pytest.mark.parametrize("resolution", [0, 5, 9, 10, 13])
def test_is_pentagon_agrees_with_h3(resolution: int) -> None:
    cells = cells_at(resolution)
    assert is_pentagon(cells).tolist() == [bool(h3n.is_pentagon(int(c))) for c in cells]


@pytest.mark.parametrize(("resolution", "down"), [(0, 1), (5, 0), (9, 2), (10, 1), (13, 2)])
def test_children_agree_with_h3_cell_by_cell(resolution: int, down: int) -> None:
    cells = cells_at(resolution)
    kids, counts = children(cells, resolution + down)
    expected = [h3n.cell_to_children(int(c), resolution + down) for c in cells]
    assert (counts.tolist(), kids.tolist()) == (
        [len(e) for e in expected], [int(k) for e in expected for k in e])


def test_no_cells_have_no_children() -> None:
    kids, counts = children(np.zeros(0, dtype=np.uint64), 11)
    assert (len(kids), len(counts)) == (0, 0)


def test_cell_centres_agree_with_h3() -> None:
    cells = cells_at(11)
    lat, lng = cell_centres(cells)
    expected = [h3n.cell_to_latlng(int(c)) for c in cells]
    assert list(zip(lat.tolist(), lng.tolist(), strict=True)) == expected
