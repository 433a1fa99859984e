"""Warming the file cache from a table: `t.prefetch(t.video, where=t.label == 'cat')`."""

from __future__ import annotations

from typing import Any

from mediatable.errors import ExprError
from mediatable.exprs import ColumnRef
from mediatable.io.cache import Warmed
from mediatable.table.base import TableBase


class Prefetch(TableBase):
    """:meth:`prefetch` of a :class:`~mediatable.table.Table`."""

    def prefetch(self, *columns: ColumnRef, where: Any = None, progress: bool | None = None) -> Warmed:
        """Download the files of media columns into the cache ahead of a job, within its budget.

        Every stored URL of `columns` (rows matching `where`, if given) is fetched whole, in row
        order, as many as `cache_size` holds together; a later query or computed column over them
        then reads local files. What does not fit is not downloaded and is reported, and so are
        URLs that cannot be read. Shows a progress bar of objects and bytes.

        Args:
            columns: media columns of this table (e.g. `t.image`).
            where: a filter, as in :meth:`where`.
            progress: show the progress bar (default per the `progress` setting).

        Returns:
            A :class:`~mediatable.io.cache.Warmed` report (`print()` it).

        Raises:
            ExprError: an argument is not a media column of this table.

        Examples:
            >>> import mediatable as mt, tempfile, pathlib
            >>> folder = pathlib.Path(tempfile.mkdtemp())
            >>> _ = mt.init(home=folder / "home", quiet=True)
            >>> t = mt.create_table('clips', {'video': mt.Video})
            Created table 'clips'.
            >>> _ = (folder / "a.mp4").write_bytes(b"not really a video")
            >>> _ = t.insert([{'video': str(folder / "a.mp4")}], quiet=True)
            >>> print(t.prefetch(t.video))
            0 files in the cache (0 B, 0 B downloaded now, 0 already there); 1 file local (read in place)
        """
        if not columns:
            raise ExprError("prefetch() needs at least one media column, e.g. t.prefetch(t.image)")
        outputs = {}
        for position, column in enumerate(columns):
            if not isinstance(column, ColumnRef) or not column.col_type.is_media:
                raise ExprError(f"prefetch() takes media columns of {self.path!r}, not {column!r}")
            outputs[f"url{position}"] = self[column.column.name].fileurl
        query = self._query() if where is None else self._query().where(where)
        urls = (
            row[name]
            for batch in query.select(**outputs).iter_batches(batch_size=1000)
            for row in batch
            for name in outputs
            if row[name] is not None
        )
        return self._session.cache.warm(urls, progress=progress)
