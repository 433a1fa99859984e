"""Audio -> one row per fixed-length chunk, each written to its own audio file.

Examples:
    >>> [(r["start_time"], r["end_time"]) for r in AudioChunkIterator("talk.wav", chunk_duration=2.0)]  # doctest: +SKIP
    [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

from mediatable import types as ts
from mediatable.functions import _av
from mediatable.functions.audio import clip_suffix


class AudioChunkIterator:
    """Yields `{'pos', 'start_time', 'end_time', 'audio_chunk'}` rows covering a local audio file.

    Chunk `k` spans `[k * step, min(k * step + chunk_duration, D))` seconds, where
    `step = chunk_duration - overlap` and `D` is the audio's duration; chunks stop with the first one
    that reaches the end, so the count is `1 + ceil(max(0, D - chunk_duration) / step)`. A last chunk
    shorter than `min_chunk_duration` is dropped. Cuts are exact to the sample.

    `audio_chunk` is the path of a new temporary file (the caller owns it) in `format`, with the
    source's sample rate and channels. Works on videos too (their first audio stream).

    Lifecycle: the constructor only checks arguments. Each iteration reads the duration, then opens
    the file once per chunk; every file is closed before its row is yielded.

    Args:
        path: local audio (or video) file.
        chunk_duration: seconds per chunk (> 0).
        overlap: seconds shared by consecutive chunks (0 <= overlap < chunk_duration).
        min_chunk_duration: drop a final chunk shorter than this many seconds.
        format: the chunks' format: `'flac'` (default), `'wav'`, `'mp3'` or `'m4a'`.

    Raises:
        ValueError: bad arguments (at construction).
        MediaDecodeError: the file has no readable audio (while iterating).

    Examples:
        >>> rows = AudioChunkIterator("five_seconds.wav", chunk_duration=2.0, overlap=0.5)  # doctest: +SKIP
        >>> [(r["start_time"], r["end_time"]) for r in rows]  # doctest: +SKIP
        [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0)]
    """

    output_schema = {"pos": ts.Int, "start_time": ts.Float, "end_time": ts.Float, "audio_chunk": ts.Audio}

    @staticmethod
    def reads_ranges(**options: Any) -> bool:
        """Whether iterating reads only parts of a file: never, it reads all of it."""
        return False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        chunk_duration: float = 30.0,
        overlap: float = 0.0,
        min_chunk_duration: float = 0.0,
        format: str = "flac",
    ) -> None:
        if not chunk_duration > 0:
            raise ValueError(f"chunk_duration must be > 0, got {chunk_duration}")
        if not 0 <= overlap < chunk_duration:
            raise ValueError(f"overlap must be >= 0 and < chunk_duration, got {overlap}")
        self.path = os.fspath(path)
        self.chunk_duration = chunk_duration
        self.overlap = overlap
        self.min_chunk_duration = min_chunk_duration
        self.format = format
        self._suffix = clip_suffix(format)

    def __repr__(self) -> str:
        return f"AudioChunkIterator({self.path!r}, chunk_duration={self.chunk_duration!r}, overlap={self.overlap!r})"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for pos, (start, end) in enumerate(self.chunk_bounds(self._duration())):
            path = _av.write_clip(self.path, start, end, suffix=self._suffix, video=False)
            yield {"pos": pos, "start_time": start, "end_time": end, "audio_chunk": path}

    def chunk_bounds(self, duration: float) -> list[tuple[float, float]]:
        """The `(start, end)` seconds of each chunk of an audio lasting `duration` seconds.

        Examples:
            >>> AudioChunkIterator("a.wav", chunk_duration=2.0, overlap=0.5).chunk_bounds(5.0)
            [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0)]
        """
        step = self.chunk_duration - self.overlap
        count = 1 + math.ceil(max(0.0, duration - self.chunk_duration) / step - _av.EPS)
        bounds = [(k * step, min(k * step + self.chunk_duration, duration)) for k in range(count)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < self.min_chunk_duration:
            bounds.pop()
        return bounds

    def _duration(self) -> float:
        return _av.stream_duration(self.path, "audio")
