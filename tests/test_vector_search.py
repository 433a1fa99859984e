"""The HNSW graph of large embedding indexes: same answers as an exact scan, caught up, persisted, crash-safe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mediatable as mt
from mediatable.exec import index_search
from mediatable.exec.vector_search import ExactVectors, GraphFiles, GraphVectors


@mt.udf
def letter_counts(word: str) -> mt.Array(mt.Float, (26,)):
    return [float(word.lower().count(chr(97 + i))) for i in range(26)]


def clustered(n: int, dims: int = 32, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dims)).astype(np.float32)
    matrix = np.repeat(centers, n // 20, axis=0) + 0.3 * rng.standard_normal((n, dims)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_the_graph_finds_what_the_exact_scan_finds_and_scores_alike() -> None:
    matrix = clustered(2000)
    rowids = np.arange(1, 2001)
    exact, graph = ExactVectors(0, rowids, matrix), GraphVectors.build(0, rowids, matrix)
    recall = [len(set(exact.top(q, 10)) & set(graph.top(q, 10))) / 10 for q in matrix[::97]]
    assert np.mean(recall) >= 0.95
    some = [5, 17, 1999, 4000]
    assert np.allclose(graph.scores(some, matrix[3])[:3], exact.scores(some, matrix[3])[:3], atol=1e-6)
    assert graph.scores(some, matrix[3])[3] is None


def test_graph_files_are_written_whole_and_bad_ones_are_rebuilt(tmp_path: Path) -> None:
    files = GraphFiles(tmp_path / "catalog.db.vectors")
    matrix = clustered(400)
    graph = GraphVectors.build((0, 5), np.arange(400), matrix)
    first = files.save(3, "tok", graph)
    graph.apply((0, 6), [1, 2], np.array([1]), matrix[:1])
    second = files.save(3, "tok", graph)
    assert not first.exists() and second.name == "v3-tok.e0.s6.usearch"
    assert [p.name for p in files.folder.iterdir()] == [second.name]  # no temporary file left behind
    loaded = files.load(3, "tok", 0)
    assert loaded is not None and loaded.label == (0, 6) and len(loaded) == 399
    assert files.load(3, "other", 0) is None and files.load(3, "tok", 1) is None  # another index, another epoch
    second.write_bytes(b"half a file")  # as if something else had damaged it
    assert files.load(3, "tok", 0) is None and not second.exists()


def words(n: int, offset: int = 0) -> list[dict[str, object]]:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return [{"word": "".join(alphabet[(i * p) % 26] for p in (1, 3, 7, 11, 13)), "n": i} for i in range(offset, n)]


def top(t: mt.Table, query: str, k: int = 5) -> list[int]:
    return t.order_by(t.word.similarity(query), asc=False).limit(k).select(t.n).collect()["n"]


def test_a_large_index_uses_a_persisted_graph_kept_current(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_search, "HNSW_MIN_ROWS", 50)  # a graph from 50 vectors: the mechanism, quickly
    session = mt.init(home=clean_env, quiet=True)
    t = mt.create_table("words", {"word": mt.String, "n": mt.Int})
    t.insert(words(300), quiet=True)
    t.add_embedding_index("word", embedding=letter_counts, quiet=True)
    assert top(t, "zzzzq", 1) != [1000]
    files = index_search.graph_files(session)
    assert files is not None and len(list(files.folder.glob("v1-*.usearch"))) == 1  # built and saved

    t.insert([{"word": "zzzzq", "n": 1000}], quiet=True)
    t.update({"word": "qqqqq"}, where=t.n == 7)
    t.delete(where=t.n == 8)
    assert top(t, "zzzzq", 1) == [1000] and top(t, "qqqqq", 1) == [7]
    mine = [s for key, s in index_search._structures.items() if key[0] == session.settings.catalog_url]
    (graph,) = mine
    assert isinstance(graph, GraphVectors)
    assert len(graph) == 300 and graph.scores([9], np.ones(26) / np.sqrt(26)) == [None]  # row 9 (n=8) was deleted
    assert graph.scores([10], np.ones(26) / np.sqrt(26))[0] > 0
    assert 8 not in top(t, "anything", 400)

    script = f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        import mediatable as mt
        from mediatable.exec import index_search
        index_search.HNSW_MIN_ROWS = 50
        mt.init(home={str(clean_env)!r}, quiet=True)
        t = mt.get_table("words")
        t.insert([{{"word": "xxxxj", "n": 2000}}], quiet=True)
        found = t.order_by(t.word.similarity("xxxxj"), asc=False).limit(1).select(t.n).collect()["n"]
        assert found == [2000], found
        graphs = [s for s in index_search._structures.values() if isinstance(s, index_search.GraphVectors)]
        assert len(graphs) == 1 and graphs[0].unsaved > 0, "loaded from its file and caught up, not rebuilt"
        print(len(graphs[0]))
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["301"]
    assert top(t, "xxxxj", 1) == [2000]

    t.revert()  # a new epoch: the graph is built again, without the reverted row
    assert 2000 not in top(t, "xxxxj", 3)
    mine = [s for key, s in index_search._structures.items() if key[0] == session.settings.catalog_url]
    assert len(mine) == 1 and isinstance(mine[0], GraphVectors) and mine[0].label[0] == 1
