"""The `mediatable` command: ls and show (the cache commands are tested in test_cache.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mediatable as mt
from mediatable.cli import main


@pytest.fixture
def catalog(clean_env: Path) -> Path:
    mt.init(home=clean_env, quiet=True)
    mt.create_dir("demo")
    t = mt.create_table("demo.images", {"image": mt.Image, "n": mt.Int})
    t.insert(
        [{"image": "https://cdn.example.com/a.jpg?sig=SECRET", "n": 1}, {"image": "/data/b.jpg", "n": 2}], quiet=True
    )
    t.add_computed_column(double=t.n * 2, quiet=True)
    return clean_env


def test_ls_lists_dirs_and_tables(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--home", str(catalog), "ls"]) == 0
    out = capsys.readouterr().out
    assert "demo/" in out and "demo.images  (table, 2 rows, columns: image, n, double)" in out


def test_show_prints_schema_and_rows(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--home", str(catalog), "show", "demo.images", "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "double  Int  = (demo.images.n * 2)" in out
    assert "2 rows; the first 1:" in out and "https://cdn.example.com/a.jpg?…" in out and "/data/b.jpg" not in out
    assert "SECRET" not in out


def test_errors_are_one_line_and_exit_1(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(catalog), "show", "demo.nope"]) == 1
    assert capsys.readouterr().err.strip() == "mediatable: table 'demo.nope' does not exist"


def test_installed_entry_point(catalog: Path) -> None:
    script = Path(sys.executable).with_name("mediatable")
    out = subprocess.run(
        [str(script), "--home", str(catalog), "ls", "demo"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "demo.images" in out.stdout
