"""Table versions: history, revert (rows and schema, views included), reading old versions, snapshots,
storage proportional to what changed — on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import mediagen
import mediatable as mt


@pytest.fixture
def session(db_url: str, clean_env: Path) -> mt.Session:
    return mt.init(home=clean_env, db_url=db_url, quiet=True)


def rows_of(t: mt.Table, *names: str) -> list[tuple]:
    result = t.collect()
    return sorted(tuple(row[n] for n in names) for row in result)


def history_rows(session: mt.Session, t: mt.Table) -> int:
    with session.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM mt_t{t._meta.id}_h")).scalar_one()


def test_every_change_is_a_version_listed_in_history(session: mt.Session) -> None:
    t = mt.create_table("pets", {"name": mt.String, "age": mt.Int})
    t.insert([{"name": "Rex", "age": 3}, {"name": "Tom", "age": 5}], quiet=True)
    t.update({"age": t.age + 1}, where=t.name == "Rex", quiet=True)
    t.add_computed_column(older=t.age + 10, quiet=True)
    t.delete(where=t.name == "Tom", quiet=True)
    t.add_column(notes=mt.String)
    t.rename_column("notes", "remarks")
    t.drop_column("remarks")
    history = t.history()
    assert list(history["version"]) == [7, 6, 5, 4, 3, 2, 1, 0]
    assert list(history["change"]) == [
        "drop_column",
        "rename_column",
        "add_column",
        "delete",
        "add_column",
        "update",
        "insert",
        "create",
    ]
    assert list(history["inserted"])[-2] == 2 and list(history["updated"])[-3] == 1 and list(history["deleted"])[3] == 1
    assert t.version == 7


def test_revert_undoes_each_kind_of_change(session: mt.Session) -> None:
    t = mt.create_table("pets", {"name": mt.String, "age": mt.Int})
    t.insert([{"name": "Rex", "age": 3}, {"name": "Tom", "age": 5}], quiet=True)
    t.add_computed_column(older=t.age + 10, quiet=True)
    states = [(t.columns, rows_of(t, *t.columns))]

    def change_and_revert(change) -> None:
        change()
        assert (t.columns, rows_of(t, *t.columns)) != states[-1]
        t.revert()
        assert (t.columns, rows_of(t, *t.columns)) == states[-1]

    change_and_revert(lambda: t.insert([{"name": "Max", "age": 1}], quiet=True))
    change_and_revert(lambda: t.update({"age": t.age * 2}, quiet=True))
    change_and_revert(lambda: t.delete(where=t.name == "Rex", quiet=True))
    change_and_revert(lambda: t.add_column(notes=mt.String))
    change_and_revert(lambda: t.rename_column("age", "years"))
    change_and_revert(lambda: t.drop_column("older"))
    change_and_revert(lambda: t.add_computed_column(older=t.age * 100, if_exists="replace", quiet=True))
    t.recompute_columns("older", quiet=True)
    t.revert()
    t.insert([{"name": "Max", "age": 1}], quiet=True)  # inserts after a revert take the version it freed
    assert t.version == 3 and rows_of(t, "name", "older") == [("Max", 11), ("Rex", 13), ("Tom", 15)]
    with pytest.raises(mt.CatalogError, match="creation"):
        mt.create_table("empty", {"x": mt.Int}).revert()


def test_revert_includes_views_and_is_refused_across_members(session: mt.Session, tmp_path: Path) -> None:
    clip = mediagen.make_mp4(tmp_path / "clip.mp4", seconds=2.0, fps=4)
    videos = mt.create_table("videos", {"video": mt.Video})
    frames = mt.create_view("frames", videos, iterator=mt.frames(videos.video, fps=1))
    videos.insert([{"video": str(clip)}], quiet=True)
    assert frames.count() == 2
    videos.revert()
    assert videos.count() == 0 and frames.count() == 0
    videos.insert([{"video": str(clip)}], quiet=True)
    frames.add_computed_column(w=frames.frame.width, quiet=True)
    with pytest.raises(mt.CatalogError, match=r"revert it there first"):
        videos.revert()
    frames.revert()
    assert "w" not in frames.columns and frames.count() == 2
    videos.delete(quiet=True)
    assert frames.count() == 0
    videos.revert()
    assert frames.count() == 2


def test_old_versions_read_as_they_were(session: mt.Session) -> None:
    t = mt.create_table("pets", {"name": mt.String, "age": mt.Int})
    t.insert([{"name": "Rex", "age": 3}], quiet=True)  # v1
    t.insert([{"name": "Tom", "age": 5}], quiet=True)  # v2
    t.update({"age": 30}, where=t.name == "Rex", quiet=True)  # v3
    t.add_computed_column(older=t.age + 1, quiet=True)  # v4
    t.rename_column("name", "label")  # v5
    t.delete(where=t.label == "Tom", quiet=True)  # v6
    t.drop_column("older")  # v7
    v1, v3 = t.get_version(1), mt.get_table("pets:3")
    assert rows_of(v1, "name", "age") == [("Rex", 3)]
    assert rows_of(v3, "name", "age") == [("Rex", 30), ("Tom", 5)] and v3.columns == ["name", "age"]
    v5 = t.get_version(5)
    assert v5.columns == ["label", "age", "older"]
    assert rows_of(v5, "label", "older") == [("Rex", 31), ("Tom", 6)]
    assert v5.where(v5.age > 10).select(v5.label).collect()["label"] == ["Rex"]
    assert rows_of(t, "label", "age") == [("Rex", 30)] and t.columns == ["label", "age"]
    with pytest.raises(mt.ReadOnlyTable):
        v1.insert([{"name": "x"}], quiet=True)
    with pytest.raises(mt.ReadOnlyTable):
        v1.revert()
    with pytest.raises(mt.InvalidArgument, match=r"versions 0 to 7"):
        t.get_version(8)
    with pytest.raises(mt.InvalidArgument):
        mt.get_table("pets:x")


def test_snapshots_freeze_a_version_and_block_its_revert(session: mt.Session) -> None:
    mt.create_dir("snaps")
    t = mt.create_table("pets", {"name": mt.String})
    t.insert([{"name": "Rex"}], quiet=True)
    snap = mt.create_snapshot("snaps.monday", t)
    t.insert([{"name": "Tom"}], quiet=True)
    t.update({"name": "REX"}, where=t.name == "Rex", quiet=True)
    assert mt.get_table("snaps.monday").collect()["name"] == ["Rex"] and snap.count() == 1
    assert "snaps.monday" in mt.list_tables()
    t.revert()
    t.revert()
    with pytest.raises(mt.DependencyError, match=r"snaps\.monday"):
        t.revert()
    with pytest.raises(mt.ReadOnlyTable):
        snap.add_column(x=mt.Int)
    with pytest.raises(mt.DependencyError, match=r"snaps\.monday"):
        mt.drop_table("pets")
    mt.drop_table("snaps.monday")
    t.revert()
    assert t.count() == 0


def test_old_versions_cost_what_changed_not_a_copy(session: mt.Session) -> None:
    t = mt.create_table("nums", {"n": mt.Int})
    t.insert([{"n": i} for i in range(2000)], quiet=True)
    t.add_computed_column(double=t.n * 2, quiet=True)
    t.add_column(notes=mt.String)
    assert history_rows(session, t) == 0  # inserts and new columns keep no images
    t.update({"notes": "x"}, where=t.n < 3, quiet=True)
    t.delete(where=t.n >= 1990, quiet=True)
    assert history_rows(session, t) == 3 + 10
    assert t.get_version(1).count() == 2000 and t.count() == 1990


def test_generated_media_of_reverted_rows_stays_readable(session: mt.Session, tmp_path: Path) -> None:
    image = mediagen.make_jpeg(tmp_path / "a.jpg", size=(64, 48))
    t = mt.create_table("pics", {"image": mt.Image})
    t.insert([{"image": str(image)}], quiet=True)
    t.add_computed_column(thumb=t.image.resize((16, 12)), quiet=True)
    before = t.select(url=t.thumb.fileurl).collect()["url"][0]
    t.delete(quiet=True)
    old = t.get_version(2)
    assert old.select(w=old.thumb.width).collect()["w"] == [16]
    t.revert()
    assert t.select(url=t.thumb.fileurl, w=t.thumb.width).collect()[0] == {"url": before, "w": 16}


def test_dropping_deletes_generated_media_once_the_drop_commits(session: mt.Session, tmp_path: Path) -> None:
    image = mediagen.make_jpeg(tmp_path / "a.jpg", size=(64, 48))
    video = mediagen.make_mp4(tmp_path / "v.mp4", seconds=2.0)

    def folder_of(t: mt.Table) -> Path:
        return session.settings.media_dir / str(t._meta.id)

    pics = mt.create_table("pics", {"image": mt.Image})
    pics.insert([{"image": str(image)}], quiet=True)
    pics.add_computed_column(thumb=pics.image.resize((16, 12)), quiet=True)
    clips = mt.create_table("clips", {"video": mt.Video})
    clips.insert([{"video": str(video)}], quiet=True)
    frames = mt.create_view("frames", clips, iterator=mt.frames(clips.video, fps=1))
    mt.create_snapshot("pics_then", pics)
    made = [folder_of(pics), folder_of(frames)]
    assert all(any(f.rglob("*.*")) for f in made)

    with pytest.raises(mt.DependencyError):
        mt.drop_table("clips")  # refused: nothing is deleted
    with pytest.raises(mt.DependencyError):
        mt.drop_table("pics")  # a snapshot still reads its media
    assert all(any(f.rglob("*.*")) for f in made)
    mt.drop_table("pics_then")  # dropping a snapshot leaves its base's media
    assert pics.select(w=pics.thumb.width).collect()["w"] == [16]
    mt.drop_table("pics")
    mt.drop_table("clips", force=True)  # with its view
    assert not any(f.exists() for f in made)
    assert image.exists() and video.exists()  # the user's own files are never touched
    again = mt.create_table("pics", {"image": mt.Image})  # a new table never takes a dropped table's id
    assert again._meta.id not in {int(f.name) for f in made}


def test_revert_while_another_process_reads(session: mt.Session, clean_env: Path) -> None:
    t = mt.create_table("nums", {"n": mt.Int})
    t.insert([{"n": 1} for _ in range(100)], quiet=True)
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time, mediatable as mt
                mt.init(home={str(clean_env)!r}, db_url={session.settings.catalog_url!r}, quiet=True)
                t = mt.get_table('nums')
                seen = set()
                deadline = time.monotonic() + 60
                print('ready', flush=True)
                while time.monotonic() < deadline and len(seen) < 2:
                    values = t.select(t.n).collect()['n']
                    assert len(values) in (100, 200), len(values)
                    assert set(values) <= {{1, 2}} and values.count(1) == 100, values
                    seen.add(len(values))
                print(sorted(seen), flush=True)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().strip() == "ready"
    cycles = 0
    while reader.poll() is None and cycles < 500:  # until the reader has seen both states
        t.insert([{"n": 2} for _ in range(100)], quiet=True)
        time.sleep(0.02)
        t.revert()
        time.sleep(0.02)
        cycles += 1
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    assert out.strip() == "[100, 200]"
    assert t.count() == 100
