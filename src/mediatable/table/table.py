"""`Table`: the handle users hold for a table or view, composed of one part per concern.

Each concern lives in its own module: reads and queries (:mod:`~mediatable.table.reads`), inserts
(:mod:`~mediatable.table.inserts`), computed columns (:mod:`~mediatable.table.computed`), updates and
deletes (:mod:`~mediatable.table.updates`), schema operations (:mod:`~mediatable.table.schema_ops`),
warming the file cache (:mod:`~mediatable.table.prefetch`), versions (:mod:`~mediatable.table.versions`),
exports (:mod:`~mediatable.table.exporting`), embedding indexes (:mod:`~mediatable.table.indexes`);
:mod:`~mediatable.table.base` holds what they share.
"""

from __future__ import annotations

from mediatable.table.computed import ComputedColumns
from mediatable.table.exporting import TableExports
from mediatable.table.indexes import EmbeddingIndexes
from mediatable.table.inserts import Inserts
from mediatable.table.prefetch import Prefetch
from mediatable.table.reads import Reads
from mediatable.table.schema_ops import SchemaOps
from mediatable.table.updates import Updates
from mediatable.table.versions import Versions


class Table(SchemaOps, Reads, Inserts, ComputedColumns, Updates, Prefetch, Versions, TableExports, EmbeddingIndexes):
    """A table or view in the catalog.

    Columns are attributes (`t.image`, also `t['image']`) and build expressions.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('pets', {'name': mt.String, 'age': mt.Int})
        Created table 'pets'.
        >>> t.insert([{'name': 'Rex', 'age': 3}], quiet=True)
        1 row inserted, 2 values computed.
        >>> t.where(t.age > 2).select(t.name).collect()['name']
        ['Rex']
    """
