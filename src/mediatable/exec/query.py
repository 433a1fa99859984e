"""Running queries: filters and sort keys over stored scalar columns run in SQL; anything else
(functions over media, computed-on-the-fly expressions) runs through the same pipeline as computed columns.

A :class:`QuerySpec` says what to compute; the user-facing :class:`~mediatable.table.query.Query`
builds one and calls :func:`run_batches`, :func:`count` or :func:`matching_rows`. Rows stream from
SQL in batches, so memory is bounded by the batch (unless a sort key must be computed in Python,
which needs every matching row's inputs, never their media). Failed values follow
:mod:`~mediatable.exec.failures`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.catalog.catalog import read_only
from mediatable.catalog.model import Column, TableMeta
from mediatable.errors import ExprError
from mediatable.exec import embedding_index, grouping, joins
from mediatable.exec.failures import Failures
from mediatable.exec.media_cells import MediaCell
from mediatable.exec.pipeline import Pipeline, Target, preflight
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exec.workers import worker_processes
from mediatable.exprs import BoolOp, CellError, ColumnProperty, ColumnRef, Expr, has_aggregate
from mediatable.session import Session

BATCH_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class OrderKey:
    """One sort key of a query."""

    expr: Expr
    asc: bool


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    """What a query computes: outputs (None: every column), filter, sort keys and row limit."""

    meta: TableMeta
    select: tuple[tuple[str, Expr], ...] | None = None
    where: Expr | None = None
    order: tuple[OrderKey, ...] = ()
    limit: int | None = None
    group_by: tuple[Expr, ...] | None = None  # None: not grouped (unless only aggregates are selected)
    distinct: bool = False
    join: joins.Join | None = None

    @property
    def grouped(self) -> bool:
        """Whether rows are combined: group_by(), distinct(), or a select of aggregates."""
        return self.group_by is not None or self.distinct or any(has_aggregate(e) for _, e in self.outputs())

    def outputs(self) -> list[tuple[str, Expr]]:
        """The output (name, expression) pairs: the select list, or every column."""
        if self.select is not None:
            return list(self.select)
        if self.join is not None:
            return joins.default_outputs(self.meta, self.join)
        return [(name, ColumnRef(column)) for name, column in self.meta.columns.items()]


RowSource = TableSql | joins.JoinSql


def bound(spec: QuerySpec) -> tuple[QuerySpec, RowSource]:
    """The spec with its expressions bound to where rows are read, and that row source.

    A query of one table reads its table (nothing to bind); a join binds each column reference to
    its side (see :mod:`~mediatable.exec.joins`). Binding a bound spec again gives the same row keys.
    """
    if spec.join is None:
        return spec, TableSql(spec.meta)
    source = joins.JoinSql(spec.meta, spec.join)
    bind = source.bind
    spec = dataclasses.replace(
        spec,
        select=tuple((name, bind(e)) for name, e in spec.outputs()),
        where=None if spec.where is None else bind(spec.where),
        order=tuple(OrderKey(bind(k.expr), k.asc) for k in spec.order),
        group_by=None if spec.group_by is None else tuple(bind(k) for k in spec.group_by),
    )
    return spec, source


def session_pipeline(session: Session, lease: Any) -> Pipeline:
    """The pipeline a query of `session` computes with: files through `lease`, the session's threads and processes."""
    return Pipeline(
        lease,
        session.media_store,
        session.settings.compute_workers,
        presigner=session.presigner,
        processes=worker_processes(session),
    )


def subject(spec: QuerySpec) -> str:
    """What a query reads, for messages: the table's path, or the join."""
    return spec.meta.path if spec.join is None else joins.JoinSql(spec.meta, spec.join).subject


@dataclasses.dataclass
class _Plan:
    """How a spec runs: what SQL reads, filters, sorts and limits, and what is left for the pipeline."""

    sql: RowSource
    columns: list[Column]
    sql_where: Any
    py_where: Expr | None
    order: tuple[OrderKey, ...]  # the sort keys, bound to the row source
    sql_order: list[Any] | None  # None: some sort key must be computed in Python
    sql_limit: int | None


def _plan(spec: QuerySpec) -> _Plan:
    spec, sql = bound(spec)
    needed: list[Expr] = [e for _, e in spec.outputs()]
    if spec.where is not None:
        needed.append(spec.where)
    needed += [k.expr for k in spec.order] + list(spec.group_by or ())
    parts = conjuncts(spec.where)
    compiled = [p.to_sql(sql.value_column) for p in parts]
    pushed = [c for c in compiled if c is not None]
    left = [p for p, c in zip(parts, compiled, strict=True) if c is None]
    order_sql = [k.expr.to_sql(sql.value_column) for k in spec.order]
    sql_order = None
    if all(o is not None for o in order_sql):
        sql_order = [
            o.asc().nulls_last() if k.asc else o.desc().nulls_last() for k, o in zip(spec.order, order_sql, strict=True)
        ]
    return _Plan(
        sql=sql,
        columns=referenced_columns(needed, sql.columns),
        sql_where=sa.and_(*pushed) if pushed else None,
        py_where=(left[0] if len(left) == 1 else BoolOp("and", left)) if left else None,
        order=spec.order,
        sql_order=sql_order,
        sql_limit=spec.limit if not left and sql_order is not None else None,
    )


def explain(spec: QuerySpec) -> str:
    """What the query computes and where each part runs (in SQL or in Python).

    Examples:
        >>> from mediatable.catalog.model import Column, TableMeta
        >>> n = Column("n", ts.Int, "nums", owner_id=1, position=0, stem="c1")
        >>> meta = TableMeta(id=1, path="nums", kind="table", own_columns={"n": n})
        >>> print(explain(QuerySpec(meta, where=ColumnRef(n) % 10 == 0, limit=5)))
        query over 'nums'
          select  n
          where   ((nums.n % 10) == 0)  in SQL
          limit   5
    """
    outputs = spec.outputs()
    shown = [name if isinstance(e, ColumnRef) and e.column.name == name else f"{name}={e!r}" for name, e in outputs]
    spec, sql = bound(spec)
    lines = [f"query over {spec.meta.path!r}"]
    if isinstance(sql, joins.JoinSql):
        alias = f" as {spec.join.alias!r}" if spec.join.alias else ""  # type: ignore[union-attr]
        lines.append(f"  {spec.join.how} join {spec.join.meta.path!r}{alias} on {sql.on!r}  in SQL")  # type: ignore[union-attr]
    lines.append(f"  select  {', '.join(shown) if shown else '(row ids)'}")
    parts = conjuncts(spec.where)
    pushed = [part.to_sql(sql.value_column) is not None for part in parts]
    for part, in_sql in zip(parts, pushed, strict=True):
        lines.append(f"  where   {part!r}  in {'SQL' if in_sql else 'Python'}")
    grouped_in_sql = None
    if spec.grouped:
        keys = grouping.group_keys(spec.outputs(), spec.group_by, spec.distinct)
        grouped_in_sql = (
            all(pushed) and grouping.sql_select(spec.outputs(), keys, spec.order, None, sql, None) is not None
        )
        shown_keys = "distinct" if spec.group_by is None and spec.distinct else "group   "
        shown_keys += ", ".join(map(repr, spec.group_by or ())) if spec.group_by is not None else ""
        shown_keys += ", distinct" if spec.group_by is not None and spec.distinct else ""
        if spec.group_by is None and not spec.distinct:
            shown_keys += "(all rows)"
        lines.append(f"  {shown_keys}  in {'SQL' if grouped_in_sql else 'Python'}")
    for key in spec.order:
        in_sql = grouped_in_sql if grouped_in_sql is not None else key.expr.to_sql(sql.value_column) is not None
        lines.append(f"  order   {key.expr!r} {'asc' if key.asc else 'desc'}  in {'SQL' if in_sql else 'Python'}")
    if spec.limit is not None:
        lines.append(f"  limit   {spec.limit}")
    return "\n".join(lines)


def count(session: Session, spec: QuerySpec) -> int:
    """Number of rows matching the filter (counted by the database when the filter runs in SQL)."""
    if spec.grouped:
        return len(_grouped(session, spec, "abort", quiet=False))
    plan = _plan(spec)
    if plan.py_where is None:
        query = sa.select(sa.func.count()).select_from(plan.sql.from_clause())
        if plan.sql_where is not None:
            query = query.where(plan.sql_where)
        with read_only(session.engine) as conn:
            total = int(conn.execute(query).scalar_one())
        return total if spec.limit is None else min(total, spec.limit)
    return len(matching_rows(session, dataclasses.replace(spec, select=(), order=())))


def matching_rows(session: Session, spec: QuerySpec, on_error: str = "abort") -> list[dict[str, Any]]:
    """Matching rows (with every column any part of the query reads), filtered, ordered and limited."""
    failures = Failures(on_error, subject(spec))
    with session.cache_lease() as lease:
        pipeline = session_pipeline(session, lease)
        return [row for batch in _row_batches(session, spec, pipeline, failures, BATCH_SIZE) for row in batch]


def run_batches(
    session: Session,
    spec: QuerySpec,
    *,
    batch_size: int = BATCH_SIZE,
    on_error: str = "abort",
    quiet: bool = False,
    lease: Any | None = None,
) -> Iterator[list[list[Any]]]:
    """The query's output rows (lists of values, media as :class:`MediaCell`), `batch_size` rows at a time.

    Media files are fetched through `lease`, which the caller keeps open as long as it hands out
    their paths (a result keeps its own); without one, through a lease closed when the rows end.

    A failed value is its :class:`~mediatable.exprs.CellError` (results give users None and show
    the error): stored errors always, errors of this run with `on_error='ignore'`, which also
    prints a summary line at the end (unless `quiet`).

    Raises:
        ComputeError: a value computed by the query failed (unless `on_error='ignore'`).
    """
    if spec.grouped:
        failures = Failures(on_error, subject(spec))
        rows, outputs = _grouped(session, spec, on_error, quiet), bound(spec)[0].outputs()
        with contextlib.nullcontext(lease) if lease is not None else session.cache_lease() as lease:
            pipeline = session_pipeline(session, lease)
            for start in range(0, len(rows), batch_size):
                yield _grouped_media(rows[start : start + batch_size], outputs, pipeline, failures)
        for line in [] if quiet else failures.summary():
            print(line)
        return
    spec, _ = bound(spec)
    outputs = spec.outputs()
    plan = _plan(spec)
    if _straight_from_sql(outputs, plan):
        yield from _sql_batches(session, spec, plan, outputs, batch_size)
        return
    failures = Failures(on_error, subject(spec))
    targets = output_targets(outputs)
    with contextlib.nullcontext(lease) if lease is not None else session.cache_lease() as lease:
        pipeline = session_pipeline(session, lease)
        for rows in _row_batches(session, spec, pipeline, failures, batch_size):
            preflight(rows, outputs)
            pipeline.run(rows, targets)
            yield [_output_row(row, outputs, failures) for row in rows]
            for name, _ in outputs:
                failures.seen(repr(name), len(rows))
    for line in [] if quiet else failures.summary():
        print(line)


def _straight_from_sql(outputs: list[tuple[str, Expr]], plan: _Plan) -> bool:
    """Only stored scalar columns, filtered and ordered in SQL: no pipeline needed (and nothing can fail)."""
    return (
        plan.py_where is None
        and plan.sql_order is not None
        and all(isinstance(e, ColumnRef) and not e.col_type.is_media for _, e in outputs)
    )


# Types whose values the database driver itself returns as users see them.
_AS_STORED = ("Int", "Float", "String")


def _sql_batches(
    session: Session, spec: QuerySpec, plan: _Plan, outputs: list[tuple[str, Expr]], batch_size: int
) -> Iterator[list[Any]]:
    """The fast path: one SELECT of exactly the output columns (and the error columns of computed ones).

    When every output is an Int, Float or String, the statement runs on the driver's own cursor and
    its tuples are the rows (no per-row work in Python unless computed columns are read); otherwise
    SQLAlchemy converts the values.
    """
    columns = [e.column for _, e in outputs]  # type: ignore[attr-defined]
    computed = [i for i, c in enumerate(columns) if c.is_computed]
    errors = [plan.sql.error_columns(columns[i]) for i in computed]
    query = sa.select(*[plan.sql.value_column(c) for c in columns], *[c for pair in errors for c in pair]).select_from(
        plan.sql.from_clause()
    )
    if plan.sql_where is not None:
        query = query.where(plan.sql_where)
    query = query.order_by(*(plan.sql_order or ()), *plan.sql.tiebreak())
    if spec.limit is not None:
        query = query.limit(spec.limit)
    convert = [None if c.col_type.name in _AS_STORED else c.col_type.from_sql for c in columns]
    convert += [None] * (2 * len(computed))  # error types and messages are text
    with read_only(session.engine) as conn:
        if not any(convert):
            compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
            params = compiled.params
            if compiled.positiontup is not None:  # qmark / format styles take a sequence
                params = [params[name] for name in compiled.positiontup]
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(str(compiled), params)
                while part := cursor.fetchmany(batch_size):
                    yield _with_stored_errors(part, len(columns), computed) if computed else part
            finally:
                cursor.close()
            return
        result = conn.execution_options(yield_per=batch_size).execute(query)
        for part in result.partitions(batch_size):
            rows = [[v if f is None else f(v) for f, v in zip(convert, row, strict=True)] for row in part]
            yield _with_stored_errors(rows, len(columns), computed) if computed else rows


def _with_stored_errors(rows: Sequence[Sequence[Any]], width: int, computed: list[int]) -> list[Sequence[Any]]:
    """Rows of `width` values, where the (errortype, errormsg) pairs after them put a stored CellError."""
    blank = (None,) * (2 * len(computed))
    out: list[Sequence[Any]] = []
    for row in rows:
        if tuple(row[width:]) == blank:
            out.append(row[:width])
            continue
        values = list(row[:width])
        for j, i in enumerate(computed):
            errortype = row[width + 2 * j]
            if errortype is not None:
                values[i] = CellError(errortype, row[width + 2 * j + 1] or "", stored=True)
        out.append(values)
    return out


def _grouped(session: Session, spec: QuerySpec, on_error: str, quiet: bool) -> list[list[Any]]:
    spec, _ = bound(spec)
    outputs = spec.outputs()
    keys = grouping.group_keys(outputs, spec.group_by, spec.distinct)
    grouping.check_outputs(outputs, keys)
    plan = _plan(dataclasses.replace(spec, order=(), limit=None))
    if plan.py_where is None:
        query = grouping.sql_select(outputs, keys, spec.order, spec.limit, plan.sql, plan.sql_where)
        if query is not None:
            with read_only(session.engine) as conn:
                found = conn.execute(query).all()
            types = [e.col_type for _, e in outputs]
            return [[t.from_sql(v) for t, v in zip(types, row, strict=True)] for row in found]
    failures = Failures(on_error, subject(spec))
    with session.cache_lease() as lease:
        pipeline = session_pipeline(session, lease)
        rows_spec = dataclasses.replace(spec, order=(), limit=None)
        batches = _row_batches(session, rows_spec, pipeline, failures, BATCH_SIZE)
        out = grouping.python_groups(batches, outputs, keys, spec.order, spec.limit, pipeline, failures)
    for line in [] if quiet else failures.summary():
        print(line)
    return out


def _grouped_media(
    rows: list[list[Any]], outputs: list[tuple[str, Expr]], pipeline: Pipeline, failures: Failures
) -> list[list[Any]]:
    """Grouped rows whose media outputs (stored URLs, as keys) are fetched: result media, as in any query."""
    media = [i for i, (_, e) in enumerate(outputs) if isinstance(e, ColumnRef) and e.col_type.is_media]
    if not media or not rows:
        return rows
    selected = [outputs[i] for i in media]
    cells = [{e.column.name: row[i] for i, (_, e) in zip(media, selected, strict=True)} for row in rows]  # type: ignore[attr-defined]
    pipeline.run(cells, output_targets(selected))
    for row, cell in zip(rows, cells, strict=True):
        for i, value in zip(media, output_values(cell, selected), strict=True):
            if isinstance(value, CellError):
                failures.failed(repr(outputs[i][0]), None, value)
            row[i] = value
    for name, _ in selected:
        failures.seen(repr(name), len(rows))
    return rows


def output_targets(outputs: Sequence[tuple[str, Expr]]) -> list[Target]:
    """The pipeline targets computing a query's outputs (`__out0`, `__out1`, ...; read by :func:`output_values`)."""
    return [
        Target(name=f"__out{i}", expr=_readable(expr), col_type=expr.col_type, save_media=False)
        for i, (_, expr) in enumerate(outputs)
    ]


def output_values(row: dict[str, Any], outputs: Sequence[tuple[str, Expr]], *, check_media: bool = True) -> list[Any]:
    """A row's output values once the pipeline ran :func:`output_targets` over it.

    Selected media columns become :class:`MediaCell` references (an image's header is read now,
    unless `check_media` is False: for callers that decode the file next and report its failure);
    a value that failed is its :class:`~mediatable.exprs.CellError` (a stored cell's own error when
    a column is selected as is).
    """
    values = []
    for i, (_, expr) in enumerate(outputs):
        value = row[f"__out{i}"]
        if isinstance(expr, ColumnRef):
            stored = row.get(expr.column.name)
            if isinstance(stored, CellError):
                value = stored  # the stored cell's own error, not "upstream column failed"
            elif expr.col_type.is_media and isinstance(value, str):
                cell = MediaCell(stored, value, expr.col_type)
                try:
                    if check_media:
                        cell.check()
                    value = cell
                except Exception as exc:
                    value = CellError.from_exception(exc)
        values.append(value)
    return values


def _output_row(row: dict[str, Any], outputs: list[tuple[str, Expr]], failures: Failures) -> list[Any]:
    """One output row; a failed value stays its CellError (results show it, and give None to users)."""
    values = output_values(row, outputs)
    for (name, _), value in zip(outputs, values, strict=True):
        if isinstance(value, CellError):
            failures.failed(repr(name), row.get(ROWID), value)
    return values


def matching_rowids(session: Session, spec: QuerySpec, on_error: str = "abort") -> Iterator[int]:
    """The ids of the rows a query returns, in its order (filtered, sorted and limited), streamed.

    Filters and sort keys that run in Python are computed here (fetching the media they read);
    the outputs are not. With `on_error='ignore'`, rows whose filter fails are left out and a
    summary line is printed.

    Raises:
        ExprError: the query combines rows (group_by, distinct, aggregates, a join): its results have no row ids.
        ComputeError: a filter or sort key failed (with `on_error='abort'`).
    """
    if spec.grouped or spec.join is not None:
        kind = "a join" if spec.join is not None else "a grouped query (group_by, distinct, aggregates)"
        raise ExprError(f"{kind} has no row ids of one table; collect() it instead")
    failures = Failures(on_error, subject(spec))
    with session.cache_lease() as lease:
        pipeline = session_pipeline(session, lease)
        for batch in _row_batches(session, dataclasses.replace(spec, select=()), pipeline, failures, BATCH_SIZE):
            for row in batch:
                yield row[ROWID]
    for line in failures.summary():
        print(line)


def _row_batches(
    session: Session, spec: QuerySpec, pipeline: Pipeline, failures: Failures, batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Matching rows in batches: filtered, then (in SQL or after all are read) ordered and limited."""
    plan = _plan(spec)
    exprs = [e for _, e in spec.outputs()] + [k.expr for k in spec.order] + conjuncts(spec.where)
    candidates = embedding_index.bind(  # similarity() nodes get their index; an index top-k reads k rows
        session, spec.meta, exprs, spec.order, spec.limit, plan.sql, plan.sql_where, plan.py_where is not None
    )
    left = spec.limit if plan.sql_order is not None else None
    kept_all: list[dict[str, Any]] = []
    with read_only(session.engine) as conn:
        batch: list[dict[str, Any]] = []
        source = plan.sql.read(conn, plan.columns, plan.sql_where, plan.sql_order or (), plan.sql_limit, candidates)
        for row in source:
            batch.append(row)
            if len(batch) < batch_size:
                continue
            kept = _filter(batch, plan.py_where, pipeline, failures)
            batch = []
            if plan.sql_order is None:
                kept_all.extend(kept)
                continue
            if left is not None:
                kept, left = kept[:left], left - len(kept[:left])
            if kept:
                yield kept
            if left == 0:
                return
        kept = _filter(batch, plan.py_where, pipeline, failures)
    if plan.sql_order is not None:
        if left is not None:
            kept = kept[:left]
        if kept:
            yield kept
        return
    kept_all.extend(kept)
    ordered = _sort(kept_all, plan.order, pipeline, failures)
    if spec.limit is not None:
        ordered = ordered[: spec.limit]
    for start in range(0, len(ordered), batch_size):
        yield ordered[start : start + batch_size]


def _filter(
    rows: list[dict[str, Any]], predicate: Expr | None, pipeline: Pipeline, failures: Failures
) -> list[dict[str, Any]]:
    if predicate is None or not rows:
        return rows
    pipeline.run(rows, [Target(name="__where", expr=predicate, col_type=ts.Bool, save_media=False)])
    label = "the where() filter"
    failures.seen(label, len(rows))
    for row in rows:
        if isinstance(row["__where"], CellError):
            failures.failed(label, row.get(ROWID), row["__where"], "those rows are left out")
    return [r for r in rows if r["__where"] is True]


def _sort(
    rows: list[dict[str, Any]], order: Sequence[OrderKey], pipeline: Pipeline, failures: Failures
) -> list[dict[str, Any]]:
    keys = [
        Target(name=f"__key{i}", expr=k.expr, col_type=k.expr.col_type, save_media=False) for i, k in enumerate(order)
    ]
    pipeline.run(rows, keys)
    for i, key in enumerate(order):
        label = f"the sort key {key.expr!r}"
        failures.seen(label, len(rows))
        for row in rows:
            if isinstance(row[f"__key{i}"], CellError):
                failures.failed(label, row.get(ROWID), row[f"__key{i}"], "those rows sort last")
    for i in reversed(range(len(order))):
        name, asc = f"__key{i}", order[i].asc
        present = [r for r in rows if r[name] is not None and not isinstance(r[name], CellError)]
        missing = [r for r in rows if r[name] is None or isinstance(r[name], CellError)]
        present.sort(key=lambda r, n=name: r[n], reverse=not asc)
        rows = present + missing
    return rows


def _readable(expr: Expr) -> Expr:
    """A selected media column is read as its local file (fetched through the cache)."""
    if isinstance(expr, ColumnRef) and expr.col_type.is_media:
        return ColumnProperty(expr, "localpath")
    return expr


def conjuncts(expr: Expr | None) -> list[Expr]:
    """The parts of an AND chain (`a & b & c` -> [a, b, c])."""
    if expr is None:
        return []
    if isinstance(expr, BoolOp) and expr.op == "and":
        return [c for operand in expr.operands for c in conjuncts(operand)]
    return [expr]


def referenced_columns(exprs: Sequence[Expr], visible: Mapping[str, Column]) -> list[Column]:
    """The columns that `exprs` read (as `visible` describes them, by name), in first-use order."""
    names: list[str] = []
    for expr in exprs:
        for node in expr.walk():
            if isinstance(node, ColumnRef) and node.column.name not in names:
                names.append(node.column.name)
    return [visible[n] for n in names]
