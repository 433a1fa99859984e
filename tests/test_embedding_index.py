"""Embedding indexes and similarity search, on SQLite and PostgreSQL: kept current, same results on both."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest

import mediagen
import mediatable as mt
from servers.http import FaultServer
from servers.postgres import PostgresServer

CAPTIONS = [
    "a red sports car on a mountain road",
    "a bowl of hot tomato soup",
    "a kitten asleep on a sofa",
    None,
    "a blue pickup truck on the highway",
    "fresh bread in a bakery",
]


@mt.udf
def letter_counts(word: str) -> mt.Array(mt.Float, (26,)):
    """A user's own (unbatched) embedding: how often each letter occurs."""
    return [float(word.lower().count(chr(97 + i))) for i in range(26)]


def caption_table() -> mt.Table:
    t = mt.create_table("captions", {"caption": mt.String, "n": mt.Int})
    t.insert([{"caption": c, "n": i} for i, c in enumerate(CAPTIONS)], quiet=True)
    return t


def top(t: mt.Table, query: str, k: int = 3) -> list[int]:
    return t.order_by(t.caption.similarity(query), asc=False).limit(k).select(t.n).collect()["n"]


def test_text_index_search_and_scores_stay_current_on_insert_update_delete(clean_env: Path, db_url: str) -> None:
    mt.init(home=clean_env, db_url=db_url, quiet=True)
    t = caption_table()
    t.add_embedding_index("caption", embedding=mt.functions.embed_text, quiet=True)

    assert top(t, "an automobile", 2) == [0, 4]
    scores = t.order_by(t.n).select(t.n, s=t.caption.similarity("a cat")).collect()["s"]
    assert scores[3] is None and int(np.nanargmax([np.nan if s is None else s for s in scores])) == 2
    assert all(-1.0 <= s <= 1.0 for s in scores if s is not None)

    t.insert([{"caption": "a yellow taxi cab", "n": 6}], quiet=True)
    t.update({"caption": "a motorbike in the rain"}, where=t.n == 1)
    t.delete(where=t.n == 0)
    assert sorted(top(t, "a vehicle", 3)) == [1, 4, 6]  # the new row and the updated one; the deleted one is gone
    assert t.where(t.n > 3).order_by(t.caption.similarity("a loaf"), asc=False).limit(1).select(t.n).collect()["n"] == [
        5
    ]
    assert len(t.order_by(t.caption.similarity("anything"), asc=False).limit(100).collect()) == 5  # None: no result

    with pytest.raises(mt.DependencyError, match="embedding index 'caption_idx' reads it"):
        t.drop_column("caption")
    t.drop_embedding_index("caption")
    with pytest.raises(mt.ExprError, match="no embedding index on column 'caption'"):
        top(t, "car")
    t.drop_column("caption")


def test_any_embedding_udf_by_name_and_if_exists(clean_env: Path) -> None:
    mt.init(home=clean_env, quiet=True)
    t = caption_table()
    t.add_embedding_index("caption", embedding=letter_counts, name="letters", quiet=True)
    with pytest.raises(mt.AlreadyExists):
        t.add_embedding_index("caption", embedding=letter_counts, name="letters", quiet=True)
    t.add_embedding_index("caption", embedding=mt.functions.embed_text, name="meaning", quiet=True)
    with pytest.raises(mt.ExprError, match="2 embedding indexes"):
        top(t, "soup")
    by_letters = t.order_by(t.caption.similarity("fresh bread in a bakery!", index="letters"), asc=False)
    assert by_letters.limit(1).select(t.n).collect()["n"] == [5]
    assert set(t.embedding_indexes) == {"letters", "meaning"}
    t.add_embedding_index("caption", embedding=mt.functions.embed_text, name="letters", if_exists="replace", quiet=True)
    assert t.embedding_indexes["letters"]["embedding"].endswith("embed_text")


def scene(sky: str, ground: str) -> bytes:
    img = PIL.Image.new("RGB", (160, 120), sky)
    PIL.ImageDraw.Draw(img).rectangle((0, 80, 160, 120), fill=ground)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_image_index_over_remote_images_searched_by_an_image(
    clean_env: Path, http_server: FaultServer, tmp_path: Path
) -> None:
    mt.init(home=clean_env, quiet=True)
    scenes = [("skyblue", "forestgreen"), ("orange", "brown"), ("black", "white"), ("skyblue", "darkgreen")]
    t = mt.create_table("scenes", {"image": mt.Image, "n": mt.Int})
    t.insert([{"image": http_server.put(f"s/{i}.jpg", scene(*c)), "n": i} for i, c in enumerate(scenes)], quiet=True)
    t.add_embedding_index("image", embedding=mt.functions.embed_image, quiet=True)
    query = tmp_path / "query.jpg"
    query.write_bytes(scene("lightskyblue", "green"))

    by_path = t.order_by(t.image.similarity(str(query)), asc=False).limit(2).select(t.n).collect()["n"]
    by_image = t.order_by(t.image.similarity(PIL.Image.open(query)), asc=False).limit(2).select(t.n).collect()["n"]
    assert sorted(by_path) == [0, 3] and by_image == by_path
    assert http_server.count() == 4  # the index read each image once, through the cache


def test_same_results_on_sqlite_and_postgresql(tmp_path: Path, postgres_server: PostgresServer) -> None:
    results = []
    for i, url in enumerate([f"sqlite:///{tmp_path / 'c.db'}", postgres_server.new_database()]):
        mt.init(home=tmp_path / f"home{i}", db_url=url, quiet=True)
        t = caption_table()
        t.add_embedding_index("caption", embedding=mt.functions.embed_text, quiet=True)
        rows = t.order_by(t.caption.similarity("food"), asc=False).limit(4)
        results.append(rows.select(t.n, s=t.caption.similarity("food")).collect())
    assert results[0]["n"] == results[1]["n"] and results[0]["n"][:2] in ([1, 5], [5, 1])
    assert np.allclose(results[0]["s"], results[1]["s"], atol=1e-6)


def test_rows_a_crash_left_unindexed_and_other_processes_writes_are_picked_up(clean_env: Path) -> None:
    mt.init(home=clean_env, quiet=True)
    t = caption_table()
    t.add_embedding_index("caption", embedding=letter_counts, quiet=True)
    assert len(t.order_by(t.caption.similarity("a car"), asc=False).limit(10).collect()) == 5

    def in_another_process(code: str) -> None:
        script = f"""
            import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
            import sqlalchemy as sa
            import mediatable as mt
            session = mt.init(home={str(clean_env)!r}, quiet=True)
            t = mt.get_table("captions")
        """
        run = [sys.executable, "-c", textwrap.dedent(script) + textwrap.dedent(code)]
        subprocess.run(run, check=True, timeout=120)

    # as if that process died after committing its rows, before their vectors were written
    in_another_process("""
        t.insert([{"caption": "a green tractor", "n": 10}, {"caption": "a red tractor", "n": 11}], quiet=True)
        with session.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM mt_v1 WHERE _rowid > 6"))
    """)
    assert set(top(t, "a tractor", 2)) == {10, 11}
    in_another_process("""t.insert([{"caption": "zzzz zzz", "n": 7}], quiet=True)""")
    assert top(t, "zz zz", 1) == [7]


def best(t: mt.Table, query: str) -> tuple[int, float]:
    found = t.order_by(t.word.similarity(query), asc=False).limit(1).select(t.n, s=t.word.similarity(query)).collect()
    return found["n"][0], round(found["s"][0], 6)


def test_search_follows_versions_reverts_and_snapshots(clean_env: Path, db_url: str) -> None:
    mt.init(home=clean_env, db_url=db_url, quiet=True)
    t = mt.create_table("words", {"word": mt.String, "n": mt.Int})
    t.insert([{"word": w, "n": i} for i, w in enumerate(["apple", "banana", "cherry"])], quiet=True)
    t.update({"word": "apricot"}, where=t.n == 0)  # 'apple' lives on in version 1 only
    t.add_embedding_index("word", embedding=letter_counts, quiet=True)
    assert best(t.get_version(1), "apple") == (0, 1.0)  # an earlier image, embedded when that version is searched
    assert best(t, "apple") != (0, 1.0) and best(t, "apricot") == (0, 1.0)

    t.insert([{"word": "bandana", "n": 3}], quiet=True)
    inserted = t.version
    assert best(t, "bandana") == (3, 1.0)
    t.revert()  # the row goes, and so must its vector
    assert best(t, "bandana")[0] == 1 and t.count() == 3
    t.insert([{"word": "zzz", "n": 4}], quiet=True)  # takes the reverted version's number (and row id) again
    assert t.version == inserted
    assert best(t, "bandana")[0] == 1 and best(t, "zzz") == (4, 1.0)  # no stale 'bandana' vector for the new row

    t.update({"n": 40}, where=t.n == 4)  # another column changed: the vector is reused, not recomputed
    assert best(t, "zzz") == (40, 1.0)
    snapshot = mt.create_snapshot("words_then", t)
    t.update({"word": "cherries"}, where=t.n == 2)
    assert best(t, "cherry")[1] < 1.0 and best(snapshot, "cherry") == (2, 1.0)
    assert best(t.get_version(inserted), "zzz") == (4, 1.0)
    mt.drop_table("words_then")
    t.revert()
    assert best(t, "cherry") == (2, 1.0)

    t.add_computed_column(loud=t.word.upper(), quiet=True)
    t.add_embedding_index("loud", embedding=letter_counts, quiet=True)
    with pytest.raises(mt.DependencyError, match="embedding index 'loud_idx' reads"):
        t.revert()
    with pytest.raises(mt.DependencyError, match="cannot replace column 'loud'"):
        t.add_computed_column(loud=t.word.lower(), if_exists="replace", quiet=True)
    t.rename_column("loud", "shout")  # the index follows the column
    assert t.embedding_indexes["loud_idx"]["column"] == "shout"
    top_loud = t.order_by(t.shout.similarity("APRICOT"), asc=False).limit(1).select(t.n).collect()["n"]
    assert top_loud == [0]


def test_a_views_index_on_a_base_column_follows_the_base(clean_env: Path, db_url: str, tmp_path: Path) -> None:
    mt.init(home=clean_env, db_url=db_url, quiet=True)
    docs = mt.create_table("docs", {"doc": mt.Document, "title": mt.String, "n": mt.Int})
    pdfs = [mediagen.make_pdf(tmp_path / f"{i}.pdf", [f"page one of {i}", f"page two of {i}"]) for i in range(4)]
    titles = ["banana", "zebra", "kiwi"]
    docs.insert([{"doc": str(pdfs[i]), "title": t, "n": i} for i, t in enumerate(titles)], quiet=True)
    pages = mt.create_view("pages", docs, iterator=mt.document_pages(docs.doc))
    pages.add_embedding_index("title", embedding=letter_counts, quiet=True)  # a column the view inherits

    def best(query: str, k: int = 2) -> list[tuple[int, int]]:
        found = pages.order_by(pages.title.similarity(query), asc=False).limit(k).select(pages.n, pages.pos).collect()
        return sorted(zip(found["n"], found["pos"], strict=True))

    assert best("bananas") == [(0, 0), (0, 1)]  # both pages of the banana document
    scored = pages.order_by(pages.n, pages.pos).select(pages.n, s=pages.title.similarity("zebra")).collect()
    assert scored["n"] == [0, 0, 1, 1, 2, 2] and scored["s"][2] == scored["s"][3] == pytest.approx(1.0)
    assert pages.where(pages.pos == 1).order_by(pages.title.similarity("kiwi"), asc=False).limit(1).select(
        pages.n, pages.pos
    ).collect()["n"] == [2]

    docs.update({"title": "bananas"}, where=docs.n == 2)  # the base changes: the view's index follows
    docs.insert([{"doc": str(pdfs[3]), "title": "cherry", "n": 3}], quiet=True)
    docs.delete(where=docs.n == 0)
    assert best("bananas") == [(2, 0), (2, 1)] and best("cherry") == [(3, 0), (3, 1)]
    assert 0 not in pages.order_by(pages.title.similarity("banana"), asc=False).limit(10).select(pages.n).collect()["n"]

    with pytest.raises(mt.DependencyError, match="embedding index 'title_idx' of view 'pages' reads it"):
        docs.drop_column("title")
    with pytest.raises(mt.ExprError, match="no embedding index on column 'title'"):
        docs.order_by(docs.title.similarity("kiwi"), asc=False).limit(1).collect()  # the base has no index of its own
    pages.drop_embedding_index("title")
    docs.drop_column("title")
