"""Joins of two tables: `t1.join(t2, on=t1.id == t2.id, how='inner'|'left')`, and of a table with itself.

The database joins the rows (the condition must run in SQL: stored columns compared, the
operators and functions that push down); everything else runs as in a query of one table. Filters
and sort keys run in SQL when they can and in the pipeline otherwise, outputs may be any
expression over either side (functions over media fetch their files through the cache), and
group_by()/distinct() work over the joined rows.

A :class:`JoinSql` is the join's row source: it binds each column reference of the query to the
side it reads (by its table, or by the alias of :meth:`~mediatable.table.Table.alias` when both
sides are the same table) and gives the joined rows as dicts, keyed by the column's name on the
left and by `<alias or table name>.<name>` on the right.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from mediatable.catalog.model import Column, TableMeta
from mediatable.errors import ExprError, InvalidArgument
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exprs import CellError, ColumnRef, Expr

HOW = ("inner", "left")
_RIGHT_ROWID = "_rowid_right"


@dataclasses.dataclass(frozen=True)
class Join:
    """The right side of a join: its table, the condition, the kind, and the alias naming that side."""

    meta: TableMeta
    on: Expr
    how: str
    alias: str | None = None

    @property
    def label(self) -> str:
        """The right side's name in messages and row keys: its alias, or its table's name."""
        return self.alias or self.meta.name


def check_sides(left: TableMeta, right: TableMeta, alias: str | None) -> None:
    """Refuse joins whose sides share a table unless the right side has an alias to tell them apart."""
    if left.owner_ids() & right.owner_ids() and alias is None:
        raise InvalidArgument(
            f"cannot join {left.path!r} with {right.path!r} as they are: they share a table, so t.col could mean "
            f"either side; name the right side with an alias (self-joins): p = t.alias('p'); "
            f"t.join(p, on=t.parent_id == p.id)"
        )


def on_right(left: TableMeta, join: Join, ref: ColumnRef) -> bool:
    """Whether a column reference reads the right side of the join (else the left).

    A reference through the alias reads the right side; one through a table reads the side that
    table is (the left one when both are).

    Raises:
        ExprError: the reference belongs to neither side.
    """
    column = ref.column

    def owns(meta: TableMeta) -> bool:
        return column.name in meta.columns and column.owner_id in meta.owner_ids()

    if ref.alias is not None:
        if ref.alias == join.alias and owns(join.meta):
            return True
    elif owns(left):
        return False
    elif owns(join.meta):
        return True
    sides = f"{left.path!r} or {join.meta.path!r}" + (f" (as {join.alias!r})" if join.alias else "")
    raise ExprError(f"{ref!r} is not a column of {sides}")


def default_outputs(left: TableMeta, join: Join) -> list[tuple[str, Expr]]:
    """Every column of both sides; a right-side name taken by the left is prefixed with the side's name."""
    out: list[tuple[str, Expr]] = [(n, ColumnRef(c)) for n, c in left.columns.items()]
    for name, column in join.meta.columns.items():
        out.append((name if name not in left.columns else f"{join.label}_{name}", ColumnRef(column, join.alias)))
    return out


class SideRef(ColumnRef):
    """A column reference bound to one side of a join: reads the joined row's key for that side."""

    def __init__(self, column: Column, original: ColumnRef) -> None:
        super().__init__(column, original.alias)
        self.original = original

    def __repr__(self) -> str:
        return repr(self.original)

    def default_name(self) -> str:
        return self.original.default_name()


class JoinSql:
    """The rows of a join, read from SQL: the interface of :class:`~mediatable.exec.rows.TableSql`.

    Lifecycle: made once per query run by :func:`bound`; it binds the query's expressions, then
    compiles and reads the joined rows.
    """

    def __init__(self, left: TableMeta, join: Join) -> None:
        self.meta = left
        self.join = join
        self.left = TableSql(left)
        # The right side is always read under an alias of its own, so it may be the left's table.
        self.right = TableSql(join.meta, alias=f"mt_join_{join.alias or 'right'}")
        self.columns: dict[str, Column] = {}  # row key -> the column as bound (its name is the key)
        self._origins: dict[str, tuple[TableSql, Column]] = {}
        self.on = self.bind(join.on)

    @property
    def subject(self) -> str:
        """The join as named in messages: `'images' join 'notes'` (with the alias, when given)."""
        alias = f" as {self.join.alias!r}" if self.join.alias else ""
        return f"{self.meta.path} join {self.join.meta.path}{alias}"

    def bind(self, expr: Expr) -> Expr:
        """`expr` with each column reference bound to the side it reads."""
        return expr.with_columns(self._bind_ref)

    def _bind_ref(self, ref: ColumnRef) -> Expr:
        if isinstance(ref, SideRef):  # bound by another run of the same query: the keys are the same
            ref = ref.original
        right = on_right(self.meta, self.join, ref)
        side, meta = (self.right, self.join.meta) if right else (self.left, self.meta)
        column = meta.columns[ref.column.name]
        key = f"{self.join.label}.{column.name}" if right else column.name
        if key not in self.columns:
            self.columns[key] = dataclasses.replace(column, name=key)
            self._origins[key] = (side, column)
        return SideRef(self.columns[key], ref)

    # -- the TableSql interface, over bound columns ----------------------------------------------
    def value_column(self, column: Column) -> sa.ColumnElement[Any] | None:
        side, original = self._origins[column.name]
        return side.value_column(original)

    def error_columns(self, column: Column) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
        side, original = self._origins[column.name]
        return side.error_columns(original)

    def tiebreak(self) -> list[Any]:
        return [*self.left.tiebreak(), *self.right.tiebreak()]

    def from_clause(self) -> sa.FromClause:
        condition = self.on.to_sql(self.value_column)
        if condition is None:
            raise ExprError(
                f"the join condition {self.on!r} must run in SQL: compare stored columns "
                "(==, <, ..., &, |, and the functions that push down)"
            )
        return self.left.from_clause().join(self.right.from_clause(), condition, isouter=self.join.how == "left")

    def read(
        self,
        conn: sa.Connection,
        columns: Sequence[Column],
        where: sa.ColumnElement[Any] | None = None,
        order_by: Sequence[Any] = (),
        limit: int | None = None,
        rowids: Iterable[int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Joined rows as dicts `{key: value or CellError, "_rowid": the left row's id}`, in order.

        `rowids`: only these rows of the left side (as :meth:`TableSql.read` takes them).
        """
        items: list[Any] = [self.left.table.c[ROWID].label(ROWID), self.right.table.c[ROWID].label(_RIGHT_ROWID)]
        for i, column in enumerate(columns):
            items.append(self.value_column(column).label(f"c{i}"))  # type: ignore[union-attr]
            if column.is_computed:
                errortype, errormsg = self.error_columns(column)
                items += [errortype.label(f"c{i}_t"), errormsg.label(f"c{i}_m")]
        query = sa.select(*items).select_from(self.from_clause())
        if where is not None:
            query = query.where(where)
        if rowids is not None:
            query = query.where(self.left.table.c[ROWID].in_(list(rowids)))
        query = query.order_by(*order_by, *self.tiebreak())
        if limit is not None:
            query = query.limit(limit)
        result = conn.execution_options(yield_per=1000).execute(query)
        for record in result.mappings():
            row: dict[str, Any] = {ROWID: record[ROWID], _RIGHT_ROWID: record[_RIGHT_ROWID]}
            for i, column in enumerate(columns):
                errortype = record[f"c{i}_t"] if column.is_computed else None
                if errortype is not None:
                    row[column.name] = CellError(errortype, record[f"c{i}_m"] or "", stored=True)
                else:
                    row[column.name] = column.col_type.from_sql(record[f"c{i}"])
            yield row
