"""Built-in video functions: `t.video.metadata`, `t.video.extract_frame(2.5)`, `t.video.clip(0, 10)`.

The video argument is the path of a local file, or a seekable binary file object: in a table, a
large remote video (`settings.min_ranged_size`) is read by ranges through the file cache, so
`metadata` and `duration` fetch the container's index only and `extract_frame`/`clip` the index
and the part they decode; smaller ones are the cached copy of the stored URL. A file FFmpeg cannot
read raises :class:`~mediatable.errors.MediaDecodeError`. Times are seconds from the start of the file.

Examples:
    >>> duration.return_type, extract_frame.return_type, clip.return_type
    (Float, Image, Video)
"""

from __future__ import annotations

from typing import Any

import PIL.Image

from mediatable import types as ts
from mediatable.functions import _av
from mediatable.functions import image as image_functions
from mediatable.functions.udf import udf


@udf(method_of=ts.Video, is_property=True, ranged=True)
def metadata(video: ts.Video) -> dict[str, Any]:
    """Facts about the first video stream, from the header (no decoding).

    Returns:
        `{'duration': seconds, 'fps': frames per second (average), 'frame_count': int, 'width': int,
        'height': int, 'codec': FFmpeg's canonical name ('h264', 'hevc', 'vp9', 'mpeg4', ...),
        'bitrate': bits per second of the whole file or None, 'has_audio': bool}`.
        When the header lacks the duration or frame count, they are counted from the packets.

    Raises:
        MediaDecodeError: not a readable video, or it has no video stream.

    Examples:
        >>> metadata("clip.mp4")  # doctest: +SKIP
        {'duration': 5.0, 'fps': 10.0, 'frame_count': 50, 'width': 160, 'height': 120, 'codec': 'h264', ...}
    """
    with _av.open_stream(video, "video") as (container, stream):
        rate = stream.average_rate or stream.guessed_rate
        info = {
            "fps": float(rate) if rate else None,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "codec": stream.codec_context.codec.canonical_name,
            "bitrate": container.bit_rate or None,
            "has_audio": bool(container.streams.audio),
        }
        seconds, frames = _av.duration_and_frames(container, stream)  # last: it may read to the end
    return {"duration": seconds, "frame_count": frames, **info}


@udf(method_of=ts.Video, is_property=True, ranged=True)
def duration(video: ts.Video) -> float:
    """Length of the first video stream in seconds (to the end of its last frame).

    Examples:
        >>> duration("clip.mp4")  # doctest: +SKIP
        5.0
    """
    return _av.stream_duration(video, "video")


@udf(method_of=ts.Video, ranged=True)
def extract_frame(video: ts.Video, timestamp: float, size: tuple[int, int] | list[int] | None = None) -> ts.Image:
    """The first frame at or after `timestamp` seconds, as an RGB image; None past the last frame.

    Frame timestamps that :class:`~mediatable.iterators.FrameIterator` reports give back that frame.

    Args:
        video: the video.
        timestamp: seconds from the start, >= 0.
        size: `(width, height)` for a small output: the result of `extract_frame(t).resize(size)`,
            computed for less. A frame at least twice as large is converted from YUV at a reduced
            scale (1/2, 1/4, ... of each side, by FFmpeg, averaging pixels) before the resize, so the
            full-size RGB image is never made; the result has exactly `size` and differs from the
            full conversion by under two levels per pixel on average on photo-like frames (tested).

    Returns:
        A `PIL.Image.Image` (RGB), or None when no frame starts at or after `timestamp`.

    Raises:
        ValueError: negative timestamp, or a `size` that is not two positive integers.
        MediaDecodeError: the video cannot be decoded.

    Examples:
        >>> extract_frame("clip.mp4", 2.0).size  # doctest: +SKIP
        (160, 120)
        >>> extract_frame("clip.mp4", 2.0, size=(64, 48)).size  # doctest: +SKIP
        (64, 48)
    """
    if timestamp < 0:
        raise ValueError(f"timestamp must be >= 0, got {timestamp}")
    target = image_functions.pair(size, "size") if size is not None else None
    with _av.open_stream(video, "video") as (container, stream):
        for _, frame, seconds in _av.decode(container, [stream], timestamp):
            if seconds >= timestamp - _av.EPS:
                return frame_image(frame, target)
    return None


def frame_image(frame: Any, size: tuple[int, int] | None = None) -> PIL.Image.Image:
    """A decoded video frame as an RGB image, resized to `size` as :func:`~mediatable.functions.image.resize`
    does; when the frame is at least twice `size`, converted at the smallest power-of-two reduction still
    at least `size` first.

    Examples:
        >>> import av, numpy as np
        >>> frame = av.VideoFrame.from_ndarray(np.zeros((480, 640, 3), np.uint8), format="rgb24")
        >>> frame_image(frame).size, frame_image(frame, (160, 100)).size
        ((640, 480), (160, 100))
    """
    if size is None:
        image: PIL.Image.Image = frame.to_image()
        return image
    scale = 1
    while frame.width // (2 * scale) >= size[0] and frame.height // (2 * scale) >= size[1]:
        scale *= 2
    if scale == 1:
        reduced = frame.to_image()
    else:
        reduced = frame.to_image(width=frame.width // scale, height=frame.height // scale, interpolation="AREA")
    return image_functions.resize_loaded(reduced, size)


@udf(method_of=ts.Video, ranged=True)
def clip(video: ts.Video, start: float, end: float | None = None) -> ts.Video:
    """Cut `[start, end)` seconds into a new MP4 (H.264, plus AAC audio when the source has sound).

    The clip is re-encoded, so it starts exactly at the first frame at or after `start` rather than
    at the keyframe before it, and plays anywhere.

    Args:
        video: the video.
        start: first second to keep.
        end: first second to drop; None keeps everything to the end.

    Returns:
        The path of a new temporary `.mp4` file (its index first, so it streams over HTTP).

    Raises:
        ValueError: `start < 0`, `end <= start`, or no frame lies in the range.
        MediaDecodeError: the video cannot be decoded.

    Examples:
        >>> clip("clip.mp4", 1.0, 3.0)  # doctest: +SKIP
        '/tmp/tmpa1b2c3.mp4'
    """
    return _av.write_clip(video, start, end, suffix=".mp4", video=True)
