"""Writes: updates with expressions, primary keys and upserts, all-or-nothing writes across views,
validation at the door (media URLs, iterator arguments) — on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

import mediagen
import mediatable as mt
from servers.http import FaultServer


@pytest.fixture
def session(db_url: str, clean_env: Path) -> mt.Session:
    return mt.init(home=clean_env, db_url=db_url, quiet=True)


def ordered(t: mt.Table, *names: str) -> list[tuple]:
    return sorted(tuple(row[n] for n in names) for row in t.collect())


def test_update_with_expressions_recomputes_dependents(session: mt.Session) -> None:
    t = mt.create_table("pets", {"name": mt.String, "age": mt.Int, "weight": mt.Float})
    t.add_computed_column(age_months=t.age * 12, quiet=True)
    t.insert([{"name": "Rex", "age": 3, "weight": 10.0}, {"name": "Tom", "age": 5, "weight": 4.0}], quiet=True)
    status = t.update({"age": t.age + 1, t.weight: t.weight * 2}, where=t.name == "Rex", quiet=True)
    assert status.num_rows == 1 and status.num_computed_values == 3
    assert ordered(t, "name", "age", "weight", "age_months") == [("Rex", 4, 20.0, 48), ("Tom", 5, 4.0, 60)]
    t.update({"age": t.age_months, "weight": t.age}, quiet=True)  # every value read before any is written
    assert ordered(t, "name", "age", "weight", "age_months") == [("Rex", 48, 4.0, 576), ("Tom", 60, 5.0, 720)]
    with pytest.raises(mt.ComputeError, match=r"update of pets\.age failed at row 1: .*expected an int, got float"):
        t.update({"age": t.weight * 1.5}, quiet=True)
    assert ordered(t, "name", "age") == [("Rex", 48), ("Tom", 60)]
    with pytest.raises(mt.DataError, match="computed"):
        t.update({"age_months": 1})
    with pytest.raises(mt.DataError, match="unknown column"):
        t.update({"nope": 1})
    with pytest.raises(mt.DataError):
        t.update({"age": "old"})


def test_primary_keys_and_on_conflict(session: mt.Session) -> None:
    t = mt.create_table("people", {"id": mt.Int, "name": mt.String, "age": mt.Int}, primary_key="id")
    t.add_computed_column(next_age=t.age + 1, quiet=True)
    t.insert([{"id": 1, "name": "Ann", "age": 30}, {"id": 2, "name": "Bob", "age": 40}], quiet=True)
    with pytest.raises(mt.DataError, match=r"row 1: key 2 already exists in 'people'"):
        t.insert([{"id": 3, "name": "Cy"}, {"id": 2, "name": "Bo"}], quiet=True)
    with pytest.raises(mt.DataError, match="repeats row 0"):
        t.insert([{"id": 7, "name": "A"}, {"id": 7, "name": "B"}], quiet=True)
    with pytest.raises(mt.DataError, match="primary key column 'id'"):
        t.insert([{"name": "nobody"}], quiet=True)
    assert t.count() == 2  # nothing of the refused calls was inserted
    status = t.insert([{"id": 2, "name": "Bo"}, {"id": 3, "name": "Cy", "age": 20}], on_conflict="ignore", quiet=True)
    assert status.num_rows == 1
    assert ordered(t, "id", "name") == [(1, "Ann"), (2, "Bob"), (3, "Cy")]
    status = t.insert([{"id": 1, "age": 31}, {"id": 4, "name": "Di", "age": 50}], on_conflict="update", quiet=True)
    assert status.num_rows == 1 and status.num_updated == 1
    assert ordered(t, "id", "name", "age", "next_age") == [
        (1, "Ann", 31, 32),
        (2, "Bob", 40, 41),
        (3, "Cy", 20, 21),
        (4, "Di", 50, 51),
    ]
    t.batch_update([{"id": 2, "age": 41}, {"id": 3, "name": "Cyd"}], quiet=True)
    assert ordered(t, "id", "name", "age", "next_age")[1:3] == [(2, "Bob", 41, 42), (3, "Cyd", 20, 21)]
    with pytest.raises(mt.DataError, match=r"no row of 'people' has key 9"):
        t.batch_update([{"id": 9, "age": 1}], quiet=True)
    with pytest.raises(mt.InvalidArgument, match="primary key"):
        mt.create_table("plain", {"x": mt.Int}).batch_update([{"x": 1}])
    with pytest.raises(mt.InvalidArgument):
        mt.create_table("bad", {"x": mt.Int}, primary_key=["y"])


def test_composite_keys(session: mt.Session) -> None:
    t = mt.create_table(
        "scores", {"game": mt.String, "player": mt.Int, "score": mt.Int}, primary_key=["game", "player"]
    )
    t.insert([{"game": "go", "player": 1, "score": 5}, {"game": "go", "player": 2, "score": 6}], quiet=True)
    t.insert([{"game": "chess", "player": 1, "score": 7}], quiet=True)
    with pytest.raises(mt.DataError, match=r"\('go', 1\) already exists"):
        t.insert([{"game": "go", "player": 1, "score": 0}], quiet=True)
    t.insert([{"game": "go", "player": 1, "score": 9}], on_conflict="update", quiet=True)
    t.batch_update([{"game": "chess", "player": 1, "score": 8}], quiet=True)
    assert ordered(t, "game", "player", "score") == [("chess", 1, 8), ("go", 1, 9), ("go", 2, 6)]


def test_updating_a_key_onto_another_rows_key_is_a_clear_error(session: mt.Session) -> None:
    t = mt.create_table("people", {"id": mt.Int, "name": mt.String}, primary_key="id")
    t.insert([{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}], quiet=True)
    versions = len(t.history())
    with pytest.raises(mt.DataError, match=r"update of 'people' would give two rows the same primary key \(id\)"):
        t.update({"id": 2}, where=t.id == 1)
    assert ordered(t, "id", "name") == [(1, "ann"), (2, "bob")]  # nothing changed
    assert len(t.history()) == versions
    t.update({"id": 3}, where=t.id == 1)  # a free key is fine
    assert ordered(t, "id", "name") == [(2, "bob"), (3, "ann")]


def test_insert_commits_base_and_views_together(session: mt.Session, tmp_path: Path) -> None:
    good = mediagen.make_mp4(tmp_path / "good.mp4", seconds=2.0, fps=4)
    videos = mt.create_table("videos", {"video": mt.Video, "n": mt.Int})
    frames = mt.create_view("frames", videos, iterator=mt.frames(videos.video, fps=1))

    @mt.udf
    def fails_on_seven(n: int) -> int:
        if n == 7:
            raise ValueError("seven")
        return n

    frames.add_computed_column(checked=fails_on_seven(frames.n), on_error="abort", quiet=True)
    videos.insert([{"video": str(good), "n": 1}], quiet=True)
    version = videos.version
    with pytest.raises(mt.ComputeError, match="seven"):  # the view's step fails after the base rows are written
        videos.insert([{"video": str(good), "n": 2}, {"video": str(good), "n": 7}], quiet=True)
    assert videos.count() == 1 and frames.count() == 2 and videos.version == version
    videos.delete(quiet=True)
    assert frames.count() == 0


def test_delete_commits_base_and_views_together(session: mt.Session, tmp_path: Path) -> None:
    good = mediagen.make_mp4(tmp_path / "good.mp4", seconds=2.0, fps=4)
    videos = mt.create_table("videos", {"video": mt.Video, "n": mt.Int})
    frames = mt.create_view("frames", videos, iterator=mt.frames(videos.video, fps=1))
    videos.insert([{"video": str(good), "n": 1}, {"video": str(good), "n": 2}], quiet=True)
    version, history = videos.version, len(videos.history())
    # The database itself refuses the view's step: a trigger on the view's own SQL table.
    view_table = frames._meta.sql_table().name
    with session.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE DELETE ON \"{view_table}\" BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
            )
            conn.exec_driver_sql(f'CREATE TRIGGER refuse BEFORE DELETE ON "{view_table}" EXECUTE FUNCTION refuse()')
    with pytest.raises(Exception, match="refused"):
        videos.delete(where=videos.n == 1, quiet=True)
    assert videos.count() == 2 and frames.count() == 4  # neither the base rows nor the view's went
    assert videos.version == version and len(videos.history()) == history
    with session.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TRIGGER refuse{'' if conn.dialect.name == 'sqlite' else f' ON {view_table}'}")
    videos.delete(where=videos.n == 1, quiet=True)
    assert videos.count() == 1 and frames.count() == 2


def test_aborted_computed_column_leaves_the_table_exactly_as_before(session: mt.Session) -> None:
    t = mt.create_table("nums", {"n": mt.Int})
    t.insert([{"n": 1}, {"n": 0}, {"n": 2}], quiet=True)
    t.add_computed_column(inv=t.n * 100, quiet=True)
    before = (t.columns, repr(t), ordered(t, "n", "inv"), t.version, len(t.history()))

    @mt.udf
    def reciprocal(n: int) -> float:
        return 1 / n

    with pytest.raises(mt.ComputeError, match=r"reciprocal|division"):
        t.add_computed_column(inv=reciprocal(t.n), on_error="abort", if_exists="replace", quiet=True)
    with pytest.raises(mt.ComputeError):
        t.add_computed_column(other=reciprocal(t.n), on_error="abort", quiet=True)
    t = mt.get_table("nums")
    assert (t.columns, repr(t), ordered(t, "n", "inv"), t.version, len(t.history())) == before


def test_media_validation_on_write_heads_each_url(
    session: mt.Session, http_server: FaultServer, tmp_path: Path
) -> None:
    ok = http_server.put("v/ok.jpg", mediagen.make_jpeg(tmp_path / "ok.jpg").read_bytes())
    missing = http_server.url("v/missing.jpg")
    t = mt.create_table("checked", {"image": mt.Image, "label": mt.String}, media_validation="on_write")
    status = t.insert([{"image": ok, "label": "a"}, {"image": missing, "label": "b"}, {"label": "c"}], quiet=True)
    assert status.num_rows == 2 and status.num_excs == 1
    assert "row 1, column 'image'" in status.errors[0] and "missing.jpg" in status.errors[0]
    assert sorted(t.select(t.label).collect()["label"]) == ["a", "c"]
    assert http_server.count(method="GET") == 0 and http_server.count("v/ok.jpg", method="HEAD") == 1
    with pytest.raises(mt.DataError, match=r"missing\.jpg"):
        t.insert([{"image": missing, "label": "d"}], on_error="abort", quiet=True)
    lazy = mt.create_table("lazy", {"image": mt.Image})  # default on_read: nothing is checked at insert
    lazy.insert([{"image": missing}], quiet=True)
    assert http_server.count("v/missing.jpg", method="HEAD") == 2
    with pytest.raises(mt.InvalidArgument):
        mt.create_table("bad", {"image": mt.Image}, media_validation="sometimes")


def test_media_validation_retries_and_bounds_its_heads(
    db_url: str, clean_env: Path, http_server: FaultServer, tmp_path: Path
) -> None:
    mt.init(home=clean_env, db_url=db_url, quiet=True, max_concurrent_downloads=3, retry_backoff=0.01)
    data = mediagen.make_jpeg(tmp_path / "ok.jpg").read_bytes()
    urls = [http_server.put(f"many/{i}.jpg", data) for i in range(24)]
    http_server.set_fault(None, latency=0.05, methods=("HEAD",))  # so that the checks overlap
    http_server.set_fault("many/0.jpg", status=503, times=2, methods=("HEAD",))  # then it answers
    t = mt.create_table("checked", {"image": mt.Image}, media_validation="on_write")
    status = t.insert([{"image": u} for u in urls], quiet=True)
    assert status.num_rows == 24 and status.num_excs == 0
    assert http_server.count("many/0.jpg", method="HEAD") == 3  # two 503s, then the answer
    assert 1 < http_server.peak_concurrency <= 3  # in parallel, within the setting
    assert http_server.count(method="GET") == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda v: mt.frames(v.video, fps=0), "fps must be > 0"),
        (lambda v: mt.frames(v.video, num_frames=0), "num_frames"),
        (lambda v: mt.frames(v.video, fps=1, num_frames=3), "not both"),
        (lambda v: mt.audio_chunks(v.audio, chunk_duration=0), "chunk_duration"),
        (lambda v: mt.audio_chunks(v.audio, chunk_duration=1, overlap=2), "overlap"),
    ],
)
def test_iterator_arguments_are_checked_before_a_view_exists(session: mt.Session, make, message: str) -> None:
    base = mt.create_table("media", {"video": mt.Video, "audio": mt.Audio})
    base.insert([{"video": "s3://b/a.mp4", "audio": "s3://b/a.wav"}], quiet=True)
    with pytest.raises(mt.InvalidArgument, match=message):
        mt.create_view("bad_view", base, iterator=make(base))
    assert mt.list_tables() == ["media"]
    assert list(base.history()["change"]) == ["insert", "create"]  # nothing was stored


def test_update_reaches_views_in_the_same_transaction(session: mt.Session, tmp_path: Path) -> None:
    two = mediagen.make_mp4(tmp_path / "two.mp4", seconds=2.0, fps=4)
    three = mediagen.make_mp4(tmp_path / "three.mp4", seconds=3.0, fps=4)
    videos = mt.create_table("videos", {"video": mt.Video, "n": mt.Int})
    frames = mt.create_view("frames", videos, iterator=mt.frames(videos.video, fps=1))

    @mt.udf
    def fails_on_seven(n: int) -> int:
        if n == 7:
            raise ValueError("seven")
        return n * 10

    frames.add_computed_column(tens=fails_on_seven(frames.n), on_error="abort", quiet=True)
    videos.insert([{"video": str(two), "n": 1}], quiet=True)
    videos.update({"n": videos.n + 1}, quiet=True)  # the view's computed column follows
    assert frames.select(frames.tens).collect()["tens"] == [20, 20]
    videos.update({"video": str(three)}, quiet=True)  # a new source: the view's rows are made anew
    assert frames.count() == 3 and frames.select(frames.tens).collect()["tens"] == [20, 20, 20]
    with pytest.raises(mt.ComputeError, match="seven"):  # the view's step fails: the base keeps its value
        videos.update({"n": 7}, quiet=True)
    assert videos.select(videos.n).collect()["n"] == [2] and frames.count() == 3
    videos.revert()
    assert frames.count() == 2 and videos.select(url=videos.video.fileurl).collect()["url"][0].endswith("two.mp4")
