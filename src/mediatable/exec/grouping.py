"""Grouped queries: `group_by(...)` with aggregates, `distinct()`, and selects of only aggregates.

In SQL (GROUP BY / DISTINCT) when the filter, the group keys and the aggregates' inputs all run
there; otherwise rows stream through the pipeline into one accumulator per group and aggregate.
Groups come back ordered by their keys unless the query orders them (by outputs or keys).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from mediatable.errors import ExprError
from mediatable.exec.failures import Failures
from mediatable.exec.pipeline import Pipeline, Target
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exprs import Aggregate, CellError, Expr, has_aggregate

Resolve = Callable[[Any], Any]


def group_keys(outputs: Sequence[tuple[str, Expr]], group_by: tuple[Expr, ...] | None, distinct: bool) -> list[Expr]:
    """The expressions rows are grouped by: `group_by`'s, or every output for `distinct()`."""
    if group_by is None and distinct:
        return [e for _, e in outputs]
    return list(group_by or ())


def check_outputs(outputs: Sequence[tuple[str, Expr]], keys: Sequence[Expr]) -> None:
    """Every output of a grouped query is an aggregate or one of the group keys.

    Raises:
        ExprError: names the output that is neither.
    """
    shown = {repr(k) for k in keys}
    for name, expr in outputs:
        if isinstance(expr, Aggregate) or repr(expr) in shown:
            continue
        if has_aggregate(expr):
            raise ExprError(f"output {name!r} = {expr!r}: select an aggregate itself (count(...), mean(...), ...)")
        raise ExprError(
            f"output {name!r} = {expr!r} is neither an aggregate nor a group_by() key "
            f"({', '.join(map(repr, keys)) or 'no keys'})"
        )


def sql_select(
    outputs: Sequence[tuple[str, Expr]],
    keys: Sequence[Expr],
    order: Sequence[Any],
    limit: int | None,
    sql: TableSql,
    where: Any,
) -> sa.Select[Any] | None:
    """The grouped query in SQL, or None when part of it must run in Python."""
    key_sql = [k.to_sql(sql.value_column) for k in keys]
    out_sql = [e.to_sql(sql.value_column) for _, e in outputs]
    if any(x is None for x in [*key_sql, *out_sql]):
        return None
    order_sql = []
    for key in order:
        clause = _ordering(key.expr, outputs, out_sql, sql.value_column)
        if clause is None:
            return None
        order_sql.append(clause.asc().nulls_last() if key.asc else clause.desc().nulls_last())
    order_sql += [k.asc().nulls_last() for k in key_sql]
    query = sa.select(*[c.label(f"o{i}") for i, c in enumerate(out_sql)]).select_from(sql.from_clause())
    if where is not None:
        query = query.where(where)
    if key_sql:
        query = query.group_by(*key_sql)
    query = query.order_by(*order_sql)
    return query.limit(limit) if limit is not None else query


def _ordering(expr: Expr, outputs: Sequence[tuple[str, Expr]], out_sql: list[Any], resolve: Resolve) -> Any:
    for (_, out), clause in zip(outputs, out_sql, strict=True):
        if repr(out) == repr(expr):
            return clause
    return None if has_aggregate(expr) else expr.to_sql(resolve)


def python_groups(
    batches: Iterable[list[dict[str, Any]]],
    outputs: Sequence[tuple[str, Expr]],
    keys: Sequence[Expr],
    order: Sequence[Any],
    limit: int | None,
    pipeline: Pipeline,
    failures: Failures,
) -> list[list[Any]]:
    """Group and aggregate rows in Python: output rows, ordered and limited."""
    aggregates = [(i, e) for i, (_, e) in enumerate(outputs) if isinstance(e, Aggregate)]
    targets = [Target(name=f"__gk{i}", expr=k, col_type=k.col_type, save_media=False) for i, k in enumerate(keys)]
    targets += [
        Target(name=f"__ga{i}", expr=e.operand, col_type=e.operand.col_type, save_media=False)
        for i, e in aggregates
        if e.operand is not None
    ]
    groups: dict[tuple[Any, ...], tuple[list[Any], list[Any]]] = {}
    if not keys:
        groups[()] = ([], [e.accumulator() for _, e in aggregates])
    key_labels = [f"the group key {k!r}" for k in keys]
    input_labels = [repr(outputs[i][0]) for i, e in aggregates if e.operand is not None]
    for rows in batches:
        pipeline.run(rows, targets)
        for label in key_labels + input_labels:
            failures.seen(label, len(rows))
        for row in rows:
            left_out = "those rows are left out of the groups"
            key_values = [_value(row[f"__gk{i}"], key_labels[i], row, failures, left_out) for i in range(len(keys))]
            if any(v is _FAILED for v in key_values):
                continue
            slot = groups.get(tuple(_hashable(v) for v in key_values))
            if slot is None:
                slot = groups.setdefault(
                    tuple(_hashable(v) for v in key_values), (key_values, [e.accumulator() for _, e in aggregates])
                )
            for (i, e), acc in zip(aggregates, slot[1], strict=True):
                if e.operand is None:
                    acc.add(None)
                    continue
                value = _value(row[f"__ga{i}"], repr(outputs[i][0]), row, failures, "those values are not aggregated")
                if value is not _FAILED:
                    acc.add(value)
    shown = [repr(k) for k in keys]
    out_rows = []
    for key_values, accs in groups.values():
        results = iter(acc.result() for acc in accs)
        by_output = []
        for _, expr in outputs:
            by_output.append(next(results) if isinstance(expr, Aggregate) else key_values[shown.index(repr(expr))])
        out_rows.append((by_output, key_values))
    out_rows = _sorted(out_rows, outputs, keys, order)
    rows_only = [row for row, _ in out_rows]
    return rows_only[:limit] if limit is not None else rows_only


_FAILED = object()


def _value(value: Any, label: str, row: dict[str, Any], failures: Failures, consequence: str) -> Any:
    if isinstance(value, CellError):
        if value.stored:
            return None
        failures.failed(label, row.get(ROWID), value, consequence)
        return _FAILED
    return value


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict | list) else value


def _sorted(
    rows: list[tuple[list[Any], list[Any]]],
    outputs: Sequence[tuple[str, Expr]],
    keys: Sequence[Expr],
    order: Sequence[Any],
) -> list[tuple[list[Any], list[Any]]]:
    """Sort groups by each key, last one first (stable), None last; the query's order comes before the keys."""
    out_names = [repr(e) for _, e in outputs]
    key_names = [repr(k) for k in keys]
    sort_by: list[tuple[Callable[[tuple[list[Any], list[Any]]], Any], bool]] = []
    for key in order:
        name = repr(key.expr)
        if name in out_names:
            sort_by.append((lambda r, i=out_names.index(name): r[0][i], key.asc))
        elif name in key_names:
            sort_by.append((lambda r, i=key_names.index(name): r[1][i], key.asc))
        else:
            raise ExprError(f"order_by({key.expr!r}) of a grouped query must be an output or a group_by() key")
    sort_by += [(lambda r, i=i: r[1][i], True) for i in range(len(keys))]
    for get, asc in reversed(sort_by):
        present = [r for r in rows if get(r) is not None]
        missing = [r for r in rows if get(r) is None]
        present.sort(key=lambda r, get=get: _hashable(get(r)), reverse=not asc)
        rows = present + missing
    return rows
