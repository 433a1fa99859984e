"""Query values as training samples, and what happens to rows whose values failed.

Images decode here, in the process that reads (a DataLoader worker): `'pt'` gives a CHW tensor of
the stored dtype (uint8 for 8-bit images), as torchvision's `decode_image` and `PILToTensor` do;
`'np'` an HWC array as stored, `'pil'` the loaded `PIL.Image.Image`. Images stay uint8 on purpose: a
DataLoader hands every sample to the training process through shared memory, and float32 pixels are
four times the bytes (in `benchmarks/training.py` that copy and the conversion cost more CPU than
decoding the JPEGs); scale on the batch, best on the device (`batch['image'].float() / 255`) or in
`transform`. Pixeltable's `'pt'` is torchvision's `ToTensor` (float32 in [0, 1]). Images in other
modes (palette, CMYK, 1-bit, ...) become RGB (RGBA when they have transparency) for `'pt'` and
`'np'`. Ints, floats and bools become 0-d tensors (int64, float64, bool), timestamps float64 POSIX
seconds, arrays tensors of their dtype, JSON numbers and rectangular numeric lists tensors (inside
dicts too); strings, other JSON and None stay as they are; video, audio and document cells are the
cached file's local path.
"""

from __future__ import annotations

import collections
import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch

from mediatable import types as ts
from mediatable.catalog.catalog import check_choice
from mediatable.errors import ComputeError, MediaError
from mediatable.exec.failures import kind_of
from mediatable.exec.media_cells import MediaCell
from mediatable.exec.rowsets import RowValues
from mediatable.exec.status import plural
from mediatable.exprs import CellError
from mediatable.functions._errors import decode_errors
from mediatable.training.jpeg import jpeg_pixels

log = logging.getLogger("mediatable.training")

IMAGE_FORMATS = ("pt", "np", "pil")
ON_ERROR = ("raise", "skip")
_AS_STORED = ("L", "LA", "RGB", "RGBA", "I", "I;16", "F")
_EXAMPLES = 3


def image_sample(image: PIL.Image.Image, image_format: str) -> Any:
    """An image as `'pt'` (CHW tensor, uint8 for 8-bit images), `'np'` (HWC array) or `'pil'`; decoded now.

    Examples:
        >>> red = PIL.Image.new("RGB", (4, 2), (255, 0, 0))
        >>> tensor = image_sample(red, "pt")
        >>> tuple(tensor.shape), tensor.dtype, tensor[0].max().item(), tensor[1].max().item(), tensor.is_contiguous()
        ((3, 2, 4), torch.uint8, 255, 0, True)
        >>> image_sample(red, "np").shape
        (2, 4, 3)
    """
    image.load()
    if image_format == "pil":
        return image
    if image.mode not in _AS_STORED:
        transparent = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    if image_format == "np":
        return np.array(image)  # a copy: writable
    return chw_tensor(np.asarray(image))


def chw_tensor(pixels: np.ndarray) -> torch.Tensor:
    """HWC (or HW) pixels as a contiguous CHW tensor (a copy).

    Examples:
        >>> tuple(chw_tensor(np.zeros((2, 4, 3), np.uint8)).shape), tuple(chw_tensor(np.zeros((2, 4), np.uint8)).shape)
        ((3, 2, 4), (1, 2, 4))
    """
    if pixels.ndim == 2:
        return torch.from_numpy(pixels.copy()[None])
    # CHW in one contiguous block. A CHW view of the HWC pixels (as PILToTensor gives) made collating
    # a batch a strided copy: 0.53 ms an image of 376x282 here; this copy costs 0.16 ms more than the
    # view and collating it 0.08 ms.
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def cell_image_sample(cell: MediaCell, image_format: str) -> Any:
    """The image of a cached Image cell as a sample: colour JPEGs by libjpeg-turbo directly
    (:func:`~mediatable.training.jpeg.jpeg_pixels`, the same pixels for less CPU), the rest by Pillow.

    Raises:
        MediaDecodeError: the file is not a readable image (names the cell's URL).
    """
    with cell.decoding():
        data = cell.read()
        if image_format != "pil":
            pixels = jpeg_pixels(data)
            if pixels is not None:
                return pixels if image_format == "np" else chw_tensor(pixels)
        return image_sample(PIL.Image.open(io.BytesIO(data)), image_format)


def json_sample(value: Any) -> Any:
    """JSON numbers and rectangular numeric lists as tensors (inside dicts and lists too); the rest as is.

    Examples:
        >>> json_sample({"box": [[1, 2], [3, 4]], "label": "cat", "score": 0.5})
        {'box': tensor([[1, 2],
                [3, 4]]), 'label': 'cat', 'score': tensor(0.5000, dtype=torch.float64)}
    """
    if isinstance(value, bool | int | float):
        return torch.tensor(value, dtype=_number_dtype(value))
    if isinstance(value, dict):
        return {key: json_sample(item) for key, item in value.items()}
    if isinstance(value, list):
        try:
            array = np.array(value)
        except ValueError:  # ragged
            array = None
        if array is not None and array.dtype.kind in "biuf" and array.size > 0:
            return torch.from_numpy(array)
        return [json_sample(item) for item in value]
    return value


def _number_dtype(value: bool | int | float) -> torch.dtype:
    if isinstance(value, bool):
        return torch.bool
    return torch.int64 if isinstance(value, int) else torch.float64


def value_sample(value: Any, col_type: ts.ColumnType, image_format: str) -> Any:
    """One cell as a sample value (see the module docstring).

    Raises:
        MediaDecodeError: an image's bytes cannot be decoded (names the URL).

    Examples:
        >>> value_sample(3, ts.Int, "pt"), value_sample("cat", ts.String, "pt")
        (tensor(3), 'cat')
    """
    if value is None:
        return None
    if isinstance(value, MediaCell):
        if value.col_type != ts.Image:
            return value.path
        return cell_image_sample(value, image_format)
    if isinstance(value, PIL.Image.Image):
        with decode_errors("image"):
            return image_sample(value, image_format)
    if col_type == ts.Json:
        return json_sample(value)
    if isinstance(col_type, ts.ArrayType):
        return torch.from_numpy(np.array(value))
    if col_type == ts.Timestamp:
        return torch.tensor(value.timestamp(), dtype=torch.float64)
    if isinstance(value, bool | int | float):
        return torch.tensor(value, dtype=_number_dtype(value))
    return value


class SkippedRows:
    """Rows left out of one epoch (or one batch) with `on_error='skip'`, by kind of failure.

    Examples:
        >>> skipped = SkippedRows("images")
        >>> skipped.seen(10)
        >>> skipped.add(3, "'image'", "MediaNotFound", "not found: http://host/a.jpg")
        >>> skipped.summary()
        "skipped 1 of 10 rows of 'images' (1 not found); row 3: 'image': MediaNotFound: not found: http://host/a.jpg"
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self.total = 0
        self.kinds: collections.Counter[str] = collections.Counter()
        self.examples: list[str] = []

    def __len__(self) -> int:
        return sum(self.kinds.values())

    def seen(self, n: int) -> None:
        """`n` more rows were read."""
        self.total += n

    def add(self, rowid: int, what: str, errortype: str, errormsg: str) -> None:
        """Row `rowid` was left out because `what` failed."""
        self.kinds[kind_of(errortype)] += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append(f"row {rowid}: {what}: {errortype}: {errormsg}")

    def merge(self, other: SkippedRows) -> None:
        """Add the rows `other` read and left out (another worker's share of the same epoch)."""
        self.total += other.total
        self.kinds.update(other.kinds)
        self.examples = (self.examples + other.examples)[:_EXAMPLES]

    def to_dict(self) -> dict[str, Any]:
        """As JSON-able data (see :meth:`from_dict`).

        Examples:
            >>> skipped = SkippedRows("images")
            >>> skipped.seen(2)
            >>> SkippedRows.from_dict(skipped.to_dict()).summary() == skipped.summary()
            True
        """
        return {"table": self.table, "total": self.total, "kinds": dict(self.kinds), "examples": self.examples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkippedRows:
        """The counts :meth:`to_dict` gave."""
        skipped = cls(data["table"])
        skipped.total = data["total"]
        skipped.kinds.update(data["kinds"])
        skipped.examples = list(data["examples"])
        return skipped

    def summary(self) -> str:
        """One line: how many rows were left out, why, and the first few of them."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.kinds.most_common())
        return f"skipped {len(self)} of {plural(self.total, 'row')} of {self.table!r} ({kinds}); " + "; ".join(
            self.examples
        )


class SampleMaker:
    """Turns rows read by id into samples, following `on_error` for rows with a failed value.

    Args:
        names: output names (the sample's keys).
        col_types: output types.
        image_format: `'pt'`, `'np'` or `'pil'`.
        transform: called with each sample (a dict); what it returns is what the dataset yields.
        on_error: `'raise'`: a failed value (a download, a decode, a computed value, also one that
            failed when a stored computed column was computed) raises :class:`ComputeError` naming
            row, column, URL and cause; `'skip'`: the row is left out and counted in :attr:`skipped`.
        table: the table's path, for messages.
    """

    def __init__(
        self,
        names: Sequence[str],
        col_types: Sequence[ts.ColumnType],
        image_format: str,
        transform: Callable[[dict[str, Any]], Any] | None,
        on_error: str,
        table: str,
    ) -> None:
        check_choice("image_format", image_format, IMAGE_FORMATS)
        check_choice("on_error", on_error, ON_ERROR)
        self.names = list(names)
        self.col_types = list(col_types)
        self.image_format = image_format
        self.transform = transform
        self.on_error = on_error
        self.table = table
        self.skipped = SkippedRows(table)

    def samples(self, batch: Sequence[RowValues]) -> list[Any]:
        """The samples of one batch of rows, in order; rows left out are missing.

        Raises:
            ComputeError: a value failed and `on_error='raise'`.
        """
        self.skipped.seen(len(batch))
        out = []
        for rowid, values in batch:
            sample = self._sample(rowid, values)
            if sample is not None:
                out.append(sample if self.transform is None else self.transform(sample))
        return out

    def _sample(self, rowid: int, values: list[Any] | None) -> dict[str, Any] | None:
        if values is None:
            return self._failed(rowid, "the row", "RowDeleted", "it was deleted after the dataset was made", None)
        sample = {}
        for name, col_type, value in zip(self.names, self.col_types, values, strict=True):
            if isinstance(value, CellError):
                message = value.errormsg + (" (when the column was computed)" if value.stored else "")
                return self._failed(rowid, repr(name), value.errortype, message, value.exc)
            try:
                sample[name] = value_sample(value, col_type, self.image_format)
            except MediaError as exc:
                return self._failed(rowid, repr(name), type(exc).__name__, str(exc), exc)
        return sample

    def _failed(self, rowid: int, what: str, errortype: str, errormsg: str, exc: BaseException | None) -> None:
        if self.on_error == "raise":
            raise ComputeError(
                f"{self.table!r} row {rowid}: {what} failed: {errortype}: {errormsg} "
                "(on_error='skip' leaves such rows out)",
                table=self.table,
                column=what.strip("'"),
                row=rowid,
            ) from exc
        self.skipped.add(rowid, what, errortype, errormsg)
        return None
