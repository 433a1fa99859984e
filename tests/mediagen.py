"""Generate small, known test media on the fly: images, videos, audio, PDFs and broken files.

Every helper writes one file and returns its :class:`~pathlib.Path`, so tests never depend on files
checked into the repository and every expected value (size, frame count, duration, text) is known.

Videos are made so a test can tell which frame it got back: frame ``i`` is a uniform gray of level
:func:`frame_level`\\ ``(i)``, and :func:`frame_index` reads the index back from a decoded image.

:class:`LocalEnv` and :func:`column` let a test evaluate expressions (`column("image", mt.Image).width`)
over such files without a catalog or a cache.

Examples:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> make_jpeg(folder / "red.jpg", size=(32, 24)).name
    'red.jpg'
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import PIL.Image
import pytest

from mediatable import types as ts
from mediatable.exprs import ColumnRef

_LAYOUTS = {1: "mono", 2: "stereo"}


# -- images ---------------------------------------------------------------------------------------


def make_image(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (160, 120),
    color: tuple[int, ...] | int = (200, 30, 30),
    *,
    noise: bool = False,
    mode: str = "RGB",
    **save_options: object,
) -> Path:
    """Write an image of one color (or seeded random noise) in the format its extension names.

    Args:
        path: where to write; the extension picks the format (`.jpg`, `.png`, `.webp`, ...).
        size: (width, height).
        color: the fill color for `mode`; ignored with `noise`.
        noise: random pixels from a fixed seed (same bytes every run), for content-dependent tests.
        mode: a Pillow mode such as `RGB`, `RGBA`, `L`.
        save_options: passed to `PIL.Image.Image.save` (e.g. `quality=90`).

    Returns:
        The path written.
    """
    path = Path(path)
    if noise:
        bands = len(PIL.Image.new(mode, (1, 1)).getbands())
        pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
        image = PIL.Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode)
    else:
        image = PIL.Image.new(mode, size, color)
    image.save(path, **save_options)
    return path


def make_jpeg(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (160, 120),
    color: tuple[int, int, int] = (200, 30, 30),
    *,
    noise: bool = False,
    quality: int = 90,
) -> Path:
    """Write an RGB JPEG. See :func:`make_image`."""
    return make_image(path, size, color, noise=noise, quality=quality)


def photo_pixels(size: tuple[int, int] = (640, 480), seed: int = 0) -> np.ndarray:
    """RGB pixels that compress and scale like a photograph: smooth gradients, soft shapes, fine texture, grain."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for c in range(3):
        base = 90 + 60 * np.sin(x / width * (2 + c) * np.pi) * np.cos(y / height * (1.5 + c) * np.pi)
        for _ in range(6):  # soft blobs
            cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.2) * width
            base += rng.uniform(-70, 70) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        base += 12 * np.sin(x / 3.0 + c) * np.sin(y / 4.0)  # texture near the sampling limit
        channels.append(base + rng.normal(0, 4, (height, width)))
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def make_photo_jpeg(
    path: str | os.PathLike[str], size: tuple[int, int] = (640, 480), *, seed: int = 0, quality: int = 90
) -> Path:
    """Write a photo-like RGB JPEG (see :func:`photo_pixels`): for tests of decoding and scaling quality."""
    path = Path(path)
    PIL.Image.fromarray(photo_pixels(size, seed), "RGB").save(path, quality=quality)
    return path


def make_photo_mp4(path: str | os.PathLike[str], size: tuple[int, int] = (640, 480), frames: int = 6) -> Path:
    """Write an H.264 MP4 of photo-like frames (see :func:`photo_pixels`), 10 fps: for tests of frame scaling."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for seed in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(photo_pixels(size, seed=seed), format="rgb24")))
        out.mux(stream.encode())
    return path


def make_png(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (160, 120),
    color: tuple[int, ...] | int = (30, 200, 30),
    *,
    noise: bool = False,
    mode: str = "RGB",
) -> Path:
    """Write a PNG (lossless, so pixel values read back exactly). See :func:`make_image`."""
    return make_image(path, size, color, noise=noise, mode=mode)


def make_corrupt_jpeg(path: str | os.PathLike[str]) -> Path:
    """Write a `.jpg` that starts like a JPEG but is garbage: no decoder can identify it."""
    path = Path(path)
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"not a jpeg at all " * 40)
    return path


def make_truncated_jpeg(path: str | os.PathLike[str], size: tuple[int, int] = (160, 120)) -> Path:
    """Write a JPEG cut in half: the header (size, mode) reads fine, decoding the pixels fails."""
    path = Path(path)
    make_jpeg(path, size, noise=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_png_bomb(path: str | os.PathLike[str], size: tuple[int, int] = (50000, 50000)) -> Path:
    """Write a tiny PNG whose header declares `size` (a decompression bomb: Pillow refuses to open it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size[0], size[1], 1, 0, 0, 0, 0)  # 1-bit grayscale
    path = Path(path)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


# -- video ----------------------------------------------------------------------------------------


def frame_level(index: int) -> int:
    """The gray level of frame `index` in videos from :func:`make_mp4` (16, 20, ... 232, then repeats)."""
    return 16 + 4 * (index % 55)


def frame_index(image: PIL.Image.Image) -> int:
    """Read back which frame of a :func:`make_mp4` video `image` is (for the first 55 frames)."""
    mean = float(np.asarray(image.convert("L"), dtype=np.float64).mean())
    return round((mean - 16) / 4)


def make_mp4(
    path: str | os.PathLike[str],
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    *,
    with_audio: bool = False,
    codec: str = "libx264",
    gop: int | None = None,
    sample_rate: int = 44100,
    faststart: bool = True,
) -> Path:
    """Write a video of `round(seconds * fps)` uniform gray frames, frame `i` at time `i / fps`.

    Args:
        path: where to write; the extension picks the container: `.mp4`, or `.mkv` (whose header
            has no per-stream duration or frame count, unlike MP4's).
        seconds: duration; the stream's duration is exactly `frames / fps`.
        fps: constant frame rate.
        size: (width, height), even numbers for libx264's yuv420p.
        with_audio: add an AAC mono 440 Hz tone of the same duration.
        codec: `libx264` or `mpeg4`.
        gop: a keyframe exactly every `gop` frames (default: the encoder's choice, usually one keyframe
            for short clips); scene-cut detection is off so keyframe counts are predictable.
        sample_rate: audio sample rate.
        faststart: MP4 only: put the index first (as web servers need; see FACTS.md).

    Returns:
        The path written.
    """
    path = Path(path)
    frames = round(seconds * fps)
    options = {"movflags": "+faststart"} if faststart and path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as container:
        if codec == "libx264":
            # scene-cut detection off so a gop gives an exact keyframe count
            codec_options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"} if gop else {}
        else:  # mpeg4: same, and a fine quantizer so frame_index() reads every frame back
            codec_options = {"sc_threshold": "1000000000", "qmax": "3"}
        video = container.add_stream(codec, rate=fps, options=codec_options)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        if gop is not None and codec != "libx264":
            video.codec_context.gop_size = gop
        audio = container.add_stream("aac", rate=sample_rate, layout="mono") if with_audio else None
        for i in range(frames):
            pixels = np.full((size[1], size[0], 3), frame_level(i), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            for frame in _tone_frames(frames / fps, sample_rate, 1):
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


def make_noise_mp4(
    path: str | os.PathLike[str],
    seconds: float = 4.0,
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    *,
    gop: int = 10,
    unique_gops: int = 2,
    with_audio: bool = False,
    faststart: bool = True,
    seed: int = 0,
) -> Path:
    """Write an MP4 that is large for its length: noise frames (they do not compress) in closed GOPs.

    Only `unique_gops` GOPs are encoded (libx264, ultrafast); the rest of the file repeats their
    packets with later timestamps, so a file of any size is written in seconds. Frames differ
    within a GOP (each also carries its index in gray in the top-left 16x16 corner), so decoding the
    wrong frame gives another picture. Byte offsets then follow time: `extract_frame(t)` needs a
    part of the file near `t * size / seconds`.

    Args:
        path: where to write (`.mp4`).
        seconds: duration; `round(seconds * fps)` frames, frame `i` at `i / fps`.
        fps: frame rate.
        size: (width, height), even.
        gop: frames per GOP (a keyframe every `gop` frames).
        unique_gops: GOPs actually encoded.
        with_audio: add an AAC 440 Hz mono tone of the same duration.
        faststart: put the index first; else it is written last (PyAV's default).
        seed: the noise's random seed.

    Returns:
        The path written.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    frames = round(seconds * fps)
    options = {"movflags": "+faststart"} if faststart else {}
    codec_options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0", "preset": "ultrafast"}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream("libx264", rate=fps, options=codec_options)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=44100, layout="mono") if with_audio else None
        encoded: list[av.Packet] = []
        for i in range(min(frames, gop * unique_gops)):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            pixels[:16, :16] = frame_level(i)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            encoded.extend(video.encode(frame))
        encoded.extend(video.encode(None))
        tones = iter(_tone_frames(frames / fps, 44100, 1) if audio is not None else [])
        audio_until = 0.0
        for i in range(frames):
            packet = encoded[i % len(encoded)]
            packet.pts = packet.dts = i
            packet.time_base = Fraction(1, fps)
            container.mux(packet)
            while audio is not None and audio_until <= (i + 1) / fps:
                tone = next(tones, None)
                if tone is None:
                    break
                container.mux(audio.encode(tone))
                audio_until = (tone.pts + tone.samples) / 44100
        if audio is not None:
            for tone in tones:
                container.mux(audio.encode(tone))
            container.mux(audio.encode(None))
    return path


def make_truncated_mp4(path: str | os.PathLike[str], seconds: float = 2.0) -> Path:
    """Write an MP4 whose second half is missing, index included: no demuxer can open it."""
    path = Path(path)
    make_mp4(path, seconds, faststart=False)  # the index goes last, so cutting the tail removes it
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# -- audio ----------------------------------------------------------------------------------------


def _tone_frames(seconds: float, sample_rate: int, channels: int, freq: float = 440.0) -> list[av.AudioFrame]:
    """A sine tone as planar float frames of 1024 samples (the last one shorter), pts in samples."""
    total = round(seconds * sample_rate)
    layout = _LAYOUTS[channels]
    out = []
    for start in range(0, total, 1024):
        t = np.arange(start, min(start + 1024, total)) / sample_rate
        wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.tile(wave, (channels, 1)), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        out.append(frame)
    return out


def make_audio(
    path: str | os.PathLike[str],
    seconds: float = 1.0,
    sample_rate: int = 16000,
    channels: int = 1,
    *,
    codec: str = "pcm_s16le",
    freq: float = 440.0,
) -> Path:
    """Write a sine tone of exactly `round(seconds * sample_rate)` samples with `codec`.

    Args:
        path: where to write; the extension picks the container (`.wav`, `.m4a`, `.flac`, `.mp3`).
        seconds: duration.
        sample_rate: samples per second.
        channels: 1 (mono) or 2 (stereo).
        codec: a PyAV audio encoder (`pcm_s16le`, `aac`, `flac`, `libmp3lame`).
        freq: the tone's frequency in Hz.

    Returns:
        The path written.
    """
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=_LAYOUTS[channels])
        for frame in _tone_frames(seconds, sample_rate, channels, freq):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_wav(path: str | os.PathLike[str], seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1) -> Path:
    """Write a 16-bit PCM WAV sine tone. See :func:`make_audio`."""
    return make_audio(path, seconds, sample_rate, channels, codec="pcm_s16le")


def make_m4a(path: str | os.PathLike[str], seconds: float = 1.0, sample_rate: int = 44100, channels: int = 2) -> Path:
    """Write an AAC sine tone in an MP4 (`.m4a`) container. See :func:`make_audio`."""
    return make_audio(path, seconds, sample_rate, channels, codec="aac")


# -- not media ------------------------------------------------------------------------------------


def make_text_file(path: str | os.PathLike[str]) -> Path:
    """Write plain text under a media name (`notes.wav`, `notes.mp4`): no demuxer can open it."""
    path = Path(path)
    path.write_text("just text")
    return path


# -- documents ------------------------------------------------------------------------------------


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(
    path: str | os.PathLike[str],
    pages_text: Sequence[str],
    *,
    title: str | None = None,
    author: str | None = None,
) -> Path:
    """Write a real PDF, one page per string, whose text pypdf extracts exactly as given.

    Lines (split on newlines) are drawn top-down in Helvetica. Characters must exist in WinAnsi
    (Latin-1 plus a few): `café` works, CJK does not. The file is built by hand: a catalog, a page
    tree, one font, a page and a content stream per page, an Info dictionary and a correct xref table.

    Args:
        path: where to write.
        pages_text: the text of each page.
        title: the document's `/Title`.
        author: the document's `/Author`.

    Returns:
        The path written.
    """
    path = Path(path)
    objects: list[bytes] = []  # object number = index + 1
    kids = " ".join(f"{5 + 2 * k} 0 R" for k in range(len(pages_text)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages_text)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    info = {"Title": title, "Author": author, "Producer": "mediagen"}
    objects.append(("<< " + " ".join(f"/{k} {_pdf_string(v)}" for k, v in info.items() if v) + " >>").encode("cp1252"))
    for k, text in enumerate(pages_text):
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for i, line in enumerate(text.split("\n")):
            ops.extend(["T*"] if i else [])
            ops.append(f"{_pdf_string(line)} Tj")
        ops.append("ET")
        stream = "\n".join(ops).encode("cp1252")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            f" /Contents {6 + 2 * k} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    body = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, content in enumerate(objects, 1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, content)
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(body))
    return path


def make_corrupt_pdf(path: str | os.PathLike[str]) -> Path:
    """Write a `.pdf` that has a PDF signature and nothing else a reader can use."""
    path = Path(path)
    path.write_bytes(b"%PDF-1.4\n" + b"this is not a pdf body\n" * 20)
    return path


# -- checking errors ------------------------------------------------------------------------------


def assert_raises_each(
    function: Callable[..., Any], args: tuple, cases: Sequence[tuple[Path, type[Exception], str | None]]
) -> None:
    """Check that `function(path, *args)` raises `error` (its message matching `match`) for every
    `(path, error, match)` in `cases`; `match=None` checks the type only."""
    for path, error, match in cases:
        with pytest.raises(error, match=match):
            function(path, *args)


# -- evaluating expressions over local files -------------------------------------------------------


def column(name: str, col_type: ts.ColumnType) -> ColumnRef:
    """A column reference of a stand-in table `t`, for building expressions in tests."""
    return ColumnRef(SimpleNamespace(name=name, col_type=col_type, table_name="t"))


class LocalEnv:
    """An evaluation environment (:class:`mediatable.exprs.base.EvalEnv`) for one row of local files.

    Column values come from `row` (by column name); media URLs are local paths. Images are opened
    lazily, as the real executor does, and closed by :meth:`close` (or at the end of a `with`).
    """

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self._opened: list[PIL.Image.Image] = []

    def column_value(self, column: Any) -> Any:
        return self.row[column.name]

    def open_media(self, url: str, col_type: ts.ColumnType, ranged: bool = False) -> Any:
        if col_type != ts.Image:
            return url
        image = PIL.Image.open(url)
        self._opened.append(image)
        return image

    def local_path(self, url: str) -> str:
        return url

    def run_call(self, call: Any, envs: Sequence[Any], here: Callable[[Sequence[Any]], list[Any]]) -> list[Any]:
        return here(envs)

    def close(self) -> None:
        for image in self._opened:
            image.close()

    def __enter__(self) -> LocalEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate(expr: Any, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """Evaluate `expr` over `rows` (dicts of column name -> value) and return one value per row."""
    envs = [LocalEnv(row) for row in rows]
    try:
        return list(expr.eval_batch(envs))
    finally:
        for env in envs:
            env.close()
