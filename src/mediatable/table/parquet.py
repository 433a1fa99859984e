"""Query results to a Parquet file, on local disk or in a bucket, streamed in row groups.

Columns convert as in `to_arrow()` (:mod:`~mediatable.table.convert`): int64, float64, bool, string,
timestamp[us, UTC], JSON as text, arrays as (nested) lists; media columns as their stored URL
(`media='url'`) or the file's bytes (`media='bytes'`, binary; images computed by the query are
encoded as PNG). Rows arrive batch by batch from the query and are written as row groups of at most
`row_group_size` rows and about `row_group_bytes` (64 MiB), so memory stays bounded whatever the
result's size.

The file appears only when complete: a local file is written next to its target and renamed; an
S3 or Azure object is uploaded while it is written (obstore's writer: a multipart upload, a few
8 MiB parts in memory; see :mod:`~mediatable.io.objects.streams`) and published when the footer
is written, or aborted if the export fails; a GCS object is written to a temporary local file,
then uploaded (GCS uploads go to a signed single PUT). All with the same credentials as reading.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq

from mediatable import types as ts
from mediatable.catalog.catalog import check_choice
from mediatable.errors import DataError, InvalidArgument
from mediatable.exec.media_cells import MediaCell
from mediatable.exec.status import plural
from mediatable.exprs import CellError
from mediatable.io.cache.info import human_size
from mediatable.io.urls import MediaUrl, parse_url, redact_url
from mediatable.session import Session
from mediatable.table import convert

MEDIA_AS = ("url", "bytes")
PARQUET_TYPE = "application/vnd.apache.parquet"
ROW_GROUP_BYTES = 64 * 1024**2
_MAX_BINARY = 2**31 - 1  # Arrow binary offsets are 32-bit


@dataclasses.dataclass(frozen=True)
class ParquetWritten:
    """What :meth:`Query.to_parquet <mediatable.table.Query.to_parquet>` wrote.

    Examples:
        >>> print(ParquetWritten("s3://bucket/out.parquet?sig=1", rows=1200, row_groups=2, size=3 * 1024**2))
        1,200 rows written to s3://bucket/out.parquet?… (2 row groups, 3.0 MiB)
        >>> print(ParquetWritten("/tmp/one.parquet", rows=1, row_groups=1, size=500))
        1 row written to /tmp/one.parquet (1 row group, 500 B)
    """

    url: str
    rows: int
    row_groups: int
    size: int

    def __str__(self) -> str:
        rows = f"{self.rows:,} row" + ("" if self.rows == 1 else "s")
        groups = plural(self.row_groups, "row group")
        return f"{rows} written to {redact_url(self.url)} ({groups}, {human_size(self.size)})"


def target_url(target: str | os.PathLike[str]) -> MediaUrl:
    """Where a file will be written: a local path, `file://`, `s3://`, `gs://` or Azure URL.

    Raises:
        InvalidArgument: a web server (read-only) or a bucket URL without an object key.

    Examples:
        >>> target_url("s3://bucket/exports/a.parquet").key
        'exports/a.parquet'
    """
    url = parse_url(target)
    if url.kind == "http":
        raise InvalidArgument(
            f"cannot write to {redact_url(url.url)}: web servers are read-only; use s3://, gs://, az://"
        )
    if url.kind != "file" and (not url.key or url.key.endswith("/")):
        raise InvalidArgument(f"{redact_url(url.url)} names no object: give the file's name, e.g. .../results.parquet")
    return url


def write_parquet(
    session: Session,
    names: Sequence[str],
    col_types: Sequence[ts.ColumnType],
    batches: Iterable[Sequence[Sequence[Any]]],
    target: str | os.PathLike[str],
    *,
    media: str = "url",
    row_group_size: int = 100_000,
    row_group_bytes: int = ROW_GROUP_BYTES,
) -> ParquetWritten:
    """Write rows (lists of values, media as :class:`MediaCell`) to a Parquet file at `target`.

    Raises:
        InvalidArgument: bad `media`, `row_group_size` or target.
        DataError: a column's values do not convert (names the column).
        MediaError: the upload failed.
    """
    check_choice("media", media, MEDIA_AS)
    for name, value in (("row_group_size", row_group_size), ("row_group_bytes", row_group_bytes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidArgument(f"{name} must be a positive int, not {value!r}")
    url = target_url(target)
    local = url.local_path
    upload = None if local is not None else session.stores.open_upload(url, content_type=PARQUET_TYPE)
    if upload is not None:
        with upload:  # published when the file is complete; an exception aborts the upload
            rows, groups = _write(upload, names, col_types, batches, media, row_group_size, row_group_bytes)
        return ParquetWritten(url.url, rows, groups, upload.tell())
    with _staged(local, session.settings.home) as staging:
        rows, groups = _write(staging, names, col_types, batches, media, row_group_size, row_group_bytes)
        size = staging.stat().st_size
        if local is not None:
            os.replace(staging, local)
        else:
            session.stores.put_file(url, staging, content_type=PARQUET_TYPE)
    return ParquetWritten(url.url, rows, groups, size)


@contextlib.contextmanager
def _staged(local: Path | None, home: Path) -> Iterator[Path]:
    """A temporary file next to a local target (renamed over it when done), else under the home."""
    folder = local.parent if local is not None else home
    folder.mkdir(parents=True, exist_ok=True)
    name = f".{local.name if local is not None else 'export'}.{uuid.uuid4().hex[:12]}.part"
    staging = folder / name
    try:
        yield staging
    finally:
        staging.unlink(missing_ok=True)


def _write(
    path: Path | BinaryIO,
    names: Sequence[str],
    col_types: Sequence[ts.ColumnType],
    batches: Iterable[Sequence[Sequence[Any]]],
    media: str,
    row_group_size: int,
    row_group_bytes: int,
) -> tuple[int, int]:
    writer: pq.ParquetWriter | None = None
    # File bytes do not repeat: dictionary-encoding them would only hold a second copy of each row group.
    dictionary = [n for n, t in zip(names, col_types, strict=True) if not (t.is_media and media == "bytes")]
    pending: list[pa.Table] = []
    pending_rows = pending_bytes = rows = groups = 0

    def write(table: pa.Table) -> None:
        nonlocal writer, groups
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, use_dictionary=dictionary)
        writer.write_table(_cast(table, writer.schema), row_group_size=len(table))
        groups += 1

    try:
        for batch in batches:
            for piece in _pieces(batch, col_types, media, row_group_bytes):
                table = _table(piece, names, col_types, media)
                pending.append(table)
                rows += len(table)
                pending_rows += len(table)
                pending_bytes += table.nbytes
                while pending_rows >= row_group_size or pending_bytes >= row_group_bytes:
                    combined = pa.concat_tables(pending, promote_options="default")
                    write(combined.slice(0, row_group_size))
                    rest = combined.slice(row_group_size)
                    pending, pending_rows, pending_bytes = ([rest] if len(rest) else []), len(rest), rest.nbytes
        if pending:
            write(pa.concat_tables(pending, promote_options="default"))
        if writer is None:  # no rows: still a file with the columns' types
            writer = pq.ParquetWriter(path, _table([], names, col_types, media).schema, use_dictionary=dictionary)
    finally:
        if writer is not None:
            writer.close()
    return rows, groups


def _pieces(
    batch: Sequence[Sequence[Any]], col_types: Sequence[ts.ColumnType], media: str, limit: int
) -> Iterator[Sequence[Any]]:
    """The batch cut so that no piece holds more than `limit` bytes of media (plus one file)."""
    media_columns = [i for i, t in enumerate(col_types) if t.is_media]
    if media == "url" or not media_columns:
        yield batch
        return
    start, size = 0, 0
    for end, row in enumerate(batch):
        size += sum(os.path.getsize(row[i].path) for i in media_columns if isinstance(row[i], MediaCell))
        if size >= limit:
            yield batch[start : end + 1]
            start, size = end + 1, 0
    if start < len(batch):
        yield batch[start:]


def _table(
    rows: Sequence[Sequence[Any]], names: Sequence[str], col_types: Sequence[ts.ColumnType], media: str
) -> pa.Table:
    arrays = []
    for i, (name, col_type) in enumerate(zip(names, col_types, strict=True)):
        values = [None if isinstance(row[i], CellError) else row[i] for row in rows]  # failed: null (on_error='ignore')
        try:
            if col_type.is_media and media == "bytes":
                arrays.append(pa.array([_media_bytes(v, name) for v in values], type=pa.binary()))
            elif isinstance(col_type, ts.ArrayType) and col_type.shape is not None:
                arrays.append(convert.arrow_array(values, col_type, "url", name).cast(_array_type(col_type)))
            else:
                arrays.append(convert.arrow_array(values, col_type, "url", name))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidArgument):
                raise
            raise DataError(f"column {name!r} cannot be written to Parquet: {exc}") from exc
    return pa.Table.from_arrays(arrays, names=list(names))


def _array_type(col_type: ts.ArrayType) -> pa.DataType:
    """Nested lists, one level per dimension of the array's shape.

    Examples:
        >>> _array_type(ts.ArrayType(ts.Float, (2, None)))
        ListType(list<item: list<item: double>>)
    """
    arrow: pa.DataType = {"Int": pa.int64(), "Float": pa.float64(), "Bool": pa.bool_()}[col_type.dtype.name]
    for _ in col_type.shape or ():
        arrow = pa.list_(arrow)
    return arrow


def _media_bytes(value: Any, name: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, MediaCell):
        data = Path(value.path).read_bytes()
    elif isinstance(value, PIL.Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        raise InvalidArgument(f"column {name!r} holds {type(value).__name__}, not media that can be written as bytes")
    if len(data) > _MAX_BINARY:
        raise DataError(
            f"column {name!r}: a file of {human_size(len(data))} is too large for a Parquet cell; use media='url'"
        )
    return data


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.equals(schema):
        return table
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        changed = [f.name for f, g in zip(table.schema, schema, strict=True) if f.type != g.type]
        raise DataError(
            f"column(s) {', '.join(map(repr, changed))} changed type between row groups "
            f"({exc}); an Array column without a fixed shape must keep the same number of dimensions"
        ) from exc
