"""Top-k search over one index's vectors in memory: an exact matrix product, or an HNSW graph when large.

Either way the candidates' scores are computed exactly from the stored vectors, so results and
scores are the same on every backend.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

HNSW_MIN_ROWS = 20_000  # below this an exact scan is as fast as a graph search, and needs no build


class VectorCache:
    """One index's vectors at one state (`label`): an exact matrix, and an HNSW graph when large."""

    def __init__(self, label: Any, rowids: np.ndarray, matrix: np.ndarray, hnsw_min_rows: int = HNSW_MIN_ROWS) -> None:
        self.label = label
        self.rowids = rowids
        self.matrix = matrix
        self.position = {int(r): i for i, r in enumerate(rowids)}
        self.graph: Any = None
        if len(rowids) >= max(hnsw_min_rows, 1):
            self.graph = _hnsw(rowids, matrix)

    def top(self, query: np.ndarray, k: int) -> list[int]:
        """Row ids of (about) the `k` rows closest to `query`, best first."""
        if len(self.rowids) == 0 or k <= 0:
            return []
        if self.graph is not None:
            found = self.graph.search(query, min(k, len(self.rowids)))
            return [int(key) for key in found.keys]
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


def _hnsw(rowids: np.ndarray, matrix: np.ndarray) -> Any:
    if importlib.util.find_spec("usearch") is None:  # an optional accelerator (in the `ai` extra)
        return None
    usearch = importlib.import_module("usearch.index")
    graph = usearch.Index(ndim=matrix.shape[1], metric="ip", dtype="f32")
    graph.add(rowids.astype(np.uint64), matrix)
    return graph
