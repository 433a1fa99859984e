"""Uploads written as a stream: a file-like object whose bytes go to the bucket as they come.

:class:`StreamedUpload` wraps obstore's buffered writer (`obstore.open_writer`): up to
`PART_SIZE` bytes are held in memory, and past that the object is uploaded as a multipart upload
(S3) or as blocks (Azure), `PART_CONCURRENCY` parts in flight, so memory stays bounded whatever
the size. The object appears only when the `with` block ends normally; an exception leaving it
aborts the upload: no object, and on S3 no parts left behind (Azure has no call to delete staged,
uncommitted blocks: the service discards them itself after a week).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from types import TracebackType
from typing import Any

from mediatable.errors import MediaError

PART_SIZE = 8 * 1024**2
"""Bytes buffered before a part is uploaded (S3 parts must be at least 5 MiB)."""
PART_CONCURRENCY = 2
"""Parts uploaded at once: memory held is about `PART_SIZE * (PART_CONCURRENCY + 1)`."""


class StreamedUpload(io.RawIOBase):
    """A writable binary stream to one object, published when its `with` block ends without an exception.

    Closing the stream (as a Parquet writer does after its footer) does not publish: leaving the
    `with` block does. Write errors are the :class:`~mediatable.errors.MediaError` of the upload.

    Args:
        writer: an `obstore.open_writer` writer.
        url: the object's URL, for messages.
        translate: turns obstore's errors into mediatable's (`ObjectStores.translate_error`).
    """

    def __init__(self, writer: Any, url: str, translate: Callable[[BaseException, str], MediaError]) -> None:
        super().__init__()
        self._writer, self._url, self._translate = writer, url, translate
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            self._writer.write(view)
        except Exception as exc:  # obstore's errors: translated in one place
            raise self._translate(exc, self._url) from exc
        self._position += len(view)
        return len(view)

    def tell(self) -> int:
        return self._position

    def __enter__(self) -> StreamedUpload:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        try:
            self._writer.__exit__(exc_type, exc, tb)  # completes the upload, or aborts it after an exception
        except Exception as error:
            if exc is None:
                raise self._translate(error, self._url) from error
