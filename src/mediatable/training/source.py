"""The rows of a query, in a form other processes can read: what DataLoader workers are handed.

A :class:`Session` (catalog engine, cache index, transfer threads) must not cross a process
boundary: pickled for `spawn`, it would need live connections; inherited by `fork`, its threads
are gone. A :class:`RowSnapshot` carries what it takes to rebuild one instead — the settings (home,
catalog URL, cache size, credentials' config), the table's path and id, the outputs as stored
expressions (:mod:`mediatable.exprs.serialize`, as computed columns are kept) and a snapshot of the
matching row ids in the query's order — and opens its own session in the process that reads.

Lifecycle: made in the process that builds the dataset, from a session and a query; there it
reads through that session. Anywhere else (a worker, after pickling or fork) the first read opens
a session of that process, kept until the source is garbage collected or :meth:`RowSnapshot.close`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mediatable import types as ts
from mediatable.catalog.model import Column, TableMeta
from mediatable.config import Settings
from mediatable.errors import ColumnNotFound, ExprError, TableNotFound
from mediatable.exec.ahead import ahead
from mediatable.exec.query import QuerySpec, matching_rowids
from mediatable.exec.rowsets import RowValues, rows_by_id
from mediatable.exprs import Expr, serialize
from mediatable.session import Session


@dataclasses.dataclass(frozen=True)
class QueryRecipe:
    """A query's outputs and table, by name and stored expression, to be rebuilt in another process.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> session = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('nums', {'n': mt.Int})
        Created table 'nums'.
        >>> recipe = QueryRecipe.of(session, t.select(t.n, double=t.n * 2)._spec)
        >>> [(name, repr(expr)) for name, expr in recipe.outputs(recipe.table(session))]
        [('n', 'nums.n'), ('double', '(nums.n * 2)')]
    """

    settings: Settings
    table_path: str
    table_id: int
    at_version: int | None
    names: tuple[str, ...]
    exprs: tuple[dict[str, Any], ...]
    col_types: tuple[ts.ColumnType, ...]

    @classmethod
    def of(cls, session: Session, spec: QuerySpec) -> QueryRecipe:
        """The recipe of `spec`'s outputs.

        Raises:
            ExprError: an output cannot be stored (the message names it).
        """
        outputs = spec.outputs()
        exprs = []
        for name, expr in outputs:
            try:
                exprs.append(serialize.to_dict(expr))
            except ExprError as exc:
                raise ExprError(f"output {name!r} cannot be sent to other processes: {exc}") from exc
        return cls(
            settings=dataclasses.replace(session.settings, progress=False),
            table_path=spec.meta.path,
            table_id=spec.meta.id,
            at_version=spec.meta.at_version,
            names=tuple(name for name, _ in outputs),
            exprs=tuple(exprs),
            col_types=tuple(expr.col_type for _, expr in outputs),
        )

    def table(self, session: Session) -> TableMeta:
        """The table as the catalog describes it now (found by id, wherever it moved), or the version read.

        Raises:
            TableNotFound: it was dropped.
        """
        catalog = session.catalog
        if self.at_version is None:
            try:
                return catalog.get_table_by_id(self.table_id)
            except TableNotFound as exc:
                raise TableNotFound(
                    f"table {self.table_path!r} was dropped or replaced after the dataset was made"
                ) from exc
        meta = catalog.get_table(self.table_path)  # a snapshot's path loads its version
        if meta.at_version != self.at_version:
            meta = catalog.get_table(self.table_path, version=self.at_version)
        if meta.id != self.table_id:
            raise TableNotFound(f"{self.table_path!r} is another table than when the dataset was made")
        return meta

    def outputs(self, meta: TableMeta) -> list[tuple[str, Expr]]:
        """The outputs rebuilt over `meta`'s columns.

        Raises:
            ColumnNotFound: a column they read was dropped.
        """

        def column(name: str) -> Column:
            found = meta.columns.get(name)
            if found is None:
                raise ColumnNotFound(f"column {name!r} of {meta.path!r} was dropped after the dataset was made")
            return found

        return [(name, serialize.from_dict(d, column)) for name, d in zip(self.names, self.exprs, strict=True)]


class ProcessSessions:
    """The session to read with in the current process: the builder's in its own process, else
    one opened from `settings` on first use (kept until this object is garbage collected or
    :meth:`close`). Pickling carries only the settings: sessions never cross processes.

    Examples:
        >>> import mediatable as mt, pickle, tempfile
        >>> session = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> sessions = ProcessSessions(session, session.settings)
        >>> sessions.get() is session, pickle.loads(pickle.dumps(sessions))._local is None
        (True, True)
    """

    def __init__(self, session: Session, settings: Settings) -> None:
        self.settings = settings
        self._local: tuple[int, Session] | None = (os.getpid(), session)
        self._opened: tuple[int, Session, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "_local": None, "_opened": None}

    def get(self) -> Session:
        """The session of this process."""
        pid = os.getpid()
        if self._local is not None and self._local[0] == pid:
            return self._local[1]
        if self._opened is None or self._opened[0] != pid:
            session = Session(self.settings)
            self._opened = (pid, session, weakref.finalize(self, session.close))
        return self._opened[1]

    def close(self) -> None:
        """Close the session this process opened (if any)."""
        if self._opened is not None and self._opened[0] == os.getpid():
            self._opened[2]()
        self._opened = None


class RowSnapshot:
    """A snapshot of a query's rows (ids, in order) and the way to read them from any process.

    Args:
        session: the session building it (used for reads in this process only).
        spec: the query; its filters and sort keys run now, once, to fix the rows and their order.
        on_error: what a failed filter or sort key does now: 'abort' raises, 'ignore' leaves the row out.

    Raises:
        ExprError: a grouped query (its rows have no ids), or an output that cannot be stored.
    """

    def __init__(self, session: Session, spec: QuerySpec, on_error: str = "abort") -> None:
        self.rowids = np.fromiter(matching_rowids(session, spec, on_error), dtype=np.int64)
        self.recipe = QueryRecipe.of(session, spec)
        self.sessions = ProcessSessions(session, self.recipe.settings)

    @property
    def names(self) -> tuple[str, ...]:
        """The output names."""
        return self.recipe.names

    @property
    def col_types(self) -> tuple[ts.ColumnType, ...]:
        """The output types."""
        return self.recipe.col_types

    @property
    def table_path(self) -> str:
        """The table's path (for messages)."""
        return self.recipe.table_path

    def __len__(self) -> int:
        return len(self.rowids)

    def session(self) -> Session:
        """The session of this process (see :class:`ProcessSessions`)."""
        return self.sessions.get()

    def read(
        self, rowids: Sequence[int], batch_size: int = 64, *, check_media: bool = True, prefetch: bool = False
    ) -> Iterator[list[RowValues]]:
        """The rows `rowids` (ids from :attr:`rowids`), in that order, in batches (see `rows_by_id`).

        The batches' files stay in the cache until the iteration ends (one lease for all of it).

        Args:
            rowids: ids from :attr:`rowids`.
            batch_size: rows per SQL query and per pipeline run.
            check_media: False leaves images unopened, for readers that decode them next and report
                a file that is not one themselves.
            prefetch: fetch the next batch (its files) on a background thread while this one is used.

        Raises:
            TableNotFound, ColumnNotFound: the table or a column was dropped since the snapshot.
        """
        session = self.session()
        meta = self.recipe.table(session)
        outputs = self.recipe.outputs(meta)
        with session.cache_lease() as lease:
            batches = rows_by_id(session, meta, outputs, rowids, batch_size, check_media=check_media, lease=lease)
            with contextlib.closing(ahead(batches) if prefetch else batches) as reading:
                yield from reading

    def close(self) -> None:
        """Close the session this process opened for reading (if any)."""
        self.sessions.close()
