"""Where generated media goes when a computed column produces an image, a clip or a frame.

Files are written under `<home>/media/<table id>/<column>/` with unique names and stored in the
table as `file://` URLs, so they read like any other media cell. Images are encoded as an
:class:`ImageEncoding` says: the session's default (settings `image_format`, `image_quality`) or a
column's own.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import PIL.Image

from mediatable.errors import DataError, InvalidArgument
from mediatable.io.urls import normalize_url

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("jpeg", "webp", "png")
# Pillow writes these as WebP (grayscale and palettes as RGB or RGBA); other modes go to PNG
_WEBP_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "PA", "CMYK"})


@dataclasses.dataclass(frozen=True)
class ImageEncoding:
    """How generated images are written: `format` ('jpeg', 'webp' or 'png') and `quality` (1-100).

    `quality` applies to the lossy formats. Transparency is never lost: with 'jpeg', an image with an
    alpha band or a palette is written as PNG; 'webp' keeps the alpha band (grayscale and palette
    images become RGB or RGBA there). Modes a format cannot hold (16-bit, float, 1-bit) are written as PNG.

    Examples:
        >>> ImageEncoding().choose(PIL.Image.new("RGB", (2, 2)))
        ('JPEG', '.jpg', {'quality': 90})
        >>> ImageEncoding("jpeg").choose(PIL.Image.new("RGBA", (2, 2)))
        ('PNG', '.png', {})
        >>> ImageEncoding("webp", 80).choose(PIL.Image.new("RGBA", (2, 2)))
        ('WEBP', '.webp', {'quality': 80})
    """

    format: str = "jpeg"
    quality: int = 90

    def __post_init__(self) -> None:
        if self.format not in IMAGE_FORMATS:
            raise InvalidArgument(f"image format must be one of {', '.join(IMAGE_FORMATS)}, not {self.format!r}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise InvalidArgument(f"image quality must be an integer from 1 to 100, not {self.quality!r}")

    def with_options(self, format: str | None = None, quality: int | None = None) -> ImageEncoding:
        """This encoding with the given fields replaced (None keeps the field)."""
        return ImageEncoding(format or self.format, self.quality if quality is None else quality)

    def choose(self, image: PIL.Image.Image) -> tuple[str, str, dict[str, Any]]:
        """(Pillow format, file extension, save options) for `image`."""
        if self.format == "jpeg" and image.mode in ("RGB", "L", "CMYK"):
            return "JPEG", ".jpg", {"quality": self.quality}
        if self.format == "webp" and image.mode in _WEBP_MODES:
            return "WEBP", ".webp", {"quality": self.quality}
        return "PNG", ".png", {}


class MediaStore:
    """Writes generated media values to a local folder and returns their URLs.

    Safe to use from many threads and processes at once (every file gets a new unique name), and
    picklable, so worker processes write what they generate themselves.

    Examples:
        >>> import tempfile, PIL.Image
        >>> store = MediaStore(Path(tempfile.mkdtemp()))
        >>> store.save(PIL.Image.new("RGB", (4, 4)), 1, "thumb").endswith(".jpg")
        True
        >>> store.save(PIL.Image.new("RGB", (4, 4)), 1, "thumb", ImageEncoding("webp")).endswith(".webp")
        True
    """

    def __init__(self, root: Path, encoding: ImageEncoding | None = None) -> None:
        self.root = root
        self.encoding = encoding or ImageEncoding()

    def save(self, value: Any, table_id: int, column: str, encoding: ImageEncoding | None = None) -> str:
        """Persist `value` (a PIL image, or the path of a file a function wrote) and return its URL.

        Images are encoded with `encoding` (default: this store's). A file made by
        :func:`new_output_file` (where built-in functions write their outputs) is moved; any other
        path is copied, so user files, cached files and anything else under the temp folder are
        never moved away.
        """
        return normalize_url(str(self.write(value, self.root / str(table_id) / column, encoding)))

    def remove_tables(self, table_ids: list[int]) -> None:
        """Delete the media generated for tables that were dropped (``<root>/<id>/``).

        Only this store's own files: objects uploaded to a destination (a user's bucket) are never
        deleted. A file another process is still reading stays readable to it (POSIX unlink).
        """
        for table_id in table_ids:
            folder = self.root / str(int(table_id))
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                log.debug("deleted the generated media of dropped table %d", table_id)

    def write(self, value: Any, folder: Path, encoding: ImageEncoding | None = None) -> Path:
        """Write `value` as a file with a new unique name in `folder` (created when missing); its path.

        PIL images are encoded with `encoding` (default: this store's); a path is moved or copied as
        in :meth:`save`, keeping its extension.

        Raises:
            DataError: `value` is neither a PIL image nor the path of a file.
        """
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(value, PIL.Image.Image):
            pil_format, extension, options = (encoding or self.encoding).choose(value)
            target = folder / f"{uuid.uuid4().hex}{extension}"
            value.save(target, format=pil_format, **options)
            return target
        if isinstance(value, str | os.PathLike):
            source = Path(value)
            if not source.is_file():
                raise DataError(f"function returned a path that is not a file: {source}")
            target = folder / f"{uuid.uuid4().hex}{source.suffix.lower()}"
            if _is_temporary(source):
                shutil.move(source, target)
            else:
                shutil.copyfile(source, target)
            return target
        raise DataError(f"expected a PIL image or a file path for a media column, got {type(value).__name__}")


_OUTPUT_PREFIX = "mediatable-output-"


def new_output_file(suffix: str) -> str:
    """A new empty file (0600) in the temp folder for a function's output, which the store will move.

    Examples:
        >>> path = new_output_file(".mp4")
        >>> os.path.basename(path).startswith("mediatable-output-") and path.endswith(".mp4")
        True
        >>> os.unlink(path)
    """
    fd, path = tempfile.mkstemp(prefix=_OUTPUT_PREFIX, suffix=suffix)
    os.close(fd)
    return path


def _is_temporary(path: Path) -> bool:
    """A file :func:`new_output_file` made (by name and place), not any file under the temp folder."""
    resolved = path.resolve()
    return resolved.name.startswith(_OUTPUT_PREFIX) and resolved.parent == Path(tempfile.gettempdir()).resolve()
