"""Table handles: they follow schema changes made elsewhere, answer missing attributes helpfully,
and refuse column names that would hide their own methods. On SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mediatable as mt


def test_a_handle_sees_columns_added_by_another_handle(db_home: Path) -> None:
    t = mt.create_table("nums", {"n": mt.Int})
    other = mt.get_table("nums")
    t.insert([{"n": 1}, {"n": 2}], quiet=True)
    t.add_computed_column(double=t.n * 2, quiet=True)
    assert other.select(other.double).collect()["double"] == [2, 4]
    assert other.columns == ["n", "double"]
    stale = mt.get_table("nums")
    t.add_computed_column(triple=t.n * 3, quiet=True)
    stale.insert([{"n": 3}], quiet=True)  # computes the column added after this handle was made
    assert t.order_by(t.n).select(t.triple).collect()["triple"] == [3, 6, 9]
    t.drop_column("triple")
    assert "triple" not in other.columns


def test_a_handle_sees_columns_added_by_another_process(db_home: Path) -> None:
    t = mt.create_table("shared", {"n": mt.Int})
    t.insert([{"n": 5}], quiet=True)
    assert t.columns == ["n"]
    script = textwrap.dedent(
        f"""
        import mediatable as mt
        mt.init(home={str(db_home)!r}, db_url={mt.api._session().settings.catalog_url!r}, quiet=True)
        t = mt.get_table('shared')
        t.add_computed_column(plus=t.n + 1, quiet=True)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert t.select(t.plus).collect()["plus"] == [6]
    t.insert([{"n": 7}], quiet=True)
    assert t.order_by(t.n).select(t.plus).collect()["plus"] == [6, 8]


def test_a_handle_follows_its_path_through_replace_and_drop(db_home: Path) -> None:
    old = mt.create_table("pets", {"name": mt.String})
    new = mt.create_table("pets", {"name": mt.String, "age": mt.Int}, if_exists="replace")
    new.insert([{"name": "Rex", "age": 3}], quiet=True)
    assert old.select(old.age).collect()["age"] == [3]
    mt.drop_table("pets")
    with pytest.raises(mt.TableNotFound):
        old.count()


def test_missing_attributes_are_attribute_errors_with_close_matches(db_home: Path) -> None:
    t = mt.create_table("pets", {"label": mt.String, "age": mt.Int})
    assert not hasattr(t, "nonexistent") and hasattr(t, "label") and hasattr(t, "select")
    with pytest.raises(AttributeError, match=r"did you mean 'select'"):
        t.selct  # noqa: B018
    with pytest.raises(mt.ColumnNotFound, match=r"did you mean 'label'\?.*columns: label, age"):
        t["labl"]


@pytest.mark.parametrize("name", ["count", "path", "columns", "select", "insert"])
def test_column_names_that_shadow_table_methods_are_refused(db_home: Path, name: str) -> None:
    with pytest.raises(mt.InvalidName, match=f"{name!r} is taken by the table method"):
        mt.create_table("bad", {name: mt.Int})
    assert "bad" not in mt.list_tables()
    t = mt.create_table("good", {"n": mt.Int})
    with pytest.raises(mt.InvalidName, match=name):
        t.add_computed_column(**{name: t.n + 1})
    assert t.columns == ["n"]


def test_status_lines_use_the_singular_for_one(db_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = mt.create_table("one", {"n": mt.Int})
    capsys.readouterr()
    status = t.insert([{"n": 0}])
    assert capsys.readouterr().out.strip() == "Inserted 1 row with 0 errors."
    assert repr(status) == "1 row inserted, 1 value computed."

    @mt.udf
    def inverse(n: int) -> float:
        return 1 / n

    status = t.add_computed_column(inv=inverse(t.n))
    assert capsys.readouterr().out.strip() == "Added 1 column value with 1 error."
    assert repr(status) == "1 row updated, 1 value computed, 1 error in one.inv."
