"""One read-only fence index for every worker process: built once, saved, memory-mapped by all.

One rule: a base index is a function of the fences' version (every fence as stored at that
version), so the first worker to need version V builds it and saves its arrays under
`<dir>/v<V>/`; every other worker maps those files read-only instead of building its own copy, and
the operating system keeps one copy of their pages for all of them. A file lock makes the others
wait for the first build rather than race it; a save is a rename of a finished folder, so nobody
maps half a file. Only the arrays are shared: each worker keeps its own `IndexedFence` objects
(from its own reading of the fences), put in the saved order, and checks they are the same fences
(ids, centres, areas and radii): when they are not, it builds its own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np

from geo.index_build import Tables
from geo.index_geometry import Geometry
from geo.index_kernels import SOURCES_DIGEST
from geo.index_query import FenceIndex
from geo.index_types import DEFAULT_CELL_M, DEFAULT_MAX_MARGIN_M, IndexedFence

_GEOMETRY = Geometry.__slots__  # every array of a Geometry
_TABLES = tuple(f.name for f in fields(Tables) if f.name != "geometry")


def shared_build(
    folder: Path, fences: Sequence[IndexedFence], version: int, *,
    cell_m: float = DEFAULT_CELL_M, max_margin_m: float = DEFAULT_MAX_MARGIN_M,
) -> FenceIndex:
    """The index of these fences at this version: mapped from `folder` when another process
    saved it, else built and saved there (older versions are removed)."""
    if not any(f.enabled for f in fences):
        return FenceIndex.build(fences, cell_m=cell_m, max_margin_m=max_margin_m,
                                version=version)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            saved = folder / f"v{version}"
            if saved.is_dir():
                index = load(saved, fences, version=version)
                if index is not None and (index.cell_m, index.max_margin_m) == (
                        cell_m, max_margin_m):
                    return index
            index = FenceIndex.build(fences, cell_m=cell_m, max_margin_m=max_margin_m,
                                     version=version)
            save(index, saved)
            for old in folder.glob("v*"):
                if old != saved and old.name[1:].isdigit():
                    shutil.rmtree(old, ignore_errors=True)  # mapped pages outlive the files
            return index
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save(index: FenceIndex, folder: Path) -> None:
    """The index's arrays as .npy files in `folder` (written aside, then renamed into place)."""
    aside = folder.with_name(f".{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    aside.mkdir(parents=True)
    tables = index._tables
    for name in _TABLES:
        np.save(aside / f"{name}.npy", getattr(tables, name))
    for name in _GEOMETRY:
        np.save(aside / f"geometry_{name}.npy", getattr(tables.geometry, name))
    ids = np.frombuffer(b"".join(f.bytes for f in index._ids), dtype=np.uint8)
    np.save(aside / "fence_ids.npy", ids.reshape(-1, 16))
    np.save(aside / "settings.npy", np.array([index.cell_m, index.max_margin_m]))
    np.save(aside / "facts.npy", _facts([index.fence(i) for i in index._ids]))
    (aside / "sources").write_text(SOURCES_DIGEST)
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(aside, folder)


def load(folder: Path, fences: Sequence[IndexedFence], *, version: int) -> FenceIndex | None:
    """The index saved in `folder`, its arrays memory-mapped read-only, over these fences; None
    when they are not the fences it was built from (their enabled ones, by id), or it was saved
    by other sources of the index (another release: its arrays may be laid out otherwise)."""
    sources = folder / "sources"
    if not sources.is_file() or sources.read_text() != SOURCES_DIGEST:
        return None
    ids = [uuid.UUID(bytes=row.tobytes()) for row in np.load(folder / "fence_ids.npy")]
    by_id = {f.fence_id: f for f in fences if f.enabled}
    if len(by_id) != len(ids) or any(i not in by_id for i in ids):
        return None
    ordered = [by_id[i] for i in ids]
    if not np.array_equal(_facts(ordered), np.load(folder / "facts.npy")):
        return None
    geometry = Geometry.__new__(Geometry)
    for name in _GEOMETRY:
        setattr(geometry, name, np.load(folder / f"geometry_{name}.npy", mmap_mode="r"))
    tables = Tables(geometry, **{name: np.load(folder / f"{name}.npy", mmap_mode="r")
                                 for name in _TABLES})
    cell_m, max_margin_m = np.load(folder / "settings.npy").tolist()
    return FenceIndex(ordered, tables, cell_m=cell_m, max_margin_m=max_margin_m, version=version)


def _facts(fences: Sequence[IndexedFence]) -> np.ndarray:
    """What tells two readings of a fence apart: its centre, area and radius."""
    return np.array([(f.shape.center_lat, f.shape.center_lng, f.shape.area_m2,
                      -1.0 if f.shape.radius_m is None else f.shape.radius_m) for f in fences],
                    dtype=np.float64).reshape(-1, 4)
