"""PyAV plumbing shared by the video and audio functions and the frame and audio-chunk iterators.

Media arguments are a local path, a seekable binary file object (a
:class:`~mediatable.io.ranges.RemoteFile` over a large remote object: PyAV then reads only what it
needs), or something with an ``open()`` method giving such a file (a
:class:`~mediatable.io.cache.RemoteObject`, for iterators that open the file more than once).

Times are seconds from the start of the container (its `start_time`), so the first frame of an
ordinary file is at 0.0 whatever the stream's time base. Reading errors are translated by
:func:`~mediatable.functions._errors.decode_errors` at the two places PyAV reads: opening a file
(:func:`open_input`) and demuxing/decoding it (:func:`decode`); encoder errors keep their type.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from fractions import Fraction
from typing import Any

import av
import av.container
import numpy as np
from av.video.frame import PictureType

from mediatable.errors import MediaDecodeError
from mediatable.functions._errors import decode_errors
from mediatable.io.media_store import new_output_file

# Float seconds computed from integer timestamps can be a hair off; anything closer counts as equal.
EPS = 1e-6
# Seeks land this much before the wanted time: audio decoders (AAC, MP3) need a few packets of
# history to produce correct samples, and audio packets near a video keyframe may sit before it.
_PREROLL = 0.5

AUDIO_CODECS = {".flac": "flac", ".wav": "pcm_s16le", ".mp3": "libmp3lame", ".m4a": "aac"}


# A media argument: a local path, a seekable binary file, or an object whose open() gives one.
Source = Any


@contextmanager
def open_input(source: Source, kind: str) -> Iterator[av.container.InputContainer]:
    """Open a media file (path, file object or opener, see the module docstring); close it after the block.

    Raises:
        MediaNotFound: no such file.
        MediaDecodeError: not a media file FFmpeg can read.
        MediaError: a remote file's block cannot be fetched (e.g. MediaChanged).
    """
    with ExitStack() as stack:
        if not isinstance(source, str | os.PathLike) and not hasattr(source, "read"):
            source = stack.enter_context(source.open())  # an opener (RemoteObject): a file of our own
        if not isinstance(source, str | os.PathLike):
            source.seek(0)
            with decode_errors(kind, url=getattr(source, "name", None)):
                container = av.open(source, mode="r")
        else:
            with decode_errors(kind, source):
                container = av.open(os.fspath(source), mode="r")
        with container:
            yield container


def first_stream(container: av.container.InputContainer, kind: str) -> Any:
    """The first `'video'` or `'audio'` stream.

    Raises:
        MediaDecodeError: the file has no stream of that kind.
    """
    streams = container.streams.video if kind == "video" else container.streams.audio
    if not streams:
        raise MediaDecodeError(f"no {kind} stream in {container.name!r}")
    return streams[0]


@contextmanager
def open_stream(path: Source, kind: str) -> Iterator[tuple[av.container.InputContainer, Any]]:
    """Open a local media file (:func:`open_input`) and give it with its first `kind` stream (:func:`first_stream`).

    Raises:
        MediaNotFound: no such file.
        MediaDecodeError: not a media file FFmpeg can read, or it has no stream of that kind.
    """
    with open_input(path, kind) as container:
        yield container, first_stream(container, kind)


def _origin(container: av.container.InputContainer) -> float:
    return (container.start_time or 0) / av.time_base


def decode(
    container: av.container.InputContainer, streams: Sequence[Any], start: float = 0.0
) -> Iterator[tuple[Any, Any, float]]:
    """Decode `streams` in file order, from a little before `start` on (from the beginning if 0).

    Yields:
        `(stream, frame, seconds)` for every decoded frame, `seconds` from the container's start;
        frames before `start` are included (the caller decides what to keep).

    Raises:
        MediaDecodeError: the data is corrupt.
    """
    origin = _origin(container)
    with decode_errors(streams[0].type, container.name):
        if start > _PREROLL:
            container.seek(round((origin + start - _PREROLL) * av.time_base), backward=True)
        last: dict[int, float] = {}
        for packet in container.demux(*streams):
            for frame in packet.decode():
                stream = packet.stream
                if frame.pts is not None:
                    seconds = float(frame.pts * stream.time_base) - origin
                else:  # no timestamp: right after the previous frame of the stream
                    seconds = last.get(stream.index, 0.0)
                last[stream.index] = seconds + _frame_seconds(frame, stream)
                yield stream, frame, seconds


def _frame_seconds(frame: Any, stream: Any) -> float:
    if isinstance(frame, av.AudioFrame):
        return frame.samples / frame.sample_rate
    if frame.duration:
        return float(frame.duration * stream.time_base)
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / rate) if rate else 0.0


def duration_and_frames(container: av.container.InputContainer, stream: Any) -> tuple[float, int]:
    """The stream's duration in seconds and its number of frames (packets, for audio).

    Taken from the header when it has them (MP4, WAV, ...); otherwise (Matroska, WebM, MPEG-TS, ...)
    counted by reading every packet of the stream without decoding it, which is exact for this
    stream (the container's own duration spans all streams) and leaves the container at its end.

    Raises:
        MediaDecodeError: the stream holds no data.
    """
    duration = float(stream.duration * stream.time_base) if stream.duration is not None else None
    frames = stream.frames
    if duration is None or not frames:
        counted, end = 0, 0.0
        origin = _origin(container)
        with decode_errors(stream.type, container.name):
            for packet in container.demux(stream):
                if packet.pts is None or not packet.size:
                    continue  # the empty packet that marks the end of the stream
                counted += 1
                end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base) - origin)
        frames = frames or counted
        duration = duration if duration is not None else end
    if not frames:
        raise MediaDecodeError(f"no {stream.type} data in {container.name!r}")
    return duration, frames


def stream_duration(path: Source, kind: str) -> float:
    """The duration in seconds of a file's first `'video'` or `'audio'` stream (:func:`duration_and_frames`).

    Raises:
        MediaNotFound: no such file.
        MediaDecodeError: not a readable file, or it has no data of that kind.
    """
    with open_stream(path, kind) as (container, stream):
        seconds, _ = duration_and_frames(container, stream)
    return seconds


def trim_audio(frame: av.AudioFrame, seconds: float, start: float, end: float | None) -> av.AudioFrame | None:
    """The part of an audio frame inside `[start, end)`, timed from `start`, or None if none is.

    Args:
        frame: a decoded frame.
        seconds: when the frame starts (as :func:`decode` gives it).
        start: first second to keep.
        end: first second not to keep (None: to the end).
    """
    rate = frame.sample_rate
    first = round(seconds * rate)  # index of the frame's first sample in the whole stream
    lo = max(0, round(start * rate) - first)
    hi = frame.samples if end is None else min(frame.samples, round(end * rate) - first)
    if hi <= lo:
        return None
    samples = frame.to_ndarray()
    if frame.format.is_planar:
        samples = samples[:, lo:hi]
    else:  # packed: one row of interleaved channels
        channels = frame.layout.nb_channels
        samples = samples[:, lo * channels : hi * channels]
    out = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples), format=frame.format.name, layout=layout_name(frame.layout)
    )
    out.sample_rate = rate
    out.pts = first + lo - round(start * rate)
    out.time_base = Fraction(1, rate)
    return out


def layout_name(layout: av.AudioLayout) -> str:
    """The layout's name, with an unordered mono/stereo (`'2 channels'`, common in WAV files) named
    `'mono'`/`'stereo'`: encoders such as libmp3lame refuse unordered layouts."""
    if layout.name.endswith("channels") and layout.nb_channels in (1, 2):
        return "mono" if layout.nb_channels == 1 else "stereo"
    return str(layout.name)


def write_clip(path: Source, start: float, end: float | None, *, suffix: str, video: bool) -> str:
    """Re-encode `[start, end)` of a file into a new temporary file and return its path.

    Video goes to H.264 (libx264, yuv420p, source frame timing kept, odd sizes rounded down to even)
    in an MP4 with its index first; audio goes to the codec the suffix names (AAC in MP4). Decoding
    and re-encoding, rather than copying packets, makes the cut exact to the frame (video) and the
    sample (audio) instead of snapping to the keyframes before it.

    Args:
        path: the local source file.
        start: first second to keep (>= 0).
        end: first second not to keep (> start), or None for the end of the file.
        suffix: the output's extension: `.mp4` with `video`; `.flac`, `.wav`, `.mp3` or `.m4a` without.
        video: keep the first video stream (required) and the first audio stream (if any);
            otherwise the first audio stream only.

    Returns:
        The path of the new file; the caller owns it.

    Raises:
        ValueError: a bad range, or nothing of the file lies inside it.
        MediaDecodeError: the source cannot be decoded.
    """
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
    kind = "video" if video else "audio"
    out_path = new_output_file(suffix)
    try:
        with open_input(path, kind) as source:
            if video:
                v_in, a_in = first_stream(source, "video"), next(iter(source.streams.audio), None)
            else:
                v_in, a_in = None, first_stream(source, "audio")
            options = {"movflags": "+faststart"} if suffix in (".mp4", ".m4a") else {}
            with av.open(out_path, mode="w", options=options) as target:
                outputs = {}
                if v_in is not None:
                    outputs[v_in.index] = _add_video_output(target, v_in)
                if a_in is not None:
                    codec = "aac" if video else AUDIO_CODECS[suffix]
                    outputs[a_in.index] = target.add_stream(codec, rate=a_in.rate, layout=layout_name(a_in.layout))
                kept = _copy_range(source, target, outputs, start, end, video=v_in)
        if not kept:
            raise ValueError(f"nothing to clip between {start} s and {end} s: the {kind} is shorter")
    except BaseException:
        os.unlink(out_path)
        raise
    return out_path


def _add_video_output(target: av.container.OutputContainer, v_in: Any) -> Any:
    out = target.add_stream("libx264", rate=v_in.average_rate or v_in.guessed_rate or 25)
    out.width = v_in.codec_context.width // 2 * 2  # yuv420p needs even sizes
    out.height = v_in.codec_context.height // 2 * 2
    out.pix_fmt = "yuv420p"
    out.codec_context.time_base = v_in.time_base  # keep source timestamps as they are (also VFR)
    return out


def _copy_range(
    source: av.container.InputContainer,
    target: av.container.OutputContainer,
    outputs: dict[int, Any],
    start: float,
    end: float | None,
    video: Any,
) -> int:
    """Decode, cut and encode; return the number of video frames kept (audio samples, without video).

    With video, the clip starts at its first frame at or after `start` and the audio is cut at that
    same instant, so both begin at 0 (audio decoded before that frame is known waits in `held`).
    """
    in_streams = [s for s in source.streams if s.index in outputs]
    clip_start = None if video is not None else start
    held: list[tuple[Any, av.AudioFrame, float]] = []
    done: set[int] = set()
    frames = samples = 0
    for stream, frame, seconds in decode(source, in_streams, start):
        if end is not None and seconds >= end - EPS:
            done.add(stream.index)
            if len(done) == len(outputs):
                break
        elif isinstance(frame, av.AudioFrame):
            if clip_start is None:
                held.append((stream, frame, seconds))
            else:
                samples += _encode_audio(target, outputs[stream.index], frame, seconds, clip_start, end)
        elif seconds >= start - EPS:
            if clip_start is None:
                clip_start = seconds
                for a_stream, a_frame, a_seconds in held:
                    _encode_audio(target, outputs[a_stream.index], a_frame, a_seconds, clip_start, end)
                held.clear()
            frame.pts = max(0, round((seconds - clip_start) / stream.time_base))
            frame.time_base = stream.time_base
            frame.pict_type = PictureType.NONE  # let the encoder choose frame types, not the source
            target.mux(outputs[stream.index].encode(frame))
            frames += 1
    for out in outputs.values():
        target.mux(out.encode(None))
    return frames if video is not None else samples


def _encode_audio(
    target: av.container.OutputContainer,
    output: Any,
    frame: av.AudioFrame,
    seconds: float,
    start: float,
    end: float | None,
) -> int:
    """Encode the part of `frame` inside `[start, end)`; return its number of samples."""
    part = trim_audio(frame, seconds, start, end)
    if part is None:
        return 0
    target.mux(output.encode(part))
    return part.samples
