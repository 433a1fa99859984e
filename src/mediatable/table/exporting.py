"""Results leaving mediatable: PyTorch datasets, Parquet files, COCO detection datasets.

:class:`QueryExports` gives :class:`~mediatable.table.Query` its `to_pytorch_dataset`,
`to_pytorch_map_dataset`, `to_parquet` and `to_coco`; :class:`TableExports` gives them to tables
(over all rows). The work is done by :mod:`mediatable.training` (datasets),
:mod:`~mediatable.table.parquet` and :mod:`~mediatable.table.coco`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mediatable.catalog.catalog import check_choice
from mediatable.errors import ComputeError
from mediatable.exec import query as run
from mediatable.exec.ahead import ahead
from mediatable.exec.failures import ON_ERROR
from mediatable.exec.query import QuerySpec
from mediatable.exprs import CellError
from mediatable.session import Session
from mediatable.table.coco import Categories, CocoWritten, write_coco
from mediatable.table.parquet import ROW_GROUP_BYTES, ParquetWritten, write_parquet
from mediatable.training import pytorch_module
from mediatable.training.results import QueryResults, query_rows
from mediatable.training.source import RowSnapshot

if TYPE_CHECKING:
    from mediatable.table.query import Query
    from mediatable.training.pytorch import TableIterableDataset, TableMapDataset


class QueryExports:
    """The export methods of :class:`~mediatable.table.Query`."""

    _session: Session
    _spec: QuerySpec

    if TYPE_CHECKING:

        def select(self, *exprs: Any, **named: Any) -> Query: ...  # Query's own

    def to_pytorch_dataset(
        self,
        image_format: str = "pt",
        transform: Callable[[dict[str, Any]], Any] | None = None,
        *,
        on_error: str = "raise",
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> TableIterableDataset:
        """The query's rows as a PyTorch `IterableDataset` of dicts (output name -> value), for a `DataLoader`.

        Rows stream in the query's order; each worker of a DataLoader (`num_workers` 0 to N) and
        each distributed rank reads its own share, each row exactly once per epoch. Workers open
        their own session from the settings and read through the machine's shared file cache,
        fetching the files of the next rows while the current ones decode: a URL is downloaded
        once, whichever workers ask, and a second epoch downloads nothing. The rows are those that
        match when the dataset is made (filters and sort keys run now, once). A query that combines
        rows (a join, `group_by`, `distinct`, aggregates) runs now, whole: its rows are held in
        memory, in this process and in each worker (media a join selects as is stays a URL, fetched
        by the workers; `len()` and the splits count the result's rows). Requires
        `pip install 'mediatable[torch]'`. Start workers with `multiprocessing_context='forkserver'`
        (or `'spawn'`) once this process has fetched files: a worker forked after that raises.

        Args:
            image_format: `'pt'` (CHW uint8 tensor, as torchvision's `decode_image`; scale the batch with
                `.float() / 255`), `'np'` (HWC uint8 array) or `'pil'`.
                Ints, floats, bools, timestamps, arrays and numeric JSON become tensors; strings stay
                strings; video, audio and document cells are local file paths.
            transform: called with each sample dict in the worker; its result is what is yielded.
            on_error: `'raise'`: a failed value (download, decode, computed value — also one stored as
                failed) raises :class:`~mediatable.ComputeError` naming row, column, URL and cause;
                `'skip'`: the row is left out, counted, and the epoch ends with a logged summary.
            batch_size: rows are dealt to workers in runs of this many: pass the DataLoader's
                `batch_size` and its batches hold consecutive rows and arrive in the query's order.
            shuffle: a new order every epoch, the same for all workers and ranks, from `seed` and
                the epoch (with several ranks call `set_epoch(epoch)` each epoch, as with `DistributedSampler`).
            seed: the shuffle's seed.
            rank, world_size: this process's share; default `torch.distributed`'s when initialized, else 0 of 1.

        Returns:
            A :class:`~mediatable.training.pytorch.TableIterableDataset`; `len()` is this rank's rows.

        Raises:
            MissingDependency: PyTorch is not installed.
            ExprError: an output of a one-table query that cannot be sent to worker processes.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('points', {'x': mt.Float, 'label': mt.Int})
            Created table 'points'.
            >>> _ = t.insert([{'x': 0.5, 'label': 1}, {'x': 2.0, 'label': 0}], quiet=True)
            >>> ds = t.where(t.x > 1).to_pytorch_dataset()
            >>> len(ds), list(ds)
            (1, [{'x': tensor(2., dtype=torch.float64), 'label': tensor(0)}])
        """
        datasets = pytorch_module()  # before the query runs: a missing extra is the first thing said
        source = query_rows(self._session, self._spec, "abort" if on_error == "raise" else "ignore")
        return datasets.TableIterableDataset(
            source,
            image_format=image_format,
            transform=transform,
            on_error=on_error,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    def to_pytorch_map_dataset(
        self,
        image_format: str = "pt",
        transform: Callable[[dict[str, Any]], Any] | None = None,
        *,
        on_error: str = "raise",
    ) -> TableMapDataset:
        """The query's rows as a map-style PyTorch `Dataset`: `ds[i]` is row `i` in the query's order.

        For samplers: `DataLoader(ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))`
        draws a new order every epoch from its seed, `DistributedSampler(ds, seed=0)` splits it
        across ranks. Each batch is fetched at once (its files download together, through the
        shared file cache), in the worker that asks. Same arguments as :meth:`to_pytorch_dataset`;
        with `on_error='skip'` a failed row is left out of its batch (which is then shorter) and logged.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('words', {'word': mt.String})
            Created table 'words'.
            >>> _ = t.insert([{'word': 'a'}, {'word': 'b'}, {'word': 'c'}], quiet=True)
            >>> ds = t.order_by(t.word, asc=False).to_pytorch_map_dataset()
            >>> len(ds), ds[0], ds.__getitems__([2, 1])
            (3, {'word': 'c'}, [{'word': 'a'}, {'word': 'b'}])
        """
        datasets = pytorch_module()
        source = query_rows(self._session, self._spec, "abort" if on_error == "raise" else "ignore")
        return datasets.TableMapDataset(source, image_format=image_format, transform=transform, on_error=on_error)

    def to_parquet(
        self,
        path_or_url: str | os.PathLike[str],
        *,
        media: str = "url",
        row_group_size: int = 100_000,
        row_group_bytes: int = ROW_GROUP_BYTES,
        on_error: str = "abort",
    ) -> ParquetWritten:
        """Write the result to a Parquet file: a local path, or `s3://`, `gs://`, `az://` (any Azure spelling).

        Columns get the types of :meth:`to_arrow`; media columns hold the stored URL (`media='url'`)
        or the file's bytes (`media='bytes'`, fetched through the cache; images the query computes
        are encoded as PNG). Rows stream from the query into row groups of at most `row_group_size`
        rows and about `row_group_bytes`, so memory stays bounded; the file appears only once complete
        (an S3 or Azure object streams up as a multipart upload, published when complete and aborted
        on failure; a GCS object is staged in a local file, then uploaded; with the reading credentials).

        Args:
            path_or_url: where to write (parent folders of a local path are created).
            media: `'url'` or `'bytes'`.
            row_group_size: most rows per row group.
            row_group_bytes: a row group ends once its data reaches about this many bytes.
            on_error: as for :meth:`collect`.

        Returns:
            A :class:`~mediatable.table.parquet.ParquetWritten` report (`print()` it).

        Examples:
            >>> import mediatable as mt, tempfile, os, pyarrow.parquet as pq
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('films', {'title': mt.String, 'year': mt.Int})
            Created table 'films'.
            >>> _ = t.insert([{'title': 'Alien', 'year': 1979}, {'title': 'Heat', 'year': 1995}], quiet=True)
            >>> path = os.path.join(tempfile.mkdtemp(), 'films.parquet')
            >>> print(t.select(t.title, t.year).to_parquet(path))  # doctest: +ELLIPSIS
            2 rows written to file:///.../films.parquet (1 row group, ...)
            >>> pq.read_table(path).to_pylist()[1]
            {'title': 'Heat', 'year': 1995}
        """
        check_choice("on_error", on_error, ON_ERROR)
        outputs = self._spec.outputs()
        # One lease for the whole export: the batch fetched ahead keeps its files until it is written.
        with self._session.cache_lease() as lease:
            batches = run.run_batches(self._session, self._spec, on_error=on_error, lease=lease)
            return write_parquet(
                self._session,
                [name for name, _ in outputs],
                [expr.col_type for _, expr in outputs],
                ahead(batches),
                path_or_url,
                media=media,
                row_group_size=row_group_size,
                row_group_bytes=row_group_bytes,
            )

    def to_coco(
        self,
        path: str | os.PathLike[str],
        *,
        images: Any,
        annotations: Any,
        media: str = "copy",
        categories: Categories = None,
        on_error: str = "abort",
    ) -> CocoWritten:
        """Write the rows as a COCO detection dataset: `path` (the JSON) and, with `media='copy'`, `images/` beside it.

        Each row is one image (`images`: an Image column or image expression) with its objects
        (`annotations`: a JSON column or expression; the shapes accepted are in
        :mod:`mediatable.table.coco`: lists of `{'bbox' | 'box', 'category' | 'label', ...}` or
        `{'boxes', 'labels', 'scores'}`). The JSON has `images` (id, file_name, width, height),
        `annotations` (id, image_id, category_id, bbox `[x, y, w, h]`, area, iscrowd, score when
        given) and `categories` (ids from 1; names sorted, unless `categories` names them: a list
        of names, ids from 1, or an `{id: name}` dict). `media='copy'` copies each file, byte for
        byte, to `images/` (`file_name` relative to it: `CocoDetection(root='images/', annFile=path)`);
        `media='url'` references them (`file_name` the local path or URL, `coco_url` the URL).

        Args:
            path: the JSON file to write (its folder is created).
            images, annotations: expressions over the query's table.
            media: `'copy'` or `'url'`.
            categories: category names or ids -> names; default from the data.
            on_error: `'abort'`: a row whose image or annotations failed raises (naming row and cause);
                `'ignore'`: such rows are left out and counted in the report.

        Returns:
            A :class:`~mediatable.table.coco.CocoWritten` report (`print()` it).

        Examples:
            >>> import mediatable as mt, tempfile, os, json, pathlib, PIL.Image
            >>> folder = tempfile.mkdtemp()
            >>> _ = mt.init(home=os.path.join(folder, 'home'), quiet=True)
            >>> PIL.Image.new('RGB', (64, 48)).save(os.path.join(folder, 'a.png'))
            >>> t = mt.create_table('shots', {'image': mt.Image, 'objects': mt.Json})
            Created table 'shots'.
            >>> _ = t.insert([{'image': os.path.join(folder, 'a.png'),
            ...                'objects': [{'box': [4, 4, 20, 12], 'label': 'cat'}]}], quiet=True)
            >>> print(t.to_coco(os.path.join(folder, 'coco', 'data.json'), images=t.image, annotations=t.objects))
            ... # doctest: +ELLIPSIS
            1 image, 1 annotation, 1 category written to .../coco/data.json
            >>> json.loads(pathlib.Path(folder, 'coco', 'data.json').read_text())['annotations'][0]['bbox']
            [4, 4, 16, 8]
        """
        check_choice("on_error", on_error, ON_ERROR)
        query = self.select(image=images, annotations=annotations)
        source = query_rows(query._session, query._spec, on_error)
        rows = _coco_rows(source, on_error)
        return write_coco(rows, path, media=media, categories=categories, description=f"{source.table_path!r}")


def _coco_rows(source: RowSnapshot | QueryResults, on_error: str) -> Iterator[tuple[int | None, Any, Any]]:
    """(rowid, image, annotations); a row with a failed value raises, or has no image (left out)."""
    for batch in source.read(source.rowids, 256, prefetch=True):
        for rowid, values in batch:
            failed = values is None or any(isinstance(v, CellError) for v in values)
            if not failed:
                yield rowid, values[0], values[1]  # type: ignore[index]
                continue
            if on_error == "abort":
                error = next((v for v in values or () if isinstance(v, CellError)), None)
                cause = f"{error.errortype}: {error.errormsg}" if error else "the row was deleted meanwhile"
                raise ComputeError(
                    f"to_coco() of {source.table_path!r}: row {rowid} failed: {cause} "
                    "(pass on_error='ignore' to leave such rows out)",
                    table=source.table_path,
                    row=rowid,
                ) from (error.exc if error else None)
            yield rowid, None, None


class TableExports:
    """The export methods of :class:`~mediatable.table.Table` (over all its rows)."""

    if TYPE_CHECKING:

        def _query(self) -> Query: ...  # TableBase's own

    def to_pytorch_dataset(self, image_format: str = "pt", transform: Any = None, **options: Any) -> Any:
        """All rows as a PyTorch `IterableDataset`. See :meth:`Query.to_pytorch_dataset`."""
        return self._query().to_pytorch_dataset(image_format, transform, **options)

    def to_pytorch_map_dataset(self, image_format: str = "pt", transform: Any = None, **options: Any) -> Any:
        """All rows as a map-style PyTorch `Dataset`. See :meth:`Query.to_pytorch_map_dataset`."""
        return self._query().to_pytorch_map_dataset(image_format, transform, **options)

    def to_parquet(self, path_or_url: str | os.PathLike[str], **options: Any) -> ParquetWritten:
        """All rows to a Parquet file. See :meth:`Query.to_parquet`."""
        return self._query().to_parquet(path_or_url, **options)

    def to_coco(self, path: str | os.PathLike[str], *, images: Any, annotations: Any, **options: Any) -> CocoWritten:
        """All rows as a COCO detection dataset. See :meth:`Query.to_coco`."""
        return self._query().to_coco(path, images=images, annotations=annotations, **options)
