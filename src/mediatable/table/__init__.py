"""The user-facing handles: :class:`Table` (a table or view), :class:`Query` and :class:`ResultSet`.

This layer sits above execution (:mod:`mediatable.exec`), which sits above the catalog, expressions
and I/O; nothing below imports it.
"""

from mediatable.table.query import Query
from mediatable.table.result import ResultSet
from mediatable.table.table import Table
from mediatable.table.tables import IteratorSpec

__all__ = ["IteratorSpec", "Query", "ResultSet", "Table"]
