"""Column types: what a cell may hold, how it is checked, stored in SQL and read back.

Types are values: `mt.String`, `mt.Image`, `mt.Array(mt.Float, (3,))`. Media types (`Image`, `Video`,
`Audio`, `Document`) store the normalized URL of the object; nothing is downloaded at insert.

Examples:
    >>> Int.validate("3")
    Traceback (most recent call last):
    ...
    mediatable.errors.DataError: expected an int, got str: '3'
    >>> Image.validate("s3://bucket/cat.jpg")
    's3://bucket/cat.jpg'
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from mediatable.errors import DataError, UnsupportedScheme
from mediatable.io.urls import normalize_url, normalize_urls


class ColumnType:
    """Base of every column type.

    Attributes:
        name: the type's name as shown to users (`"Image"`, `"Array(Float, (3,))"`).
        is_media: whether cells are media URLs fetched through the file cache.
    """

    name: ClassVar[str] = "?"
    is_media: ClassVar[bool] = False
    python_types: ClassVar[tuple[type, ...]] = ()

    def __repr__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if self is other:  # the common case (`ts.Image`), and on hot paths: no dicts built
            return True
        return isinstance(other, ColumnType) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        """The SQLAlchemy type of the column that stores this type."""
        raise NotImplementedError

    def validate(self, value: Any) -> Any:
        """Check and convert a Python value for storage; None passes (columns are nullable).

        Raises:
            DataError: the value does not fit the type.
        """
        if value is None:
            return None
        if self.python_types and not isinstance(value, self.python_types):
            raise DataError(f"expected {self._article()}, got {type(value).__name__}: {_short(value)}")
        return value

    def validate_many(self, values: list[Any]) -> list[Any] | None:
        """The fast path of :meth:`validate` over a column of values: checked and converted in one go.

        Returns the values as :meth:`validate` would give them one by one (`values` itself when
        nothing changes), or None when some value needs :meth:`validate` on its own (a value of
        another Python type, a missing cell spelled NaN or NA, a value that does not fit).
        """
        return None

    def to_sql(self, value: Any) -> Any:
        """Convert a validated value into what the SQL column stores."""
        return value

    def from_sql(self, value: Any) -> Any:
        """Convert what the SQL column returned into the Python value users see."""
        return value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, stored in the catalog (see :func:`type_from_dict`)."""
        return {"type": self.name}

    def _article(self) -> str:
        return f"an {self.name.lower()}" if self.name[0] in "AEIOU" else f"a {self.name.lower()}"


_NONE = type(None)


class StringType(ColumnType):
    name = "String"
    python_types = (str,)

    def validate_many(self, values: list[Any]) -> list[Any] | None:
        return values if set(map(type, values)) <= {str, _NONE} else None

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        return sa.Text()


class IntType(ColumnType):
    name = "Int"

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise DataError(f"expected an int, got {type(value).__name__}: {_short(value)}")
        return int(value)

    def validate_many(self, values: list[Any]) -> list[Any] | None:
        return values if set(map(type, values)) <= {int, _NONE} else None  # bool is a type of its own

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        return sa.BigInteger()


class FloatType(ColumnType):
    name = "Float"

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise DataError(f"expected a float, got {type(value).__name__}: {_short(value)}")
        return float(value)

    def validate_many(self, values: list[Any]) -> list[Any] | None:
        kinds = set(map(type, values))
        if not kinds <= {float, int, _NONE}:
            return None
        total = sum(values) if _NONE not in kinds else sum(v for v in values if v is not None)
        if total != total and any(v != v for v in values):  # NaN: a missing cell, which validate() never sees
            return None
        return [float(v) if type(v) is int else v for v in values] if int in kinds else values

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        return sa.Float(precision=53)

    def from_sql(self, value: Any) -> Any:
        return None if value is None else float(value)


class BoolType(ColumnType):
    name = "Bool"

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, bool | np.bool_):
            raise DataError(f"expected a bool, got {type(value).__name__}: {_short(value)}")
        return bool(value)

    def validate_many(self, values: list[Any]) -> list[Any] | None:
        return values if set(map(type, values)) <= {bool, _NONE} else None

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        return sa.Boolean()


class TimestampType(ColumnType):
    name = "Timestamp"

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError as exc:
                raise DataError(f"expected a timestamp, got an unparseable string: {_short(value)}") from exc
        if not isinstance(value, dt.datetime):
            raise DataError(f"expected a timestamp, got {type(value).__name__}: {_short(value)}")
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        return sa.DateTime(timezone=True)

    def from_sql(self, value: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class JsonType(ColumnType):
    name = "Json"

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DataError(f"expected JSON-serializable data, got {type(value).__name__}: {exc}") from exc
        return value

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


class ArrayType(ColumnType):
    """A numpy array with a fixed element type and (optionally partly unknown) shape."""

    name = "Array"

    def __init__(self, dtype: ColumnType, shape: Sequence[int | None] | None = None) -> None:
        if not isinstance(dtype, IntType | FloatType | BoolType):
            raise DataError(f"Array elements must be Int, Float or Bool, not {dtype!r}")
        self.dtype = dtype
        self.shape = tuple(shape) if shape is not None else None

    def __repr__(self) -> str:
        return f"Array({self.dtype!r}, {self.shape!r})"

    def _numpy_dtype(self) -> type:
        return {"Int": np.int64, "Float": np.float64, "Bool": np.bool_}[self.dtype.name]

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            array = np.asarray(value, dtype=self._numpy_dtype())
        except (TypeError, ValueError) as exc:
            raise DataError(f"expected an array of {self.dtype!r}, got {_short(value)}") from exc
        if self.shape is not None and (
            array.ndim != len(self.shape)
            or any(want is not None and want != got for want, got in zip(self.shape, array.shape, strict=True))
        ):
            raise DataError(f"expected an array of shape {self.shape}, got shape {array.shape}")
        return array

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        return sa.LargeBinary()

    def to_sql(self, value: Any) -> Any:
        if value is None:
            return None
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue()

    def from_sql(self, value: Any) -> Any:
        return None if value is None else np.load(io.BytesIO(bytes(value)), allow_pickle=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "Array", "dtype": self.dtype.name, "shape": list(self.shape) if self.shape else None}


class MediaType(ColumnType):
    """A media object referenced by URL (`https://`, `s3://`, `gs://`, `az://`, `file://`, local path)."""

    is_media = True

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Path | os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise DataError(
                f"expected {self._article()} URL or local path, got {type(value).__name__}: {_short(value)}"
            )
        try:
            return normalize_url(value)
        except UnsupportedScheme as exc:
            raise UnsupportedScheme(str(exc)) from exc

    def validate_many(self, values: list[Any]) -> list[Any] | None:
        if not set(map(type, values)) <= {str, _NONE}:
            return None
        try:
            return normalize_urls(values)
        except UnsupportedScheme:
            return None  # validate() words the error for its row

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        return sa.Text()


class ImageType(MediaType):
    name = "Image"


class VideoType(MediaType):
    name = "Video"


class AudioType(MediaType):
    name = "Audio"


class DocumentType(MediaType):
    name = "Document"


String = StringType()
Int = IntType()
Float = FloatType()
Bool = BoolType()
Timestamp = TimestampType()
Json = JsonType()
Image = ImageType()
Video = VideoType()
Audio = AudioType()
Document = DocumentType()


def Array(dtype: ColumnType, shape: Sequence[int | None] | None = None) -> ArrayType:
    """An array column type, e.g. `Array(Float, (512,))` for an embedding.

    Examples:
        >>> Array(Float, (3,))
        Array(Float, (3,))
    """
    return ArrayType(dtype, shape)


_SIMPLE: dict[str, ColumnType] = {
    t.name: t for t in (String, Int, Float, Bool, Timestamp, Json, Image, Video, Audio, Document)
}


def type_from_dict(data: dict[str, Any]) -> ColumnType:
    """Rebuild a type from :meth:`ColumnType.to_dict` output."""
    if data["type"] == "Array":
        shape = data.get("shape")
        return ArrayType(_SIMPLE[data["dtype"]], tuple(shape) if shape is not None else None)
    return _SIMPLE[data["type"]]


def as_column_type(value: Any) -> ColumnType:
    """Accept a type value, a Python type (`int`, `str`, ...) or a type class; return the type.

    Raises:
        DataError: `value` names no column type.

    Examples:
        >>> as_column_type(int)
        Int
    """
    if isinstance(value, ColumnType):
        return value
    if isinstance(value, type) and issubclass(value, ColumnType) and value.name in _SIMPLE:
        return _SIMPLE[value.name]
    python_map: dict[Any, ColumnType] = {
        str: String,
        int: Int,
        float: Float,
        bool: Bool,
        dt.datetime: Timestamp,
        dict: Json,
        list: Json,
    }
    if value in python_map:
        return python_map[value]
    raise DataError(f"not a column type: {value!r} (use mt.String, mt.Int, mt.Image, ...)")


def infer_type(value: Any) -> ColumnType | None:
    """The column type a Python value naturally has (for literals), or None if unknown."""
    if isinstance(value, bool | np.bool_):
        return Bool
    if isinstance(value, int | np.integer):
        return Int
    if isinstance(value, float | np.floating):
        return Float
    if isinstance(value, str):
        return String
    if isinstance(value, dt.datetime):
        return Timestamp
    if isinstance(value, dict | list):
        return Json
    if isinstance(value, np.ndarray):
        return {"i": ArrayType(Int), "f": ArrayType(Float), "b": ArrayType(Bool)}.get(value.dtype.kind)
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
