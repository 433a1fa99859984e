"""pgvector on PostgreSQL: the HNSW index answers top-k, with the same rows and scores as SQLite."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

import mediatable as mt
from servers.pgvector import PgVectorServer


@mt.udf
def letter_counts(word: str) -> mt.Array(mt.Float, (26,)):
    return [float(word.lower().count(chr(97 + i))) for i in range(26)]


def words(n: int) -> list[dict[str, object]]:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return [
        {"word": "".join(alphabet[(i * p + p) % 26] for p in (1, 3, 7, 11, 13, i % 5 + 2)), "n": i} for i in range(n)
    ]


QUERIES = ["banana", "zebra", "quick", "mediatable"]


def answers(t: mt.Table) -> list[tuple[list[int], list[float]]]:
    out = []
    for query in QUERIES:
        found = t.order_by(t.word.similarity(query), asc=False).limit(10).select(t.n, s=t.word.similarity(query))
        rows = found.collect()
        out.append((rows["n"], rows["s"]))
    return out


def hnsw_scans(session: mt.Session) -> int:
    """Scans of the HNSW index so far (the server's statistics reach the view within a second or so)."""
    query = sa.text("SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelname = 'ix_mt_v1_hnsw'")
    deadline = time.monotonic() + 10
    while True:
        with session.engine.connect() as conn:
            scans = int(conn.execute(query).scalar_one())
        if scans >= len(QUERIES) or time.monotonic() > deadline:
            return scans
        time.sleep(0.2)


def test_pgvector_hnsw_gives_the_rows_and_scores_sqlite_gives(tmp_path: Path, pgvector_server: PgVectorServer) -> None:
    results = []
    for i, url in enumerate([f"sqlite:///{tmp_path / 'c.db'}", pgvector_server.new_database()]):
        session = mt.init(home=tmp_path / f"home{i}", db_url=url, quiet=True)
        t = mt.create_table("words", {"word": mt.String, "n": mt.Int})
        t.insert(words(400), quiet=True)
        t.add_embedding_index("word", embedding=letter_counts, quiet=True)
        first = answers(t)
        if i == 1:
            assert hnsw_scans(session) >= len(QUERIES)  # top-k went through the HNSW index, not a sort of every row
        t.insert([{"word": "bananas", "n": 1000}], quiet=True)
        t.update({"word": "zebras"}, where=t.n == 5)
        t.delete(where=t.n == 6)
        results.append((first, answers(t), answers(t.get_version(1))))
        if i == 1:
            with session.engine.connect() as conn:
                backend = conn.execute(sa.text("SELECT backend FROM mt_embedding_indexes")).scalar_one()
                hnsw = conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_mt_v1_hnsw'"))
                assert backend == "pgvector" and "hnsw" in hnsw.scalar_one()
                assert (
                    conn.execute(sa.text("SELECT count(*) FROM mt_v1 WHERE emb IS NULL AND vec IS NOT NULL")).scalar()
                    == 0
                )
    sqlite, postgres = results
    for mine, theirs in zip(sqlite, postgres, strict=True):
        for (n_a, s_a), (n_b, s_b) in zip(mine, theirs, strict=True):
            assert np.allclose(s_a, s_b, atol=1e-6)  # the same scores, best first
            assert set(n_a[:9]) == set(n_b[:9]) or s_a[8] == s_a[9]  # the same rows (up to a tie at the cut)
    latest = postgres[1]
    assert latest[0][0][0] == 1000 and latest[1][0][0] == 5  # the inserted and the updated row are found
    assert all(6 not in n for n, _ in latest)
