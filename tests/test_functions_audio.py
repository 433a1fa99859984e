"""Tests of mediatable.functions.audio on generated audio files."""

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
from mediatable.functions import audio
from mediatable.functions.udf import Function

pytestmark = pytest.mark.usefixtures("private_tempdir")  # see conftest.py


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("audio")
    return {
        "wav": mediagen.make_wav(folder / "mono.wav", seconds=2.0, sample_rate=16000, channels=1),
        "m4a": mediagen.make_m4a(folder / "stereo.m4a", seconds=2.0, sample_rate=44100, channels=2),
        "mp4": mediagen.make_mp4(folder / "talk.mp4", seconds=3, fps=10, with_audio=True, sample_rate=22050),
        "silent_video": mediagen.make_mp4(folder / "silent.mp4", seconds=1, fps=10),
        "not_audio": mediagen.make_text_file(folder / "notes.wav"),
    }


def samples_of(path: str | Path) -> np.ndarray:
    """All decoded samples, channels first, as float32."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="fltp")
        chunks = [f.to_ndarray() for frame in container.decode(audio=0) for f in resampler.resample(frame)]
    return np.concatenate(chunks, axis=1)


def test_metadata(media: dict[str, Path]) -> None:
    info = audio.metadata(media["wav"])
    assert info == {"duration": 2.0, "sample_rate": 16000, "channels": 1, "codec": "pcm_s16le", "bitrate": 256000}
    info = audio.metadata(str(media["m4a"]))
    assert (info["duration"], info["sample_rate"], info["channels"], info["codec"]) == (2.0, 44100, 2, "aac")
    assert isinstance(info["bitrate"], int) and info["bitrate"] > 0


@pytest.mark.parametrize(
    ("key", "expected"), [("wav", (2.0, 16000, 1)), ("m4a", (2.0, 44100, 2)), ("mp4", (3.0, 22050, 1))]
)
def test_properties(media: dict[str, Path], key: str, expected: tuple[float, int, int]) -> None:
    path = media[key]
    assert (audio.duration(path), audio.sample_rate(path), audio.channels(path)) == expected


@pytest.mark.parametrize(("fmt", "codec"), [("flac", "flac"), ("wav", "pcm_s16le"), ("mp3", "mp3"), ("m4a", "aac")])
def test_clip_formats(media: dict[str, Path], private_tempdir: Path, fmt: str, codec: str) -> None:
    out = audio.clip(media["m4a"], 0.5, 1.5, format=fmt)
    assert Path(out).parent == private_tempdir and out.endswith("." + fmt)
    info = audio.metadata(out)
    assert (info["duration"], info["sample_rate"], info["channels"], info["codec"]) == (1.0, 44100, 2, codec)


def test_clip_is_exact_to_the_sample(media: dict[str, Path]) -> None:
    original = samples_of(media["wav"])
    cut = samples_of(audio.clip(media["wav"], 0.25, 1.25, format="wav"))
    assert cut.shape == (1, 16000)
    np.testing.assert_array_equal(cut, original[:, 4000:20000])
    lossless = samples_of(audio.clip(media["wav"], 1.5))  # flac, to the end
    np.testing.assert_array_equal(lossless, original[:, 24000:])


def test_clip_from_a_video(media: dict[str, Path]) -> None:
    out = audio.clip(media["mp4"], 1.0, 2.0, format="wav")
    assert audio.metadata(out)["duration"] == 1.0
    assert samples_of(out).shape == (1, 22050)


def test_clip_arguments(media: dict[str, Path], private_tempdir: Path) -> None:
    with pytest.raises(ValueError, match="unknown audio format 'ogg'; use one of flac, wav, mp3, m4a"):
        audio.clip(media["wav"], 0, 1, format="ogg")
    with pytest.raises(ValueError, match="start < end"):
        audio.clip(media["wav"], 1.0, 1.0)
    with pytest.raises(ValueError, match="nothing to clip"):
        audio.clip(media["wav"], 5.0, 6.0)
    assert os.listdir(private_tempdir) == []


CALLS = [
    (audio.metadata, ()),
    (audio.duration, ()),
    (audio.sample_rate, ()),
    (audio.channels, ()),
    (audio.clip, (0.0, 0.5)),
]


@pytest.mark.parametrize(("function", "args"), CALLS, ids=[f.__name__ for f, _ in CALLS])
def test_decode_errors(media: dict[str, Path], tmp_path: Path, function: Function, args: tuple) -> None:
    cases = [
        (media["not_audio"], MediaDecodeError, r"cannot decode audio .*notes\.wav"),
        (media["silent_video"], MediaDecodeError, "no audio stream"),
        (tmp_path / "missing.wav", MediaNotFound, None),
    ]
    mediagen.assert_raises_each(function, args, cases)


def test_registered_as_audio_methods() -> None:
    for function in (audio.metadata, audio.duration, audio.sample_rate, audio.channels):
        assert lookup_method("Audio", function.__name__) == (function, True)
    assert lookup_method("Audio", "clip") == (audio.clip, False)
    assert [f.return_type for f in (audio.duration, audio.sample_rate, audio.clip)] == [ts.Float, ts.Int, ts.Audio]


def test_expressions(media: dict[str, Path]) -> None:
    col = mediagen.column("audio", ts.Audio)
    assert isinstance(col.sample_rate, FunctionCall) and col.sample_rate.col_type == ts.Int
    clipped = col.clip(0.0, 0.5, format="wav")
    assert clipped.col_type == ts.Audio
    rows = [{"audio": str(media["wav"])}, {"audio": None}, {"audio": str(media["not_audio"])}]
    values = mediagen.evaluate(clipped.duration, rows)  # a clip's duration, through two functions
    assert values[:2] == [0.5, None]
    assert isinstance(values[2], CellError) and values[2].errortype == "MediaDecodeError"


def test_docstring_examples_run() -> None:
    assert doctest.testmod(audio).failed == 0
