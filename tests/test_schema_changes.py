"""Schema changes: add/rename/drop columns, move, names, and schema changes raced by other handles and
processes (real processes, on SQLite and on the real PostgreSQL server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import mediatable as mt
from mediagen import make_mp4


@pytest.fixture
def session(db_url: str, clean_env: Path) -> mt.Session:
    return mt.init(home=clean_env, db_url=db_url, quiet=True)


def child(session: mt.Session, body: str, *args: str) -> subprocess.Popen[str]:
    """A real Python process on the same catalog and home, running `body` (with `mt` initialized)."""
    script = "import sys, time\nimport mediatable as mt\n"
    script += f"mt.init(home={str(session.settings.home)!r}, db_url={session.settings.catalog_url!r}, quiet=True)\n"
    script += textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


# -- issue 10 item 2: stale handles -----------------------------------------------------------------
def test_stale_handle_insert_computes_columns_added_by_another_handle(session: mt.Session) -> None:
    stale = mt.create_table("nums", {"n": mt.Int})
    other = mt.get_table("nums")
    other.add_computed_column(double=other.n * 2, quiet=True)
    stale.insert([{"n": 3}, {"n": 4}], quiet=True)
    t = mt.get_table("nums")
    assert t.order_by(t.n).select(t.double).collect()["double"] == [6, 8]
    assert stale.columns == ["n", "double"]  # the handle took the current schema


def test_stale_handle_in_another_process_never_leaves_computed_cells_empty(session: mt.Session) -> None:
    t = mt.create_table("nums", {"n": mt.Int})
    t.insert([{"n": i} for i in range(50)], quiet=True)
    inserter = child(
        session,
        """
        t = mt.get_table('nums')         # obtained before the column exists
        print('ready', flush=True)
        sys.stdin.readline()
        for batch in range(30):
            t.insert([{'n': 1000 + batch * 20 + i} for i in range(20)], quiet=True)
            time.sleep(0.01)
        """,
    )
    assert inserter.stdout.readline().strip() == "ready"
    inserter.stdin.write("go\n")
    inserter.stdin.flush()
    time.sleep(0.1)
    t.add_computed_column(double=t.n * 2, quiet=True)
    finish(inserter)
    result = mt.get_table("nums").select(t.n, d=mt.get_table("nums").double).collect()
    assert len(result) == 650
    assert all(d == n * 2 for n, d in zip(result["n"], result["d"], strict=True))


# -- issue 10 item 3 / issue 12: schema changes from two processes --------------------------------
_SLOW_REPLACE = """
    import pathlib
    t = mt.get_table('race')

    started = []

    @mt.udf
    def slow(n: int, k: int) -> int:
        if not started:
            started.append(True)
            print('computing', flush=True)
        time.sleep(0.01)
        return n * k

    go = pathlib.Path(sys.argv[1])
    while not go.exists():
        time.sleep(0.01)
    try:
        t.add_computed_column(x=slow(t.n, int(sys.argv[2])), if_exists='replace', quiet=True)
        print('ok', flush=True)
    except mt.ConcurrentChange as exc:
        print('refused', exc, flush=True)
"""


def test_concurrent_replace_from_two_processes_keeps_expression_and_values_together(
    session: mt.Session, tmp_path: Path
) -> None:
    t = mt.create_table("race", {"n": mt.Int})
    t.insert([{"n": i} for i in range(40)], quiet=True)
    t.add_computed_column(x=t.n + 1, quiet=True)
    go = tmp_path / "go"
    slow = child(session, _SLOW_REPLACE, str(go), "10")  # replaces x with n * 10, computing ~0.4 s
    go.touch()
    assert slow.stdout.readline().strip() == "computing"
    t.add_computed_column(x=t.n * 100, if_exists="replace", quiet=True)  # lands while the other computes
    outcome = finish(slow).strip()
    assert outcome.startswith("refused") and "nothing was changed" in outcome
    t = mt.get_table("race")
    assert repr(t).splitlines()[-1].endswith("(race.n * 100)")
    values = t.order_by(t.n).select(t.n, t.x).collect()
    assert values["x"] == [n * 100 for n in values["n"]]


def test_schema_change_refused_while_another_process_changes_the_table(session: mt.Session, tmp_path: Path) -> None:
    t = mt.create_table("race", {"n": mt.Int})
    t.insert([{"n": i} for i in range(40)], quiet=True)
    go = tmp_path / "go"
    slow = child(session, _SLOW_REPLACE, str(go), "3")  # computes ~0.4 s, then commits
    go.touch()
    assert slow.stdout.readline().strip() == "computing"
    t.add_column(notes=mt.String)  # commits while the other process is still computing
    outcome = finish(slow).strip()
    assert outcome.startswith("refused") and "'race'" in outcome
    t = mt.get_table("race")
    assert t.columns == ["n", "notes"]  # the loser left nothing behind


_HOLD_SCHEMA_CHANGE = """
    from mediatable.catalog.model import Column

    session = mt.api._current[-1]
    t = mt.get_table('race')
    with session.catalog.change(t._meta, 'add_column', schema_change=True, summary='held') as change:
        change.add_column(Column(name='held', col_type=mt.Int, table_name='race', owner_id=t._meta.id, position=0))
        print('locked', flush=True)
        sys.stdin.readline()                   # the family stays locked mid-change until the parent says so
    print('committed', flush=True)
"""


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.add_column(notes=mt.String),
        lambda t: t.add_columns({"a": mt.Int, "b": mt.Int}),
        lambda t: t.rename_column("n", "m"),
        lambda t: t.drop_column("n2"),
    ],
    ids=["add_column", "add_columns", "rename_column", "drop_column"],
)
def test_plain_schema_change_is_refused_while_another_process_changes_the_schema(
    session: mt.Session, change: Any
) -> None:
    t = mt.create_table("race", {"n": mt.Int, "n2": mt.Int})
    t.insert([{"n": 1, "n2": 2}], quiet=True)
    holder = child(session, _HOLD_SCHEMA_CHANGE)
    assert holder.stdout.readline().strip() == "locked"

    def release() -> None:
        holder.stdin.write("go\n")
        holder.stdin.flush()

    timer = threading.Timer(1.0, release)  # while this process waits for the family's lock
    timer.start()
    try:
        with pytest.raises(mt.ConcurrentChange, match=r"'race'.*nothing was changed, try again") as caught:
            change(t)
    finally:
        timer.join()
    assert caught.value.table == "race"
    assert finish(holder).strip() == "committed"
    t = mt.get_table("race")
    assert t.columns == ["n", "n2", "held"]  # the winner's change, and nothing of the loser's
    assert [h for h in t.history()["summary"]][:1] == ["held"]
    change(t)  # tried again on the schema it now sees, it works


def test_inserts_wait_for_a_schema_change_of_another_process(session: mt.Session) -> None:
    t = mt.create_table("race", {"n": mt.Int, "n2": mt.Int})
    holder = child(session, _HOLD_SCHEMA_CHANGE)
    assert holder.stdout.readline().strip() == "locked"
    timer = threading.Timer(1.0, lambda: (holder.stdin.write("go\n"), holder.stdin.flush()))
    timer.start()
    try:
        t.insert([{"n": 1}], quiet=True)  # data writes queue behind the change, then see its schema
    finally:
        timer.join()
    finish(holder)
    assert mt.get_table("race").collect()[0] == {"n": 1, "n2": None, "held": None}


# -- issue 10 item 4: SIGKILL during add_computed_column -----------------------------------------
def test_sigkill_during_add_computed_column_leaves_no_empty_column(session: mt.Session) -> None:
    t = mt.create_table("nums", {"n": mt.Int})
    t.insert([{"n": i} for i in range(100)], quiet=True)
    proc = child(
        session,
        """
        t = mt.get_table('nums')

        @mt.udf
        def slow(n: int) -> int:
            time.sleep(0.05)
            return n * 3

        print('adding', flush=True)
        t.add_computed_column(triple=slow(t.n))
        print('done', flush=True)
        """,
    )
    assert proc.stdout.readline().strip() == "adding"
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    t = mt.get_table("nums")
    assert t.columns == ["n"]  # rolled back: no column of NULLs without an error
    t.add_computed_column(triple=t.n * 3, quiet=True)  # adding it again works and fills every cell
    assert t.order_by(t.n).select(t.triple).collect()["triple"] == [n * 3 for n in range(100)]


# -- issue 10 item 9: names and settings ----------------------------------------------------------
@pytest.mark.parametrize("name", ["abc\n", "abc\r\n", "\nabc", "a b"])
def test_names_with_newlines_are_refused(session: mt.Session, name: str) -> None:
    with pytest.raises(mt.InvalidName):
        mt.create_table(name, {"x": mt.Int})
    with pytest.raises(mt.InvalidName):
        mt.create_table("ok", {name: mt.Int})
    t = mt.create_table("ok2", {"x": mt.Int})
    with pytest.raises(mt.InvalidName):
        t.add_computed_column(**{name: t.x + 1})
    assert mt.list_tables() == ["ok2"]


def test_long_names_fit_every_backend(session: mt.Session) -> None:
    long_computed = "c" * 55
    t = mt.create_table("t", {"x": mt.Int, "a" * 62 + "1": mt.Int, "a" * 62 + "2": mt.Int})
    t.insert([{"x": 1, "a" * 62 + "1": 10, "a" * 62 + "2": 20}], quiet=True)
    t.add_computed_column(**{long_computed: t.x + 1}, quiet=True)
    t.add_computed_column(**{"b" * 62 + "1": t.x + 2, "b" * 62 + "2": t.x + 3}, quiet=True)
    row = t.collect()[0]
    assert row["a" * 62 + "1"] == 10 and row["a" * 62 + "2"] == 20
    assert row[long_computed] == 2 and row["b" * 62 + "1"] == 3 and row["b" * 62 + "2"] == 4


def test_overlong_path_is_a_clear_error(session: mt.Session) -> None:
    path = ".".join(["d" * 63] * 9)  # 575 characters
    assert len(path) == 575
    with pytest.raises(mt.InvalidName, match="575 characters, at most 512"):
        mt.create_dir(path, parents=True)
    with pytest.raises(mt.InvalidName, match="at most 512"):
        mt.create_table(path, {"x": mt.Int})


@pytest.mark.parametrize("setting", ["request_timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [0, "0s", -1])
def test_zero_timeouts_are_refused(clean_env: Path, setting: str, value: object) -> None:
    with pytest.raises(mt.ConfigError, match=f"{setting} must be more than 0"):
        mt.init(home=clean_env, quiet=True, **{setting: value})


# -- issue 12: schema changes ---------------------------------------------------------------------
def test_add_columns_are_nullable_and_settable(session: mt.Session) -> None:
    t = mt.create_table("pets", {"name": mt.String})
    t.insert([{"name": "Rex"}], quiet=True)
    t.add_column(age=mt.Int)
    t.add_columns({"notes": mt.String, "photo": mt.Image})
    with pytest.raises(mt.AlreadyExists):
        t.add_column(age=mt.Int)
    t.add_column(age=mt.Int, if_exists="ignore")
    assert t.columns == ["name", "age", "notes", "photo"]
    t.insert([{"name": "Tom", "age": 3, "photo": "s3://b/tom.jpg"}], quiet=True)
    result = t.order_by(t.name).select(t.age, t.notes).collect()
    assert result["age"] == [None, 3] and result["notes"] == [None, None]


def test_rename_column_keeps_computed_columns_and_views_working(session: mt.Session) -> None:
    t = mt.create_table("clips", {"n": mt.Int, "video": mt.Video})
    t.add_computed_column(double=t.n * 2, quiet=True)
    t.add_computed_column(quad=t.double * 2, quiet=True)
    view = mt.create_view("frames", t, iterator=mt.frames(t.video, fps=1))
    view.add_computed_column(n_plus=view.n + 1, quiet=True)
    t.insert([{"n": 1}], quiet=True)
    t.rename_column("n", "total")
    t.rename_column("video", "clip")
    with pytest.raises(mt.ColumnNotFound):
        t.rename_column("n", "x")
    with pytest.raises(mt.AlreadyExists):
        t.rename_column("total", "double")
    t.insert([{"total": 5}], quiet=True)
    assert t.order_by(t.total).select(t.total, t.double, t.quad).collect().to_pandas().to_dict("list") == {
        "total": [1, 5],
        "double": [2, 10],
        "quad": [4, 20],
    }
    t.recompute_columns("double")
    assert "total * 2" in repr(t)
    view = mt.get_table("frames")
    assert "total" in view.columns and "clip" in view.columns and "total + 1" in repr(view)
    another = mt.init(home=session.settings.home, db_url=session.settings.catalog_url, quiet=True)
    assert mt.get_table("clips").columns == ["total", "clip", "double", "quad"]
    assert another is not None


def test_drop_column_refuses_dependents_and_keeps_working(session: mt.Session) -> None:
    t = mt.create_table("pets", {"name": mt.String, "age": mt.Int})
    t.add_computed_column(older=t.age + 1, quiet=True)
    with pytest.raises(mt.DependencyError, match="older"):
        t.drop_column("age")
    t.drop_column("older")
    t.drop_column("age")
    t.add_column(age=mt.String)  # the same name again, another type
    t.insert([{"name": "Rex", "age": "three"}], quiet=True)
    assert t.collect()[0] == {"name": "Rex", "age": "three"}


def test_move_tables_views_and_dirs(session: mt.Session) -> None:
    mt.create_dir("a")
    mt.create_dir("a.b")
    t = mt.create_table("a.b.videos", {"video": mt.Video})
    mt.create_view("a.frames", t, iterator=mt.frames(t.video, fps=1))
    mt.create_dir("c")
    mt.move("a.b.videos", "c.videos")
    assert mt.list_tables() == ["a.frames", "c.videos"]
    t.insert([{"video": "s3://b/none.mp4"}], quiet=True)  # the handle follows its table
    mt.move("a", "z")
    assert mt.list_dirs() == ["c", "z", "z.b"]
    assert mt.list_tables() == ["c.videos", "z.frames"]
    assert mt.get_table("z.frames").count() == 0
    with pytest.raises(mt.AlreadyExists):
        mt.move("c.videos", "z.frames")
    with pytest.raises(mt.DirNotFound):
        mt.move("c.videos", "nowhere.videos")
    with pytest.raises(mt.TableNotFound):
        mt.move("missing", "other")
    with pytest.raises(mt.InvalidArgument):
        mt.move("z", "z.b.inner")


def test_sql_identifiers_do_not_come_from_user_names(session: mt.Session) -> None:
    t = mt.create_table("t", {"x" * 63: mt.Int})
    t.add_computed_column(**{"y" * 63: t["x" * 63] + 1}, quiet=True)
    inspector = sa.inspect(session.engine)
    names = [c["name"] for c in inspector.get_columns(f"mt_t{t._meta.id}")]
    assert all(len(n) < 16 for n in names)


def test_changes_through_a_view_do_not_make_the_base_handle_look_concurrent(session: mt.Session) -> None:
    t = mt.create_table("clips", {"video": mt.Video, "n": mt.Int})
    view = mt.create_view("frames", t, iterator=mt.frames(t.video, fps=1))
    view.add_computed_column(w=view.frame.width, quiet=True)
    t.add_computed_column(double=t.n * 2, quiet=True)  # the base handle follows its family's schema
    view.add_column(notes=mt.String)
    view.revert()
    t.insert([{"n": 2}], quiet=True)
    t.update({"n": t.n + 1}, quiet=True)
    assert t.select(t.double).collect()["double"] == [6]
    assert "notes" not in view.columns and "double" in view.columns


# -- a view is created and filled in one transaction -----------------------------------------------
def test_sigkill_while_a_view_fills_leaves_no_view(session: mt.Session, http_server: Any, tmp_path: Path) -> None:
    clip = make_mp4(tmp_path / "clip.mp4", seconds=2.0)
    url = http_server.put("slow/clip.mp4", clip.read_bytes())
    http_server.set_fault("slow/clip.mp4", latency=20.0)  # the view's fill is still fetching when it is killed
    videos = mt.create_table("videos", {"video": mt.Video})
    videos.insert([{"video": url}], quiet=True)
    versions_before = len(videos.history())
    proc = child(
        session,
        """
        print('creating', flush=True)
        mt.create_view('frames', mt.get_table('videos'), iterator=mt.frames(mt.get_table('videos').video, fps=1))
        print('created', flush=True)
        """,
    )
    try:
        assert proc.stdout.readline().strip() == "creating"
        deadline = time.monotonic() + 60
        while http_server.count("slow/clip.mp4", method=None) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http_server.count("slow/clip.mp4", method=None) > 0, proc.stderr.read()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert mt.list_tables() == ["videos"]  # no view, empty or half-filled
    assert len(mt.get_table("videos").history()) == versions_before  # and no version of its creation
    http_server.clear_fault("slow/clip.mp4")
    frames = mt.create_view("frames", videos, iterator=mt.frames(videos.video, fps=1))
    assert frames.count() == 2
