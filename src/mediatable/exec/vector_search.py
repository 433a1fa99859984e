"""Top-k search over one index's vectors: an exact matrix product in memory, or an HNSW graph when large.

:class:`ExactVectors` holds the vectors of the images a version reads and scans them all; it serves
small indexes, earlier versions and PostgreSQL without pgvector (where it is caught up in place from
what changed since its label, like the graph). :class:`GraphVectors` holds a usearch HNSW graph over
the current images (keyed by row id, inner product over unit vectors, stored as 8-bit integers so
that building a million-vector graph takes minutes, not hours): it only proposes candidates, which
the caller ranks by their exact scores from the stored float32 vectors, so results and scores agree
with an exact scan. It is caught up in place from what changed since its label
(:meth:`GraphVectors.apply`) and, on a catalog in a SQLite file, persisted beside the database
(:class:`GraphFiles`) so another process or the next session loads it instead of building it again.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HNSW_MIN_ROWS = 20_000  # below this an exact scan is as fast as a graph search, and needs no build
EXPANSION_SEARCH = 256  # candidates a graph search keeps (usearch and pgvector): recall@10 ~1.0, ~2 ms at 100k
# A graph's first rows go in on one thread: usearch's concurrent inserts into a small graph link it
# poorly (measured, 600 unit vectors of 16-d: 3-5% of top-10 searches missed a true neighbour among
# 36 candidates, even with expansion 2,000; none on one thread). Past this size threads cost no recall.
SERIAL_ADD_ROWS = 20_000


class ExactVectors:
    """The vectors of one index at one state (`label`), scanned exactly.

    Lifecycle: built from every vector of the images a version reads; for the current rows, each
    search whose label moved on applies what changed (:meth:`apply`). Not thread-safe: callers hold
    a lock per index.
    """

    exact = True

    def __init__(self, label: Any, rowids: np.ndarray, matrix: np.ndarray) -> None:
        self.label = label
        self.rowids = rowids
        self.matrix = matrix
        self._position: dict[int, int] | None = None

    def __len__(self) -> int:
        return len(self.rowids)

    @property
    def position(self) -> dict[int, int]:
        if self._position is None:
            self._position = {int(r): i for i, r in enumerate(self.rowids)}
        return self._position

    def apply(self, label: Any, removed: Sequence[int], rowids: np.ndarray, matrix: np.ndarray) -> None:
        """Take the state `label`: drop `removed` and (re)add `rowids` with their vectors."""
        keys = np.concatenate([np.asarray(removed, dtype=np.int64), rowids.astype(np.int64)])
        if not len(self.rowids) and len(rowids):  # empty until now: take the vectors' width
            self.rowids, self.matrix = np.zeros(0, np.int64), np.zeros((0, matrix.shape[1]), np.float32)
        keep = ~np.isin(self.rowids, keys)
        if len(keys):
            self.rowids = np.concatenate([self.rowids[keep], rowids.astype(np.int64)])
            self.matrix = np.concatenate([self.matrix[keep], matrix]) if len(rowids) else self.matrix[keep]
            self._position = None
        self.label = label

    def top(self, query: np.ndarray, k: int) -> list[int]:
        """Row ids of the `k` rows closest to `query`, best first."""
        if len(self.rowids) == 0 or k <= 0:
            return []
        scores = self.matrix @ query
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        return [int(self.rowids[i]) for i in best[np.argsort(-scores[best], kind="stable")]]

    def scores(self, rowids: Sequence[int], query: np.ndarray) -> list[float | None]:
        """Exact cosine scores of `rowids` (None for a row without a vector)."""
        out: list[float | None] = []
        for rowid in rowids:
            i = self.position.get(int(rowid)) if rowid is not None else None
            out.append(None if i is None else float(self.matrix[i] @ query))
        return out


def usearch_installed() -> bool:
    """Whether the optional HNSW library (in the `ai` extra) is importable."""
    return importlib.util.find_spec("usearch") is not None


class GraphVectors:
    """A usearch HNSW graph over the current images of one index, valid for `label`.

    Lifecycle: built from every current vector (:meth:`build`) or loaded from a file; then each
    search whose label moved on applies what changed (:meth:`apply`): rows whose image changed or
    went are removed, the new images added. Not thread-safe: callers hold a lock per index.
    """

    exact = False

    def __init__(self, label: Any, graph: Any) -> None:
        self.label = label
        self.graph = graph
        graph.expansion_search = EXPANSION_SEARCH  # not kept in the file: set for loaded graphs too
        self.unsaved = 0  # changes applied since the graph was last written to its file

    @classmethod
    def build(cls, label: Any, rowids: np.ndarray, matrix: np.ndarray) -> GraphVectors:
        usearch = importlib.import_module("usearch.index")
        graph = usearch.Index(
            ndim=matrix.shape[1] if matrix.size else 1,
            metric="ip",
            dtype="i8",  # candidates only (ranked by exact scores): 8-bit vectors build ~7x faster than float32
            connectivity=16,
            expansion_add=64,
        )
        built = cls(label, graph)
        built._add(rowids, matrix)
        built.unsaved = len(rowids)
        return built

    def __len__(self) -> int:
        return len(self.graph)

    def apply(self, label: Any, removed: Sequence[int], rowids: np.ndarray, matrix: np.ndarray) -> None:
        """Take the state `label`: drop `removed` and (re)add `rowids` with their vectors."""
        keys = np.unique(np.concatenate([np.asarray(removed, dtype=np.uint64), rowids.astype(np.uint64)]))
        if len(keys):
            present = keys[np.asarray(self.graph.contains(keys), dtype=bool).reshape(-1)]
            if len(present):
                self.graph.remove(present)
        self._add(rowids, matrix)
        self.label = label
        self.unsaved += len(keys)

    def _add(self, rowids: np.ndarray, matrix: np.ndarray) -> None:
        serial = max(0, min(len(rowids), SERIAL_ADD_ROWS - len(self.graph)))
        if serial:
            self.graph.add(rowids[:serial].astype(np.uint64), matrix[:serial], threads=1)
        if len(rowids) > serial:
            self.graph.add(rowids[serial:].astype(np.uint64), matrix[serial:])

    def top(self, query: np.ndarray, k: int) -> list[int]:
        """Row ids of (about) the `k` rows closest to `query`, best first by their 8-bit vectors."""
        if len(self.graph) == 0 or k <= 0:
            return []
        found = self.graph.search(query.astype(np.float32), min(k, len(self.graph)))
        return [int(key) for key in found.keys]


class GraphFiles:
    """Graphs persisted in one folder beside a SQLite catalog: `v<index>-<token>.e<epoch>.s<version>.usearch`.

    A file is written to a temporary name in the same folder, flushed to disk and renamed into
    place, so a crash leaves either the previous file or the new one, never half of one; older files
    of the index are removed after the rename. The label in the name says which state the file
    holds; a loaded graph is then caught up from the catalog like one kept in memory.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _files(self, index_id: int, token: str) -> list[tuple[int, int, Path]]:
        pattern = re.compile(rf"v{int(index_id)}-{re.escape(token)}\.e(\d+)\.s(\d+)\.usearch")
        out = []
        with contextlib.suppress(FileNotFoundError):
            for path in self.folder.iterdir():
                match = pattern.fullmatch(path.name)
                if match:
                    out.append((int(match[1]), int(match[2]), path))
        return sorted(out)

    def load(self, index_id: int, token: str, epoch: int) -> GraphVectors | None:
        """The newest graph of index `index_id` (`token`: that index, not an earlier one with its id) at `epoch`."""
        files = [f for f in self._files(index_id, token) if f[0] == epoch]
        if not files:
            return None
        _, version, path = files[-1]
        usearch = importlib.import_module("usearch.index")
        try:
            graph = usearch.Index.restore(str(path))
        except (ValueError, RuntimeError, OSError):
            graph = None
        if graph is None:  # unreadable (damaged, or from another usearch): the caller builds it again
            path.unlink(missing_ok=True)
            return None
        return GraphVectors((epoch, version), graph)

    def save(self, index_id: int, token: str, graph: GraphVectors) -> Path:
        """Write `graph` atomically under its label; returns the file."""
        epoch, version = graph.label
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"v{int(index_id)}-{token}.e{int(epoch)}.s{int(version)}.usearch"
        temporary = self.folder / f".tmp-{uuid.uuid4().hex}.usearch"
        try:
            graph.graph.save(str(temporary))
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_dir(self.folder)
        for _, _, path in self._files(index_id, token):
            if path != final:
                path.unlink(missing_ok=True)
        graph.unsaved = 0
        return final

    def remove_orphans(self) -> None:
        """Remove temporary files a crash left behind (older than a minute: not another process's write)."""
        with contextlib.suppress(FileNotFoundError):
            for path in self.folder.glob(".tmp-*.usearch"):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < time.time() - 60:
                        path.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
