"""Media values in query results: a reference (stored URL + local cached file), opened when used.

A result of 100k image rows holds 100k small references, not 100k decoded (or even compressed)
images: an Image cell becomes a `PIL.Image.Image` only when the row is read, from the bytes of the
cached file, so it holds no open file handle either.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import PIL.Image

from mediatable import types as ts
from mediatable.exprs import CellError
from mediatable.functions._errors import decode_errors
from mediatable.io.urls import redact_url


class MediaCell:
    """One media value of a result: where it is stored (`url`) and its local file (`path`).

    Examples:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "red.png")
        >>> PIL.Image.new("RGB", (4, 3), "red").save(path)
        >>> cell = MediaCell("s3://bucket/red.png?X-Amz-Signature=abc", path, ts.Image)
        >>> cell.value().size, cell.redacted_url
        ((4, 3), 's3://bucket/red.png?…')
    """

    __slots__ = ("col_type", "path", "url")

    def __init__(self, url: str | None, path: str, col_type: ts.ColumnType) -> None:
        self.url = url
        self.path = path
        self.col_type = col_type

    @property
    def redacted_url(self) -> str | None:
        """The stored URL without secrets (query strings, userinfo), for display."""
        return redact_url(self.url) if self.url is not None else None

    def check(self) -> None:
        """Read an image's header now, so a file that is not an image (or a decompression bomb) fails here.

        Raises:
            MediaDecodeError: the file is not a readable image; names the redacted URL.
        """
        if self.col_type == ts.Image:
            with self.decoding(), PIL.Image.open(self.path):
                pass

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """:func:`~mediatable.functions._errors.decode_errors` naming this cell's redacted URL.

        The URL is redacted only when something fails: a training epoch decodes thousands of cells a second.
        """
        try:
            yield
        except Exception:
            with decode_errors("image", url=self.redacted_url):
                raise

    def value(self) -> Any:
        """What users get: a lazily decoded `PIL.Image.Image` for Image, the local path for other media."""
        if self.col_type != ts.Image:
            return self.path
        with self.decoding():
            return PIL.Image.open(io.BytesIO(self.read()))

    def read(self) -> bytes:
        """The bytes of the local file (read whole: the image holds no open file afterwards)."""
        with open(self.path, "rb", buffering=0) as file:
            return file.read()

    def __repr__(self) -> str:
        return f"<{self.col_type!r} {self.redacted_url or self.path}>"


def user_value(value: Any) -> Any:
    """A result cell as users see it: media references opened, a failed cell None, the rest as is."""
    if isinstance(value, MediaCell):
        return value.value()
    return None if isinstance(value, CellError) else value
