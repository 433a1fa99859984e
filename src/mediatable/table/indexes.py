"""Embedding indexes of a table handle: `add_embedding_index`, `drop_embedding_index`, `embedding_indexes`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mediatable.catalog import indexes
from mediatable.catalog.catalog import check_choice, read_only
from mediatable.catalog.schema import check_name
from mediatable.errors import InvalidArgument
from mediatable.exec import embedding_index
from mediatable.exprs import serialize
from mediatable.functions.udf import Function
from mediatable.table.base import TableBase


class EmbeddingIndexes(TableBase):
    """Embedding-index operations of a :class:`~mediatable.table.Table`."""

    def add_embedding_index(
        self,
        column: str,
        *,
        embedding: Function,
        name: str | None = None,
        if_exists: str = "error",
        quiet: bool = False,
    ) -> None:
        """Index a column by an embedding function, for `t.col.similarity(query)` in queries.

        Every row's value is embedded now (media fetched through the cache), and so are rows inserted
        or changed later; deleted rows leave the index. On a view, the column may be one of its base
        table's: each base row's value is embedded once, kept current when the base changes, and every
        view row from that base row gets its score.

        Args:
            column: the column to index (text, images, ... whatever `embedding` takes).
            embedding: any function of one value that returns a vector, e.g. `mt.functions.embed_text`,
                `mt.functions.embed_image`, `mt.functions.openai.embeddings` or your own `@mt.udf`
                (batched or not).
            name: the index's name (default `<column>_idx`).
            if_exists: 'error', 'ignore' or 'replace' when an index of that name exists.
            quiet: do not print the summary line.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('words', {'word': mt.String})
            Created table 'words'.
            >>> _ = t.insert([{'word': w} for w in ('apple', 'banana', 'cherry')], quiet=True)
            >>> @mt.udf
            ... def letters(word: str) -> mt.Array(mt.Float, (26,)):
            ...     return [word.count(chr(97 + i)) for i in range(26)]
            >>> t.add_embedding_index('word', embedding=letters)
            Indexed 3 values of 'word' with 0 errors.
            >>> t.order_by(t.word.similarity('bandana'), asc=False).limit(1).select(t.word).collect()['word']
            ['banana']
        """
        check_choice("if_exists", if_exists, ("error", "ignore", "replace"))
        self._check_writable()
        if not isinstance(embedding, Function):
            raise InvalidArgument("embedding= must be a mediatable function (mt.functions.embed_text, an @mt.udf, ...)")
        meta = self._fresh()
        source = self[column].column  # ColumnNotFound for a wrong name
        indexes.indexable_owner(meta, source)  # a view's own column or its base's; not one further down
        name = check_name(name or f"{column}_idx", "index")
        serialize.function_ref(embedding)  # fails now if it could not be found again later
        with self._session.engine.begin() as conn:
            existing = [i for i in indexes.list_indexes(conn, meta.id) if i.name == name]
            if existing and if_exists == "ignore":
                return
            if existing and if_exists == "replace":
                indexes.drop_index(conn, existing[0])
            index = indexes.add_index(conn, meta, name, source, embedding)
        try:
            failed = embedding_index.catch_up(self._session, meta, index)
        except BaseException:
            with self._session.engine.begin() as conn:
                indexes.drop_index(conn, index)  # all or nothing: no half-filled index is left behind
            raise
        if not quiet:
            with read_only(self._session.engine) as conn:
                total = conn.execute(sa.select(sa.func.count()).select_from(index.vectors)).scalar_one()
            print(f"Indexed {total} values of {column!r} with {failed} errors.")

    def drop_embedding_index(self, column: str | None = None, *, name: str | None = None) -> None:
        """Drop an embedding index, by column (when it has one index) or by name.

        Examples:
            >>> # t.drop_embedding_index('caption')
        """
        if (column is None) == (name is None):
            raise InvalidArgument("drop_embedding_index() takes a column or name=, not both or neither")
        self._check_writable()
        with self._session.engine.begin() as conn:
            indexes.drop_index(conn, indexes.find_index(conn, self._fresh(), name=name, column=column))

    @property
    def embedding_indexes(self) -> dict[str, Any]:
        """The table's embedding indexes: name -> `{'column': ..., 'embedding': function name}`."""
        meta = self._fresh()
        out = {}
        for index in embedding_index.table_indexes(self._session, meta):
            column = index.column(meta)
            out[index.name] = {"column": column.name if column else None, "embedding": index.function.name}
        return out
