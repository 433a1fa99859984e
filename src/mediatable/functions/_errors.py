"""The one place where decoder failures (Pillow, PyAV, pypdf) become mediatable errors.

Built-in functions read local files with three backends that each raise their own exceptions:
Pillow raises `OSError` / `UnidentifiedImageError` / `SyntaxError`, PyAV raises `av.FFmpegError`
subclasses, pypdf raises `PyPdfError` subclasses. Users should see one kind of error for "these
bytes are not a valid image/video/audio/document": :class:`~mediatable.errors.MediaDecodeError`.
A missing file becomes :class:`~mediatable.errors.MediaNotFound` and an unreadable one
:class:`~mediatable.errors.MediaAccessDenied`. Errors of the caller's own making (a bad mode name,
a crop box outside the image, ...) pass through unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import av
import PIL.Image
import pypdf.errors

from mediatable.errors import MediaAccessDenied, MediaDecodeError, MediaError, MediaNotFound

# OSError covers Pillow's UnidentifiedImageError and "image file is truncated"; Pillow raises
# SyntaxError for broken PNG chunks; EOFError comes from some Pillow plugins on short files;
# DecompressionBombError (not an OSError) for a header declaring more pixels than Pillow's limit.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    PIL.Image.DecompressionBombError,
    SyntaxError,
    EOFError,
    av.FFmpegError,
    pypdf.errors.PyPdfError,
)


@contextmanager
def decode_errors(kind: str, source: str | os.PathLike[str] | None = None, *, url: str | None = None) -> Iterator[None]:
    """Translate backend exceptions raised inside the block into mediatable media errors.

    Args:
        kind: what is being read, for the message (`"image"`, `"video"`, ...).
        source: the local path being read, when known, for the message.
        url: the (redacted) URL the file came from: named instead of `source`, and set as `.url`.

    Raises:
        MediaNotFound: the file does not exist.
        MediaAccessDenied: the file cannot be read.
        MediaDecodeError: the file's bytes are not valid media of this kind.

    Examples:
        >>> with decode_errors("image", "cat.jpg"):
        ...     raise OSError("image file is truncated")
        Traceback (most recent call last):
        ...
        mediatable.errors.MediaDecodeError: cannot decode image 'cat.jpg': image file is truncated
    """
    named = url if url is not None else source
    where = f" {os.fspath(named)!r}" if named is not None else ""
    try:
        yield
    except MediaError:
        raise
    except FileNotFoundError as exc:
        raise MediaNotFound(f"{kind} file not found{where}", url=url) from exc
    except PermissionError as exc:
        raise MediaAccessDenied(f"no permission to read {kind}{where}", url=url) from exc
    except _DECODE_ERRORS as exc:
        raise MediaDecodeError(f"cannot decode {kind}{where}: {_reason(exc)}", url=url) from exc


def _reason(exc: BaseException) -> str:
    # FFmpeg errors repeat the file name in str(exc); their strerror is the reason alone.
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__
