"""Video -> one row per frame: all frames, `fps` samples per second, `num_frames` evenly spaced, or keyframes.

Examples:
    >>> FrameIterator("clip.mp4", fps=1.0)  # constructing reads nothing
    FrameIterator('clip.mp4', fps=1.0)
    >>> [row["timestamp"] for row in FrameIterator("clip.mp4", fps=1.0)]  # doctest: +SKIP
    [0.0, 1.0, 2.0, 3.0, 4.0]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

from mediatable import types as ts
from mediatable.functions import _av
from mediatable.functions import image as image_functions
from mediatable.functions import video as video_functions


class FrameIterator:
    """Yields the frames of a local video file as `{'pos', 'timestamp', 'frame'}` rows.

    Which frames, and how many (exactly):

    - neither `fps` nor `num_frames`: every frame, in presentation order.
    - `fps=f`: one frame per sample time `t_k = k / f` for every `t_k` < the video's duration `D`,
      that is `ceil(D * f)` frames (a 5 s video at `fps=1` gives 5 frames, at t = 0, 1, 2, 3, 4).
      Each sample takes the frame on screen at `t_k`: the last frame starting at or before it.
      If `f` is at least the video's own frame rate, every frame is returned instead.
    - `num_frames=n`: the frames on screen at `t_k = k * D / n` for `k = 0 .. n-1`, that is exactly
      `n` evenly spaced frames, the first one first; all frames if the video has no more than `n`.
    - `keyframes_only=True`: every keyframe (I-frame) and nothing else, decoded without the frames
      between them, so it is much faster than the other modes.

    `pos` counts the rows from 0; `timestamp` is the frame's own presentation time in seconds from
    the start of the video (pass it to `extract_frame` to get the same frame back); `frame` is an
    RGB `PIL.Image.Image`.

    Lifecycle: the constructor only checks arguments. Each iteration opens the file, decodes as rows
    are consumed, and closes the file when the iteration ends or the iterator is discarded.

    A large remote video read by ranges (a :class:`~mediatable.io.cache.RemoteObject`) is not
    decoded from end to end for `fps`/`num_frames` samples: where samples lie more than
    :data:`SEEK_GAP` seconds apart, the iterator seeks to the keyframe before the next one and
    decodes from there, so only those parts of the file are fetched. The frames chosen are the same.

    Args:
        path: local video file, or a RemoteObject.
        fps: samples per second (> 0).
        num_frames: number of frames (> 0).
        keyframes_only: keyframes only; cannot be combined with `fps` or `num_frames`.
        size: `(width, height)` of the frames returned, made as `extract_frame(..., size=size)`
            makes them (converted at a reduced scale from a video at least twice as large).

    Raises:
        ValueError: bad or conflicting arguments (at construction).
        MediaDecodeError: the file is not a readable video (while iterating).

    Examples:
        >>> rows = list(FrameIterator("five_seconds.mp4", fps=1))  # doctest: +SKIP
        >>> [(r["pos"], r["timestamp"]) for r in rows]  # doctest: +SKIP
        [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
    """

    output_schema = {"pos": ts.Int, "timestamp": ts.Float, "frame": ts.Image}

    @staticmethod
    def reads_ranges(fps: float | None = None, num_frames: int | None = None, **_: Any) -> bool:
        """Whether iterating with these options reads only parts of a file (sampled frames do).

        Examples:
            >>> FrameIterator.reads_ranges(num_frames=5), FrameIterator.reads_ranges(keyframes_only=True)
            (True, False)
        """
        return fps is not None or num_frames is not None

    def __init__(
        self,
        path: str | os.PathLike[str] | Any,
        *,
        fps: float | None = None,
        num_frames: int | None = None,
        keyframes_only: bool = False,
        size: tuple[int, int] | list[int] | None = None,
    ) -> None:
        if fps is not None and num_frames is not None:
            raise ValueError("give fps or num_frames, not both")
        if keyframes_only and (fps is not None or num_frames is not None):
            raise ValueError("keyframes_only cannot be combined with fps or num_frames")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if num_frames is not None and (isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1):
            raise ValueError(f"num_frames must be a positive integer, got {num_frames}")
        self.path = os.fspath(path) if isinstance(path, str | os.PathLike) else path
        self.fps = fps
        self.num_frames = num_frames
        self.keyframes_only = keyframes_only
        self.size = image_functions.pair(size, "size") if size is not None else None

    def __repr__(self) -> str:
        options = [f"{name}={value!r}" for name in ("fps", "num_frames") if (value := getattr(self, name)) is not None]
        options += ["keyframes_only=True"] if self.keyframes_only else []
        options += [f"size={self.size!r}"] if self.size is not None else []
        return f"FrameIterator({', '.join([repr(self.path), *options])})"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        times = self._sample_times()
        with _av.open_stream(self.path, "video") as (container, stream):
            if self.keyframes_only:
                stream.codec_context.skip_frame = "NONKEY"  # the decoder drops the others unread
            if times is None or isinstance(self.path, str):
                frames = ((frame, seconds) for _, frame, seconds in _av.decode(container, [stream]))
                chosen = frames if times is None else _on_screen_at(frames, times)
            else:
                chosen = _seeking(container, stream, times)
            for pos, (frame, seconds) in enumerate(chosen):
                yield {"pos": pos, "timestamp": seconds, "frame": video_functions.frame_image(frame, self.size)}

    def _sample_times(self) -> list[float] | None:
        """The sample times, or None for every (key)frame. Reads the header (or counts packets)."""
        if self.fps is None and self.num_frames is None:
            return None
        with _av.open_stream(self.path, "video") as (container, stream):
            native_rate = stream.average_rate or stream.guessed_rate
            duration, frame_count = _av.duration_and_frames(container, stream)
        if self.fps is not None:
            if native_rate and self.fps >= native_rate:
                return None
            count = math.ceil(duration * self.fps - _av.EPS)
            return [k / self.fps for k in range(count)]
        assert self.num_frames is not None
        if self.num_frames >= frame_count:
            return None
        return [k * duration / self.num_frames for k in range(self.num_frames)]


# Sample times further apart than this (seconds) are reached by seeking, in files read by ranges.
SEEK_GAP = 2.0


def _seeking(container: Any, stream: Any, times: list[float]) -> Iterator[tuple[Any, float]]:
    """:func:`_on_screen_at` over groups of nearby sample times, each decoded from a seek before it."""
    groups: list[list[float]] = []
    for t in times:
        if groups and t - groups[-1][-1] <= SEEK_GAP:
            groups[-1].append(t)
        else:
            groups.append([t])
    for group in groups:
        # decode() seeks to the keyframe before the group, so the frame on screen at its first time is seen
        frames = ((frame, seconds) for _, frame, seconds in _av.decode(container, [stream], group[0]))
        yield from _on_screen_at(frames, group)


def _on_screen_at(frames: Iterator[tuple[Any, float]], times: list[float]) -> Iterator[tuple[Any, float]]:
    """For each sample time, the last frame that starts at or before it (the first frame for times
    before the first frame). A frame is shown until the next one starts, the last one until the end."""
    k = 0
    previous = None
    for frame, seconds in frames:
        # every sample before this frame's start belongs to the previous frame
        while previous is not None and k < len(times) and times[k] < seconds - _av.EPS:
            yield previous
            k += 1
        if k == len(times):
            return
        previous = (frame, seconds)
    while previous is not None and k < len(times):  # the rest fall in the last frame
        yield previous
        k += 1
