"""Where generated media goes when a computed column produces an image, a clip or a frame.

Files are written under `<home>/media/<table id>/<column>/` with unique names and stored in the
table as `file://` URLs, so they read like any other media cell.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import PIL.Image

from mediatable.errors import DataError
from mediatable.io.urls import normalize_url


class MediaStore:
    """Writes generated media values to a local folder and returns their URLs.

    Examples:
        >>> import tempfile, PIL.Image
        >>> store = MediaStore(Path(tempfile.mkdtemp()))
        >>> store.save(PIL.Image.new("RGB", (4, 4)), 1, "thumb").startswith("file://")
        True
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, value: Any, table_id: int, column: str) -> str:
        """Persist `value` (a PIL image, or the path of a file a function wrote) and return its URL.

        A path inside the system temp folder is moved (functions write their outputs there);
        any other path is copied, so user files are never moved away.
        """
        return normalize_url(str(self.write(value, self.root / str(table_id) / column)))

    def write(self, value: Any, folder: Path) -> Path:
        """Write `value` as a file with a new unique name in `folder` (created when missing); its path.

        PIL images are written as JPEG (RGB, L) or PNG (other modes); a path is moved or copied as
        in :meth:`save`, keeping its extension.

        Raises:
            DataError: `value` is neither a PIL image nor the path of a file.
        """
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(value, PIL.Image.Image):
            fmt = "PNG" if value.mode not in ("RGB", "L") else "JPEG"
            target = folder / f"{uuid.uuid4().hex}.{'png' if fmt == 'PNG' else 'jpg'}"
            value.save(target, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
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


def _is_temporary(path: Path) -> bool:
    return path.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
