"""Computed columns: `add_computed_column` (filled for existing rows, kept current for new ones) and
`recompute_columns`."""

from __future__ import annotations

from typing import Any

from mediatable import types as ts
from mediatable.catalog import schema
from mediatable.catalog.catalog import check_choice
from mediatable.catalog.model import BuiltExpr, Column
from mediatable.errors import AlreadyExists, ColumnNotFound, ExprError, InvalidArgument
from mediatable.exec import compute
from mediatable.exec.executors import executor_for
from mediatable.exec.status import UpdateStatus, plural
from mediatable.exprs import ColumnRef, Expr, as_expr, serialize
from mediatable.io.destinations import parse_destination, probe
from mediatable.io.media_store import ImageEncoding
from mediatable.table.base import ON_ERROR, TableBase


class ComputedColumns(TableBase):
    """Computed-column operations of a :class:`~mediatable.table.Table`."""

    def add_computed_column(
        self,
        *,
        on_error: str = "ignore",
        if_exists: str = "error",
        destination: str | None = None,
        image_format: str | None = None,
        image_quality: int | None = None,
        executor: str | None = None,
        quiet: bool = False,
        **named: Any,
    ) -> UpdateStatus:
        """Add columns computed from others; fill them for existing rows and keep them current.

        Args:
            on_error: 'ignore' (default): a failing cell keeps its error, readable as
                `t.col.errortype` / `t.col.errormsg`; 'abort': the first error undoes the whole call.
            if_exists: 'error', 'ignore' or 'replace' when a column of that name exists.
            destination: where media columns write the files they generate: `s3://bucket/prefix/`,
                `gs://…`, `az://container/prefix/` or a local folder. Objects are named by their
                content (`<sha256>.<ext>`); rows inserted later upload on insert. Checked before
                any work (the bucket must exist and accept a write). Default: the `output_media_dest`
                setting, else `<home>/media`. Dropping the column never deletes those objects.
            image_format: for Image columns, how generated images are written: 'jpeg', 'webp' or 'png'
                (default: the `image_format` setting, 'jpeg'; images with alpha are PNG under 'jpeg').
            image_quality: for Image columns, the JPEG/WebP quality 1-100 (default: the `image_quality`
                setting, 90).
            executor: where the values are computed: 'local' (this process), 'ray' or 'ray://host:port'
                (a Ray cluster, `pip install 'mediatable[ray]'`); default: the `executor` setting, 'local'.
            quiet: do not print the per-column summary lines.
            **named: `name=expression` pairs, e.g. `width=t.image.width`.

        Returns:
            An :class:`UpdateStatus`: `N rows updated, M values computed.`

        Examples:
            >>> import mediatable as mt, tempfile, PIL.Image
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> PIL.Image.new('RGB', (64, 48)).save('cat.jpg')
            >>> t = mt.create_table('pics', {'image': mt.Image})
            Created table 'pics'.
            >>> t.insert([{'image': 'cat.jpg'}], quiet=True)
            1 row inserted, 1 value computed.
            >>> t.add_computed_column(width=t.image.width)
            Added 1 column value with 0 errors.
            1 row updated, 1 value computed.
            >>> t.select(t.width).collect()['width']
            [64]
        """
        check_choice("on_error", on_error, ON_ERROR)
        check_choice("if_exists", if_exists, ("error", "ignore", "replace"))
        if not named:
            raise InvalidArgument("add_computed_column() needs name=expression")
        self._check_new_column_names(named)
        self._fresh()
        self._check_writable()
        exprs = {name: as_expr(value) for name, value in named.items()}
        image = {k: v for k, v in (("format", image_format), ("quality", image_quality)) if v is not None}
        if image:
            ImageEncoding(**{"format": "jpeg", **image})  # raises InvalidArgument for a bad format or quality
        for name, expr in exprs.items():
            self._check_expr(expr)
            if image and expr.col_type != ts.Image:
                raise InvalidArgument(
                    f"image_format and image_quality apply to Image columns; {name!r} is {expr.col_type!r}"
                )
        destinations = self._destinations(exprs, destination)
        runner = executor_for(self._session, executor)
        total = UpdateStatus(operation="updated")
        for name, expr in exprs.items():
            schema.check_name(name, "column")
            self._refresh()  # the catalog's current schema: another handle or process may have changed it
            self._check_expr(expr)
            if name in self._meta.columns and if_exists == "ignore":
                continue
            if name in self._meta.columns and if_exists == "error":
                raise AlreadyExists(f"column {name!r} already exists in {self.path!r}")
            column = Column(
                name=name,
                col_type=expr.col_type,
                table_name=self.path,
                owner_id=self._meta.id,
                position=0,
                computed=BuiltExpr(expr),
                computed_spec={**serialize.to_dict(expr), **({"image": image} if image else {})},
                on_error=on_error,
                destination=destinations.get(name),
            )
            meta, status = compute.add_computed(
                self._session,
                self._meta,
                column,
                if_exists="replace" if if_exists == "replace" else "error",
                desc=f"Computing `{name}`",
                executor=runner,
            )
            self._set_meta(meta)
            if not quiet:
                print(
                    f"Added {plural(status.num_computed_values, 'column value')} "
                    f"with {plural(status.num_excs, 'error')}."
                )
            total = total + status
            total.num_rows = status.num_rows
        return total

    def _destinations(self, exprs: dict[str, Expr], destination: str | None) -> dict[str, str]:
        """Each media column's destination URL, checked (and probed with a write) before any work."""
        explicit = destination is not None
        chosen = destination if explicit else self._session.settings.output_media_dest
        if chosen is None:
            return {}
        media = [name for name, expr in exprs.items() if expr.col_type.is_media]
        if explicit and not media:
            kinds = ", ".join(f"{name!r} is {expr.col_type!r}" for name, expr in exprs.items())
            raise InvalidArgument(f"destination= is for columns of generated media (Image, Video, ...): {kinds}")
        if not media:
            return {}
        try:
            parsed = parse_destination(chosen)
        except InvalidArgument as exc:
            raise InvalidArgument(f"column {media[0]!r}: {exc}") from None
        probe(parsed, self._session.stores, media[0])
        return dict.fromkeys(media, parsed.url)

    def _check_expr(self, expr: Expr) -> None:
        visible = self._meta.columns
        for node in expr.walk():
            if isinstance(node, ColumnRef) and visible.get(node.column.name) is None:
                raise ExprError(f"{node!r} is not a column of {self.path!r}")
            if isinstance(node, ColumnRef) and node.column.owner_id not in self._meta.owner_ids():
                raise ExprError(f"{node!r} belongs to another table than {self.path!r}")
        serialize.to_dict(expr)  # fails early if it cannot be stored

    def recompute_columns(
        self, *names: str, errors_only: bool = False, executor: str | None = None, quiet: bool = False
    ) -> UpdateStatus:
        """Compute the named computed columns again (and the columns that depend on them).

        Args:
            *names: computed column names.
            errors_only: only rows where one of them currently holds an error.
            executor: 'local', 'ray' or 'ray://host:port' (see :meth:`add_computed_column`).
            quiet: do not print the summary line.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('nums', {'n': mt.Int})
            Created table 'nums'.
            >>> _ = t.insert([{'n': 1}], quiet=True)
            >>> _ = t.add_computed_column(double=t.n * 2, quiet=True)
            >>> t.recompute_columns('double', errors_only=True)
            Recomputed 0 values with 0 errors.
            0 rows updated, 0 values computed.
        """
        self._check_writable()
        self._refresh()
        chosen: set[str] = set()
        for name in names:
            column = self._meta.own_columns.get(name)
            if column is None or not column.is_computed:
                raise ColumnNotFound(f"{name!r} is not a computed column of {self.path!r}")
            chosen.add(name)
        columns = compute.dependents_of(self._meta, chosen, include=True)
        status = compute.fill(
            self._session,
            self._meta,
            columns,
            on_error=None,
            desc="Recomputing",
            errors_only=errors_only,
            executor=executor_for(self._session, executor),
        )
        if not quiet:
            print(f"Recomputed {plural(status.num_computed_values, 'value')} with {plural(status.num_excs, 'error')}.")
        return status
