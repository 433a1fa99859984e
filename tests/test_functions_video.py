"""Tests of mediatable.functions.video on generated videos."""

from __future__ import annotations

import doctest
import os
from pathlib import Path

import av
import numpy as np
import pytest

import mediagen
from mediatable import types as ts
from mediatable.errors import MediaDecodeError, MediaNotFound
from mediatable.exprs import CellError, FunctionCall
from mediatable.exprs.methods import lookup_method
from mediatable.functions import audio, image, video
from mediatable.functions.udf import Function
from test_functions_image import REDUCED_DECODE_MAD

pytestmark = pytest.mark.usefixtures("private_tempdir")  # see conftest.py


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        # 5 s, 10 fps, a keyframe every second, AAC sound
        "h264": mediagen.make_mp4(folder / "h264.mp4", seconds=5, fps=10, with_audio=True, gop=10),
        "mpeg4": mediagen.make_mp4(folder / "mpeg4.mp4", seconds=2, fps=25, size=(64, 48), codec="mpeg4"),
        "mkv": mediagen.make_mp4(folder / "counted.mkv", seconds=3, fps=10, size=(64, 48), with_audio=True),
        "truncated": mediagen.make_truncated_mp4(folder / "truncated.mp4"),
        "not_video": mediagen.make_text_file(folder / "notes.mp4"),
        "wav": mediagen.make_wav(folder / "tone.wav", seconds=1.0),
    }


def test_metadata(media: dict[str, Path]) -> None:
    info = video.metadata(media["h264"])
    bitrate = info.pop("bitrate")
    assert info == {
        "duration": 5.0,
        "fps": 10.0,
        "frame_count": 50,
        "width": 160,
        "height": 120,
        "codec": "h264",
        "has_audio": True,
    }
    assert isinstance(bitrate, int) and bitrate > 0
    other = video.metadata(str(media["mpeg4"]))
    assert (other["codec"], other["frame_count"], other["fps"], other["has_audio"]) == ("mpeg4", 50, 25.0, False)
    assert (other["width"], other["height"], other["duration"]) == (64, 48, 2.0)


def test_metadata_without_header_counts(media: dict[str, Path]) -> None:
    # Matroska stores neither the stream's duration nor its frame count: they are counted from packets
    with av.open(str(media["mkv"])) as container:
        assert (container.streams.video[0].frames, container.streams.video[0].duration) == (0, None)
    info = video.metadata(media["mkv"])
    assert (info["duration"], info["frame_count"], info["fps"], info["has_audio"]) == (3.0, 30, 10.0, True)
    assert len(frames_of(video.clip(media["mkv"], 1.0, 2.0))) == 10


def test_duration(media: dict[str, Path]) -> None:
    assert video.duration(media["h264"]) == 5.0
    assert video.duration(media["mpeg4"]) == 2.0


@pytest.mark.parametrize(
    ("timestamp", "frame"), [(0, 0), (0.1, 1), (1.0, 10), (1.05, 11), (2.3, 23), (3.99, 40), (4.9, 49)]
)
def test_extract_frame_at_or_after(media: dict[str, Path], timestamp: float, frame: int) -> None:
    img = video.extract_frame(media["h264"], timestamp)
    assert (img.size, img.mode) == ((160, 120), "RGB")
    assert mediagen.frame_index(img) == frame


def test_extract_frame_past_the_end_and_negative(media: dict[str, Path]) -> None:
    assert video.extract_frame(media["h264"], 4.95) is None
    assert video.extract_frame(media["h264"], 60.0) is None
    with pytest.raises(ValueError, match=">= 0"):
        video.extract_frame(media["h264"], -1.0)


@pytest.mark.parametrize(
    ("source", "size"), [((640, 480), (160, 120)), ((640, 480), (224, 224)), ((1280, 720), (300, 200))]
)
def test_small_frames_are_converted_at_reduced_scale(
    tmp_path: Path, source: tuple[int, int], size: tuple[int, int]
) -> None:
    path = mediagen.make_photo_mp4(tmp_path / "photo.mp4", source)
    for timestamp in (0.0, 0.3):
        small = video.extract_frame(path, timestamp, size=size)
        reference = image.resize(video.extract_frame(path, timestamp), size)  # full conversion, then resize
        assert small.size == reference.size == size and small.mode == "RGB"
        difference = np.abs(np.asarray(small, dtype=np.int16) - np.asarray(reference, dtype=np.int16)).mean()
        assert 0 < difference < REDUCED_DECODE_MAD, difference  # not the full conversion, and close to it


def test_frames_under_twice_the_size_are_converted_in_full(media: dict[str, Path]) -> None:
    small = video.extract_frame(media["h264"], 1.0, size=(100, 80))  # 160x120: no halving fits
    reference = image.resize(video.extract_frame(media["h264"], 1.0), (100, 80))
    assert np.array_equal(np.asarray(small), np.asarray(reference))
    assert video.extract_frame(media["h264"], 60.0, size=(10, 10)) is None
    with pytest.raises(ValueError, match="two positive integers"):
        video.extract_frame(media["h264"], 1.0, size=(0, 10))


def frames_of(path: str | Path) -> list[tuple[float, int]]:
    with av.open(str(path)) as container:
        return [(round(f.time, 3), mediagen.frame_index(f.to_image())) for f in container.decode(video=0)]


def test_clip_is_exact_to_the_frame(media: dict[str, Path], private_tempdir: Path) -> None:
    out = video.clip(media["h264"], 1.0, 3.0)
    assert Path(out).parent == private_tempdir and out.endswith(".mp4")
    info = video.metadata(out)
    assert (info["duration"], info["frame_count"], info["codec"], info["has_audio"]) == (2.0, 20, "h264", True)
    frames = frames_of(out)
    assert frames[0] == (0.0, 10) and frames[-1] == (1.9, 29)
    assert audio.duration(out) == pytest.approx(2.0, abs=0.03)  # AAC pads to 1024-sample frames


def test_clip_between_frames_and_to_the_end(media: dict[str, Path]) -> None:
    frames = frames_of(video.clip(media["h264"], 1.05))  # starts mid-GOP: re-encoded, not snapped back
    assert len(frames) == 39
    assert frames[0] == (0.0, 11) and frames[-1][1] == 49


def test_clip_without_audio(media: dict[str, Path]) -> None:
    info = video.metadata(video.clip(media["mpeg4"], 0.0, 1.0))
    assert (info["frame_count"], info["has_audio"], info["codec"], info["width"]) == (25, False, "h264", 64)


def test_clip_bad_ranges_leave_no_file(media: dict[str, Path], private_tempdir: Path) -> None:
    with pytest.raises(ValueError, match="start < end"):
        video.clip(media["h264"], 2.0, 1.0)
    with pytest.raises(ValueError, match="start < end"):
        video.clip(media["h264"], -1.0, 1.0)
    with pytest.raises(ValueError, match="nothing to clip"):
        video.clip(media["h264"], 10.0, 12.0)
    with pytest.raises(MediaDecodeError):
        video.clip(media["truncated"], 0.0, 1.0)
    assert os.listdir(private_tempdir) == []


CALLS = [
    (video.metadata, ()),
    (video.duration, ()),
    (video.extract_frame, (0.5,)),
    (video.clip, (0.0, 1.0)),
]


@pytest.mark.parametrize(("function", "args"), CALLS, ids=[f.__name__ for f, _ in CALLS])
def test_decode_errors(media: dict[str, Path], tmp_path: Path, function: Function, args: tuple) -> None:
    cases = [
        (media["truncated"], MediaDecodeError, r"cannot decode video .*truncated\.mp4.*Invalid data"),
        (media["not_video"], MediaDecodeError, r"cannot decode video .*notes\.mp4"),
        (media["wav"], MediaDecodeError, "no video stream"),
        (tmp_path / "missing.mp4", MediaNotFound, None),
    ]
    mediagen.assert_raises_each(function, args, cases)


def test_registered_as_video_methods() -> None:
    assert lookup_method("Video", "metadata") == (video.metadata, True)
    assert lookup_method("Video", "duration") == (video.duration, True)
    assert lookup_method("Video", "extract_frame") == (video.extract_frame, False)
    assert lookup_method("Video", "clip") == (video.clip, False)
    types = [f.return_type for f in (video.metadata, video.duration, video.extract_frame, video.clip)]
    assert types == [ts.Json, ts.Float, ts.Image, ts.Video]


def test_expressions(media: dict[str, Path]) -> None:
    col = mediagen.column("video", ts.Video)
    frame_width = col.extract_frame(2.0).width  # a video method, then an image property on its result
    assert isinstance(frame_width, FunctionCall) and frame_width.col_type == ts.Int
    assert video.duration(col).col_type == ts.Float
    rows = [{"video": str(media["h264"])}, {"video": None}, {"video": str(media["truncated"])}]
    assert mediagen.evaluate(col.duration, rows)[:2] == [5.0, None]
    widths = mediagen.evaluate(frame_width, rows)
    assert widths[:2] == [160, None]
    assert isinstance(widths[2], CellError) and widths[2].errortype == "MediaDecodeError"


def test_docstring_examples_run() -> None:
    assert doctest.testmod(video).failed == 0
