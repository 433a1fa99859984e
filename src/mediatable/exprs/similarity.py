"""`t.caption.similarity('a red car')`: how close each row's indexed value is to a query, by embedding.

The node is a Float expression for queries: `order_by(t.caption.similarity(q), asc=False).limit(10)`
or `select(score=t.caption.similarity(q))`. It needs an embedding index on the column
(`t.add_embedding_index`): before a query runs, the executor binds each node to a scorer that
holds the query's embedding and reads the rows' stored vectors (:meth:`Similarity.bind`), and may
use the index to read only the best candidates. The score is the cosine similarity (1: same
direction, 0: unrelated), computed from the stored vectors, so it is the same on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, Protocol

from mediatable import types as ts
from mediatable.errors import ExprError
from mediatable.exprs.base import Expr
from mediatable.exprs.cells import CellError, EvalEnv
from mediatable.exprs.columns import ColumnRef


class Scorer(Protocol):
    """What a bound similarity node asks the executor for: scores of rows by their ids.

    `key` names the row id the scores are keyed by (`_rowid`, or `_base_rowid` for a view's index
    on a column of its base).
    """

    key: str

    def scores(self, rowids: Sequence[int]) -> list[float | None]: ...


class Similarity(Expr):
    """Cosine similarity between a column's indexed embedding and the embedding of `query`.

    Args:
        ref: an indexed column (`t.caption`, `t.image`).
        query: a value of the kind the index embeds (text for a text index; a PIL image or local path
            for an image index).
        index: the index's name, when the column has several.

    Examples:
        >>> # t.order_by(t.caption.similarity('a red car'), asc=False).limit(10).collect()
    """

    col_type = ts.Float

    def __init__(self, ref: Any, query: Any, index: str | None = None) -> None:
        if not isinstance(ref, ColumnRef):
            raise ExprError(
                f"similarity() is a method of an indexed column (t.caption.similarity(...)), not of {ref!r}"
            )
        if isinstance(query, Expr):
            raise ExprError("similarity() takes a value to compare with (a text, an image), not an expression")
        self.ref = ref
        self.query = query
        self.index = index
        self._scorer: Scorer | None = None

    def __repr__(self) -> str:
        shown = repr(self.query) if isinstance(self.query, str | int | float) else type(self.query).__name__
        return f"{self.ref!r}.similarity({shown})"

    def default_name(self) -> str:
        return f"{self.ref.default_name()}_similarity"

    def children(self) -> Sequence[Expr]:
        return (self.ref,)

    def bind(self, scorer: Scorer) -> None:
        """Use `scorer` for the rows of the query about to run."""
        self._scorer = scorer

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        if self._scorer is None:
            message = "similarity() is computed by queries over a table with an embedding index on the column"
            return [CellError("ExprError", message)] * len(envs)
        key = SimpleNamespace(name=self._scorer.key)  # a row id the executor keeps in every row it evaluates
        rowids = [env.column_value(key) for env in envs]
        return list(self._scorer.scores(rowids))


def similarity(ref: Any, query: Any, index: str | None = None) -> Similarity:
    """`column.similarity(query)` (registered as a method of String and Image columns)."""
    return Similarity(ref, query, index)
