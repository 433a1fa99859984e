"""`presigned_url(t.video, 3600)`: an expression whose value is a time-limited HTTPS link to each object.

The node reads its source (a media column, or a String of URLs) without downloading anything and
asks the executor to sign the whole batch at once (:meth:`EvalEnv.presign`), so signing is grouped
per store. The expiration is checked when the expression is built (a positive whole number of
seconds) and, through :meth:`PresignedUrl.check_urls`, against each provider's maximum before a
computed column starts; a URL that cannot be signed is that cell's error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mediatable import types as ts
from mediatable.errors import DataError, ExprError, InvalidArgument
from mediatable.exprs.base import Expr, as_expr
from mediatable.exprs.cells import CellError, EvalEnv
from mediatable.io.presign import check_expiration
from mediatable.io.urls import parse_url, redact_url


class PresignedUrl(Expr):
    """The presigned HTTPS URL of each URL `source` yields (None stays None).

    Args:
        source: a media expression (`t.video`) or a String expression holding URLs.
        expiration_seconds: how long each link stays valid.

    Raises:
        ExprError: `source` is neither media nor String.
        InvalidArgument: `expiration_seconds` is not a positive whole number of seconds.

    Examples:
        >>> from mediatable.exprs.base import Literal
        >>> PresignedUrl(Literal("s3://bucket/a.jpg"), 600)
        presigned_url('s3://bucket/a.jpg', expiration_seconds=600)
        >>> PresignedUrl(Literal("s3://bucket/a.jpg"), 0)
        Traceback (most recent call last):
        ...
        mediatable.errors.InvalidArgument: expiration_seconds must be positive, not 0
    """

    col_type = ts.String

    def __init__(self, source: Any, expiration_seconds: Any = 3600) -> None:
        self.source = as_expr(source)
        if not (self.source.col_type.is_media or self.source.col_type == ts.String):
            raise ExprError(
                f"presigned_url() needs a media or String expression (URLs), not {self.source.col_type!r}: "
                f"{self.source!r}"
            )
        self.expiration_seconds = check_expiration(expiration_seconds)

    def __repr__(self) -> str:
        return f"presigned_url({self.source!r}, expiration_seconds={self.expiration_seconds})"

    def default_name(self) -> str:
        return f"{self.source.default_name()}_presigned_url"

    def children(self) -> Sequence[Expr]:
        return (self.source,)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        values = self.source.eval_batch(envs)
        wanted = [i for i, value in enumerate(values) if isinstance(value, str)]
        out: list[Any] = list(values)
        if not wanted:
            return out
        signed = envs[0].presign([values[i] for i in wanted], self.expiration_seconds)
        for index, result in zip(wanted, signed, strict=True):
            out[index] = CellError.from_exception(result) if isinstance(result, BaseException) else result
        return out

    def check_urls(self, urls: Iterable[Any], column: str) -> None:
        """Raise before any work when one of `urls` is of a provider whose maximum the expiration exceeds.

        Args:
            urls: the values the source column holds.
            column: the computed column's name, for the message.

        Raises:
            InvalidArgument: names the column, the first such URL (redacted) and the provider's maximum.
        """
        for url in urls:
            if not isinstance(url, str):
                continue
            try:
                kind = parse_url(url).kind
            except DataError:
                continue  # that cell's own error, when it is evaluated
            try:
                check_expiration(self.expiration_seconds, kind)
            except InvalidArgument as exc:
                raise InvalidArgument(f"column {column!r}: {exc}, e.g. for {redact_url(url)}") from None
