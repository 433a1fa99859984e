"""Tests of mediatable.iterators: frames, audio chunks and document pages on generated media."""

from __future__ import annotations

import doctest
import gc
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import mediagen
import mediatable as mt
from mediatable import iterators
from mediatable import types as ts
from mediatable.errors import MediaDecodeError
from mediatable.functions import audio, video
from mediatable.iterators import (
    AudioChunkIterator,
    DocumentPageIterator,
    FrameIterator,
    audio_chunks,
    document_pages,
    frames,
)

pytestmark = pytest.mark.usefixtures("private_tempdir")  # see conftest.py


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("iterators")
    return {
        # 5 s at 10 fps (50 frames, frame i at i/10 s), a keyframe every 10 frames
        "video": mediagen.make_mp4(folder / "five.mp4", seconds=5, fps=10, gop=10, with_audio=True),
        # 1 s at 24 fps: sample times fall between frames
        "video24": mediagen.make_mp4(folder / "film.mp4", seconds=1, fps=24, size=(64, 48)),
        # 3 s at 10 fps in Matroska: no frame count or stream duration in the header
        "mkv": mediagen.make_mp4(folder / "three.mkv", seconds=3, fps=10, size=(64, 48)),
        "wav": mediagen.make_wav(folder / "five.wav", seconds=5.0, sample_rate=8000),
        "pdf": mediagen.make_pdf(folder / "doc.pdf", ["first page", "second page", ""]),
        "truncated": mediagen.make_truncated_mp4(folder / "truncated.mp4"),
    }


def test_output_schemas() -> None:
    assert FrameIterator.output_schema == {"pos": ts.Int, "timestamp": ts.Float, "frame": ts.Image}
    assert AudioChunkIterator.output_schema == {
        "pos": ts.Int,
        "start_time": ts.Float,
        "end_time": ts.Float,
        "audio_chunk": ts.Audio,
    }
    assert DocumentPageIterator.output_schema == {"pos": ts.Int, "page": ts.Int, "text": ts.String}


# -- frames -----------------------------------------------------------------------------------------


def rows_of(iterator: FrameIterator) -> list[tuple[int, float, int]]:
    """(pos, timestamp, frame index read from the pixels) per row."""
    return [(r["pos"], round(r["timestamp"], 6), mediagen.frame_index(r["frame"])) for r in iterator]


def test_all_frames(media: dict[str, Path]) -> None:
    rows = list(FrameIterator(media["video"]))
    assert len(rows) == 50
    assert [r["pos"] for r in rows] == list(range(50))
    assert [round(r["timestamp"], 6) for r in rows] == [i / 10 for i in range(50)]
    assert all(r["frame"].size == (160, 120) and r["frame"].mode == "RGB" for r in rows)
    assert [mediagen.frame_index(r["frame"]) for r in rows] == list(range(50))


def test_small_frames_are_those_extract_frame_makes(media: dict[str, Path]) -> None:
    rows = list(FrameIterator(media["video"], fps=1, size=(40, 30)))
    assert [r["frame"].size for r in rows] == [(40, 30)] * 5
    for row in rows:
        same = video.extract_frame(media["video"], row["timestamp"], size=(40, 30))
        assert np.array_equal(np.asarray(row["frame"]), np.asarray(same))
    assert repr(FrameIterator("v.mp4", size=[40, 30])) == "FrameIterator('v.mp4', size=(40, 30))"
    with pytest.raises(ValueError, match="two positive integers"):
        FrameIterator("v.mp4", size=(40,))


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (1, [(0, 0.0, 0), (1, 1.0, 10), (2, 2.0, 20), (3, 3.0, 30), (4, 4.0, 40)]),  # 5 s at 1 fps: 5 frames
        (0.5, [(0, 0.0, 0), (1, 2.0, 20), (2, 4.0, 40)]),  # ceil(5 * 0.5) = 3
        (0.3, [(0, 0.0, 0), (1, 3.3, 33)]),  # t = 0, 3.33: the frame on screen at 3.33 is frame 33
    ],
)
def test_fps(media: dict[str, Path], fps: float, expected: list[tuple[int, float, int]]) -> None:
    assert rows_of(FrameIterator(media["video"], fps=fps)) == expected


def test_fps_count_is_ceil_of_duration_times_fps(media: dict[str, Path]) -> None:
    for fps in (1, 2, 3, 7, 9.5):
        assert len(list(FrameIterator(media["video"], fps=fps))) == int(np.ceil(5 * fps))


def test_fps_between_frames_takes_the_frame_on_screen(media: dict[str, Path]) -> None:
    # 24 fps source sampled at 10 fps: t = k/10 shows frame floor(k * 2.4)
    rows = rows_of(FrameIterator(media["video24"], fps=10))
    assert [frame for _, _, frame in rows] == [int(k * 2.4 + 1e-9) for k in range(10)]
    assert [ts for _, ts, _ in rows] == [round(int(k * 2.4 + 1e-9) / 24, 6) for k in range(10)]


def test_fps_at_or_above_the_native_rate_gives_every_frame(media: dict[str, Path]) -> None:
    assert len(list(FrameIterator(media["video"], fps=10))) == 50
    assert len(list(FrameIterator(media["video"], fps=60))) == 50


@pytest.mark.parametrize(("n", "expected_frames"), [(1, [0]), (4, [0, 12, 25, 37]), (7, [0, 7, 14, 21, 28, 35, 42])])
def test_num_frames_evenly_spaced(media: dict[str, Path], n: int, expected_frames: list[int]) -> None:
    rows = rows_of(FrameIterator(media["video"], num_frames=n))
    assert [pos for pos, _, _ in rows] == list(range(n))
    assert [frame for _, _, frame in rows] == expected_frames


def test_num_frames_above_the_frame_count_gives_every_frame(media: dict[str, Path]) -> None:
    assert len(list(FrameIterator(media["video"], num_frames=50))) == 50
    assert len(list(FrameIterator(media["video"], num_frames=500))) == 50


def test_counts_without_header_values(media: dict[str, Path]) -> None:
    assert [frame for _, _, frame in rows_of(FrameIterator(media["mkv"], num_frames=3))] == [0, 10, 20]
    assert [frame for _, _, frame in rows_of(FrameIterator(media["mkv"], fps=1))] == [0, 10, 20]
    assert len(list(FrameIterator(media["mkv"]))) == 30


def test_keyframes_only(media: dict[str, Path]) -> None:
    assert rows_of(FrameIterator(media["video"], keyframes_only=True)) == [
        (0, 0.0, 0),
        (1, 1.0, 10),
        (2, 2.0, 20),
        (3, 3.0, 30),
        (4, 4.0, 40),
    ]


def test_timestamps_give_the_same_frame_back(media: dict[str, Path]) -> None:
    for row in FrameIterator(media["video24"], num_frames=5):
        again = video.extract_frame(media["video24"], row["timestamp"])
        assert mediagen.frame_index(again) == mediagen.frame_index(row["frame"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 1, "num_frames": 3}, "not both"),
        ({"fps": 0}, "fps must be > 0"),
        ({"num_frames": 0}, "positive integer"),
        ({"num_frames": 2.5}, "positive integer"),
        ({"keyframes_only": True, "fps": 1}, "cannot be combined"),
    ],
)
def test_frame_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FrameIterator("any.mp4", **kwargs)


def test_frames_of_a_broken_file(media: dict[str, Path]) -> None:
    for kwargs in ({}, {"fps": 1}):
        with pytest.raises(MediaDecodeError, match=r"truncated\.mp4"):
            list(FrameIterator(media["truncated"], **kwargs))


def is_open(path: Path) -> bool:
    """Whether this process holds `path` open (other threads' files do not matter)."""
    target = str(Path(path).resolve())
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed between listdir and readlink
            continue
    return target in links


def test_stopping_early_closes_the_file(media: dict[str, Path]) -> None:
    assert not is_open(media["video"])
    rows = iter(FrameIterator(media["video"]))
    next(rows)
    assert is_open(media["video"])
    rows.close()  # what a for loop's break, or dropping the iterator, does
    gc.collect()
    assert not is_open(media["video"])


# -- audio chunks -----------------------------------------------------------------------------------


def test_audio_chunks(media: dict[str, Path], private_tempdir: Path) -> None:
    rows = list(AudioChunkIterator(media["wav"], chunk_duration=2.0))
    assert [(r["pos"], r["start_time"], r["end_time"]) for r in rows] == [(0, 0.0, 2.0), (1, 2.0, 4.0), (2, 4.0, 5.0)]
    assert [audio.duration(r["audio_chunk"]) for r in rows] == [2.0, 2.0, 1.0]
    assert all(Path(r["audio_chunk"]).parent == private_tempdir for r in rows)
    assert all(r["audio_chunk"].endswith(".flac") for r in rows)


def test_audio_chunks_with_overlap_and_minimum(media: dict[str, Path]) -> None:
    rows = list(AudioChunkIterator(media["wav"], chunk_duration=2.0, overlap=0.5, format="wav"))
    bounds = [(r["start_time"], r["end_time"]) for r in rows]
    assert bounds == [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0)]  # 1 + ceil((5 - 2) / 1.5) chunks
    assert [audio.metadata(r["audio_chunk"])["codec"] for r in rows] == ["pcm_s16le"] * 3
    short_last = AudioChunkIterator(media["wav"], chunk_duration=2.0, min_chunk_duration=1.5)
    assert [r["end_time"] for r in short_last] == [2.0, 4.0]  # the 1 s tail is dropped


def test_chunk_bounds_formula() -> None:
    chunker = AudioChunkIterator("a.wav", chunk_duration=10.0)
    assert chunker.chunk_bounds(3.0) == [(0.0, 3.0)]
    assert chunker.chunk_bounds(10.0) == [(0.0, 10.0)]
    assert len(chunker.chunk_bounds(95.0)) == 10


def test_audio_chunks_of_a_video(media: dict[str, Path]) -> None:
    rows = list(AudioChunkIterator(media["video"], chunk_duration=3.0, format="m4a"))
    assert [(r["start_time"], r["end_time"]) for r in rows] == [(0.0, 3.0), (3.0, 5.0)]
    assert [audio.metadata(r["audio_chunk"])["codec"] for r in rows] == ["aac", "aac"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_duration": 0}, "chunk_duration must be > 0"),
        ({"chunk_duration": 2, "overlap": 2}, "overlap"),
        ({"format": "ogg"}, "unknown audio format"),
    ],
)
def test_audio_chunk_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AudioChunkIterator("a.wav", **kwargs)


def test_audio_chunks_of_a_broken_file(media: dict[str, Path]) -> None:
    with pytest.raises(MediaDecodeError):
        list(AudioChunkIterator(media["truncated"]))


# -- document pages ---------------------------------------------------------------------------------


def test_document_pages(media: dict[str, Path], tmp_path: Path) -> None:
    assert list(DocumentPageIterator(media["pdf"])) == [
        {"pos": 0, "page": 1, "text": "first page"},
        {"pos": 1, "page": 2, "text": "second page"},
        {"pos": 2, "page": 3, "text": ""},
    ]
    note = tmp_path / "note.md"
    note.write_text("# Hello\n\nworld")
    assert list(DocumentPageIterator(note)) == [{"pos": 0, "page": 1, "text": "# Hello\n\nworld"}]
    broken = mediagen.make_corrupt_pdf(tmp_path / "broken.pdf")
    with pytest.raises(MediaDecodeError):
        list(DocumentPageIterator(broken))


@pytest.mark.parametrize("module", [iterators, frames, audio_chunks, document_pages], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0


def test_a_frame_view_stores_small_frames(media: dict[str, Path], clean_env: Path) -> None:
    mt.init(home=clean_env, quiet=True, progress=False)
    videos = mt.create_table("videos", {"video": mt.Video}, if_exists="replace")
    frames = mt.create_view("small_frames", videos, iterator=mt.frames(videos.video, num_frames=3, size=(40, 30)))
    videos.insert([{"video": str(media["video"])}], quiet=True)
    assert (
        frames.select(w=frames.frame.width, h=frames.frame.height).collect().to_pandas().values.tolist()
        == [[40, 30]] * 3
    )
