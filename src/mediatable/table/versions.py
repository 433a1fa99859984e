"""Versions of a table handle: `history()`, `revert()` and `get_version()` (see :mod:`mediatable.catalog.versions`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mediatable.table.base import TableBase


class Versions(TableBase):
    """Version operations of a :class:`~mediatable.table.Table`."""

    @property
    def version(self) -> int:
        """The version this handle reads: the current one, or the earlier one it was opened at."""
        return (
            self._meta.at_version if self._meta.at_version is not None else self._session.catalog.version_of(self._meta)
        )

    def history(self) -> pd.DataFrame:
        """The versions that changed this table, newest first: version, time, change, summary, row counts.

        A view's history includes the changes of its base table that reached it.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'name': mt.String})
            Created table 'pets'.
            >>> _ = t.insert([{'name': 'Rex'}], quiet=True)
            >>> t.history()[['version', 'change', 'inserted']].to_dict('records')
            [{'version': 1, 'change': 'insert', 'inserted': 1}, {'version': 0, 'change': 'create', 'inserted': 0}]
        """
        rows = self._session.catalog.history(self._meta)
        columns = ["version", "created_at", "change", "summary", "inserted", "updated", "deleted"]
        return pd.DataFrame(rows, columns=columns)

    def revert(self) -> None:
        """Undo this table's last change (rows and schema, in its views too).

        Refused with a clear error when the last change of the table's family was made on another
        member (a view, or the base table), when it is the table's creation, or while a snapshot
        freezes that version.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'name': mt.String})
            Created table 'pets'.
            >>> _ = t.insert([{'name': 'Rex'}], quiet=True)
            >>> t.revert()
            >>> t.count()
            0
        """
        self._check_writable()
        self._set_meta(self._session.catalog.revert(self._current_meta()))

    def get_version(self, version: int) -> Any:
        """A read-only handle on this table as it was at `version` (also `mt.get_table('path:N')`).

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'name': mt.String})
            Created table 'pets'.
            >>> _ = t.insert([{'name': 'Rex'}], quiet=True)
            >>> _ = t.insert([{'name': 'Tom'}], quiet=True)
            >>> t.get_version(1).select(t.name).collect()['name']
            ['Rex']
        """
        meta = self._session.catalog.get_table(self._meta.path, version=version)
        return type(self)(self._session, meta)
