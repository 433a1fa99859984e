"""Built-in audio functions: `t.audio.duration`, `t.audio.sample_rate`, `t.audio.clip(0, 30)`.

The audio argument is the path of a local file (in a table: the cached copy of the stored URL), or a
seekable binary file object (a large remote object read by ranges through the file cache); any
file with an audio stream works, videos included (their first audio stream is used). Properties read
the container's header only. A file FFmpeg cannot read raises
:class:`~mediatable.errors.MediaDecodeError`.

Examples:
    >>> sample_rate.return_type, metadata.return_type, clip.return_type
    (Int, Json, Audio)
"""

from __future__ import annotations

from typing import Any

from mediatable import types as ts
from mediatable.functions import _av
from mediatable.functions.udf import udf

CLIP_FORMATS = tuple(suffix.lstrip(".") for suffix in _av.AUDIO_CODECS)


@udf(method_of=ts.Audio, is_property=True, ranged=True)
def metadata(audio: ts.Audio) -> dict[str, Any]:
    """Facts about the first audio stream, from the header (no decoding).

    Returns:
        `{'duration': seconds, 'sample_rate': Hz, 'channels': int, 'codec': FFmpeg's canonical name
        ('aac', 'mp3', 'pcm_s16le', 'flac', 'opus', ...), 'bitrate': bits per second of the stream
        (of the whole file when the stream does not say; None when neither does)}`.

    Raises:
        MediaDecodeError: not a readable file, or it has no audio stream.

    Examples:
        >>> metadata("tone.wav")  # doctest: +SKIP
        {'duration': 2.0, 'sample_rate': 16000, 'channels': 1, 'codec': 'pcm_s16le', 'bitrate': 256000}
    """
    with _av.open_stream(audio, "audio") as (container, stream):
        info = {
            "sample_rate": stream.rate,
            "channels": stream.channels,
            "codec": stream.codec_context.codec.canonical_name,
            "bitrate": stream.bit_rate or container.bit_rate or None,
        }
        seconds, _ = _av.duration_and_frames(container, stream)
    return {"duration": seconds, **info}


@udf(method_of=ts.Audio, is_property=True, ranged=True)
def duration(audio: ts.Audio) -> float:
    """Length of the first audio stream in seconds.

    Examples:
        >>> duration("tone.wav")  # doctest: +SKIP
        2.0
    """
    return _av.stream_duration(audio, "audio")


@udf(method_of=ts.Audio, is_property=True, ranged=True)
def sample_rate(audio: ts.Audio) -> int:
    """Samples per second of the first audio stream.

    Examples:
        >>> sample_rate("tone.wav")  # doctest: +SKIP
        16000
    """
    with _av.open_stream(audio, "audio") as (_, stream):
        rate: int = stream.rate
    return rate


@udf(method_of=ts.Audio, is_property=True, ranged=True)
def channels(audio: ts.Audio) -> int:
    """Number of channels of the first audio stream (1 mono, 2 stereo, ...).

    Examples:
        >>> channels("tone.wav")  # doctest: +SKIP
        1
    """
    with _av.open_stream(audio, "audio") as (_, stream):
        count: int = stream.channels
    return count


@udf(method_of=ts.Audio, ranged=True)
def clip(audio: ts.Audio, start: float, end: float | None = None, format: str = "flac") -> ts.Audio:
    """Cut `[start, end)` seconds, exact to the sample, into a new audio file.

    Args:
        audio: the audio (or a video with sound).
        start: first second to keep.
        end: first second to drop; None keeps everything to the end.
        format: `'flac'` (lossless, compact; the default), `'wav'` (16-bit PCM), `'mp3'` or `'m4a'` (AAC).

    Returns:
        The path of a new temporary file with that extension; sample rate and channels are kept.

    Raises:
        ValueError: unknown format, `start < 0`, `end <= start`, or the audio ends before `start`.
        MediaDecodeError: the audio cannot be decoded.

    Examples:
        >>> clip("tone.wav", 0.5, 1.5, format="wav")  # doctest: +SKIP
        '/tmp/tmpx7y8z9.wav'
    """
    return _av.write_clip(audio, start, end, suffix=clip_suffix(format), video=False)


def clip_suffix(format: str) -> str:
    """The file extension for an audio clip format name (`'flac'` -> `'.flac'`).

    Raises:
        ValueError: not one of :data:`CLIP_FORMATS`.

    Examples:
        >>> clip_suffix("WAV")
        '.wav'
    """
    suffix = "." + format.lower().lstrip(".")
    if suffix not in _av.AUDIO_CODECS:
        raise ValueError(f"unknown audio format {format!r}; use one of {', '.join(CLIP_FORMATS)}")
    return suffix
