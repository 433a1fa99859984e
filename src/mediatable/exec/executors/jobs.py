"""What a distributed computation is about, as plain data a worker receives by value.

A :class:`Job` names the table (id, path, the family schema version the driver saw) and the computed
columns to evaluate (their stored expressions, types, `on_error` and destinations), never a
session, an engine or a live expression: each worker rebuilds the columns against its own view
of the catalog. Its :attr:`Job.key` is the same for the same work asked again, so a rerun after
a crash finds what the first run already wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mediatable import types as ts
from mediatable.catalog.catalog import Catalog, LazyExpr
from mediatable.catalog.model import Column, TableMeta
from mediatable.errors import CatalogError, ConcurrentChange

MAX_RANGE_ROWS = 1000  # rows per range at most: a worker writes one range in one transaction
RANGES_PER_WORKER = 4  # ranges per worker at least, so a slow or lost worker costs a small share


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """One computed column to evaluate, as stored in the catalog."""

    name: str
    col_type: dict[str, Any]
    computed: dict[str, Any]
    on_error: str | None = None
    destination: str | None = None

    @classmethod
    def of(cls, column: Column) -> ColumnSpec:
        if column.computed_spec is None:
            raise CatalogError(f"column {column.name!r} is not computed")
        return cls(column.name, column.col_type.to_dict(), column.computed_spec, column.on_error, column.destination)

    def column(self, meta: TableMeta, visible: Mapping[str, Column]) -> Column:
        """The column over `meta`, its expression resolved against `visible` columns."""
        return Column(
            name=self.name,
            col_type=ts.type_from_dict(self.col_type),
            table_name=meta.path,
            owner_id=meta.id,
            position=0,
            computed=LazyExpr(self.computed, visible),
            computed_spec=self.computed,
            on_error=self.on_error,
            destination=self.destination,
        )


@dataclasses.dataclass(frozen=True)
class Job:
    """Computed columns of one table to evaluate for some of its rows (which rows: the ranges sent with it).

    Examples:
        >>> job = Job(1, 'dir.t', 3, (ColumnSpec('w', {'type': 'Int'}, {'k': 'lit', 'v': 1}),), None)
        >>> len(job.key), job.key == Job(1, 'dir.t', 3, job.columns, None).key
        (16, True)
    """

    table_id: int
    table_path: str
    schema_version: int
    columns: tuple[ColumnSpec, ...]
    on_error: str | None

    @classmethod
    def of(cls, meta: TableMeta, columns: Sequence[Column], on_error: str | None) -> Job:
        specs = tuple(ColumnSpec.of(c) for c in columns)
        return cls(meta.id, meta.path, meta.family_schema_version, specs, on_error)

    @property
    def key(self) -> str:
        """16 hex digits naming this work: the table, its schema version and the columns' definitions."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def load(self, catalog: Catalog) -> tuple[TableMeta, list[Column]]:
        """The table as the catalog describes it now and the job's columns over it.

        Raises:
            TableNotFound: the table is gone.
            ConcurrentChange: the schema of the table's family changed since the driver planned the job.
        """
        meta = catalog.get_table_by_id(self.table_id)
        if meta.family_schema_version != self.schema_version:
            raise ConcurrentChange(
                f"table {self.table_path!r} changed while its columns {', '.join(self.names)} were computed; "
                "nothing of this run is stored: run it again",
                table=self.table_path,
            )
        visible = dict(meta.columns)
        columns = []
        for spec in self.columns:
            column = spec.column(meta, visible)
            visible[spec.name] = column  # a later column may read an earlier one
            columns.append(column)
        return meta, columns


def partition(rowids: Sequence[int], workers: int) -> list[list[int]]:
    """Cut rowids (ascending) into consecutive ranges: at least `RANGES_PER_WORKER` per worker, at
    most `MAX_RANGE_ROWS` rows each.

    Examples:
        >>> [len(r) for r in partition(list(range(10)), 2)]
        [2, 2, 2, 2, 2]
        >>> partition([], 4)
        []
    """
    if not rowids:
        return []
    size = max(1, min(MAX_RANGE_ROWS, math.ceil(len(rowids) / (max(1, workers) * RANGES_PER_WORKER))))
    return [list(rowids[i : i + size]) for i in range(0, len(rowids), size)]
