"""What people see: HTML for notebooks (rendered by headless Chromium and checked by pixel colours),
`show()`, `describe()` and the repr of a query."""

from __future__ import annotations

from pathlib import Path

import pytest

import mediagen
import mediatable as mt
from browser import count_pixels, screenshot
from servers.http import FaultServer

RED, BLUE, DARK = (230, 20, 20), (20, 40, 220), (16, 16, 16)


@pytest.fixture
def media_table(clean_env: Path, http_server: FaultServer, tmp_path: Path) -> mt.Table:
    mt.init(home=clean_env, quiet=True)

    def serve(name: str, path: Path) -> str:
        return http_server.put(f"show/{name}", path.read_bytes())

    red = serve("red.png", mediagen.make_png(tmp_path / "red.png", size=(64, 48), color=RED))
    blue = serve("blue.jpg", mediagen.make_jpeg(tmp_path / "b.jpg", size=(40, 40), color=BLUE))
    video = serve("v.mp4", mediagen.make_mp4(tmp_path / "v.mp4", seconds=1.0, size=(160, 120)))
    audio = serve("a.wav", mediagen.make_wav(tmp_path / "a.wav", seconds=0.5))
    t = mt.create_table(
        "shown", {"image": mt.Image, "video": mt.Video, "audio": mt.Audio, "note": mt.String, "n": mt.Int}
    )
    secret = http_server.url("private/file.jpg?X-Amz-Signature=SECRETSIG&token=SECRET2")
    t.insert(
        [
            {"image": red, "video": video, "audio": audio, "note": "word " * 60, "n": 1},
            {"image": blue, "video": None, "audio": None, "note": secret, "n": 2},
        ],
        quiet=True,
    )
    return t


def test_result_html_shows_thumbnails_frames_players_and_folds_text(media_table: mt.Table, tmp_path: Path) -> None:
    t = media_table
    result = t.order_by(t.n).select(t.image, t.video, t.audio, t.note, t.n).collect()
    page = result._repr_html_()
    assert "SECRET" not in page  # signatures and tokens are redacted
    assert page.count("<img ") == 3  # two images and the video's first frame
    assert "<audio controls" in page and "<details>" in page
    shot = screenshot(page, tmp_path)
    assert count_pixels(shot, RED) >= 0.8 * 64 * 48
    assert count_pixels(shot, BLUE) >= 0.8 * 40 * 40
    assert count_pixels(shot, DARK, tolerance=10) >= 0.8 * 96 * 72  # first frame, as a 96x72 thumbnail


def test_table_html_shows_its_rows_with_thumbnails(media_table: mt.Table, tmp_path: Path) -> None:
    page = media_table._repr_html_()
    assert "table &#x27;shown&#x27;" in page and "SECRET" not in page
    shot = screenshot(page, tmp_path)
    assert count_pixels(shot, RED) >= 0.8 * 64 * 48 and count_pixels(shot, BLUE) >= 0.8 * 40 * 40


def test_a_cell_that_cannot_be_shown_says_why(clean_env: Path, http_server: FaultServer, tmp_path: Path) -> None:
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("broken", {"image": mt.Image})
    t.insert([{"image": http_server.url("nowhere/missing.png")}], quiet=True)
    page = t._repr_html_()  # never raises, never prints
    assert "MediaNotFound: " in page and "missing.png" in page and "<table" in page


def test_show_describe_and_query_repr(media_table: mt.Table, capsys: pytest.CaptureFixture[str]) -> None:
    t = media_table
    capsys.readouterr()
    t.order_by(t.n).select(t.n, t.note).show(1)
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["n", "note"] and "SECRET" not in out and len(out.splitlines()) == 3
    t.show(1)  # the table's first row, media included, with no secret
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["image", "video", "audio", "note", "n"] and len(out.splitlines()) == 3
    assert "<Image 64x48 RGB>" in out and "SECRET" not in out
    t.describe()
    assert capsys.readouterr().out.splitlines()[:2] == ["table 'shown'", "  image   Image"]
    query = t.where((t.n > 1) & (t.image.width > 10)).select(t.n, w=t.image.width).limit(3)
    assert repr(query).splitlines() == [
        "query over 'shown'",
        "  select  n, w=width(shown.image)",
        "  where   (shown.n > 1)  in SQL",
        "  where   (width(shown.image) > 10)  in Python",
        "  limit   3",
    ]
