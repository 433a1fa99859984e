"""Document -> one row per page, with the page's text.

Examples:
    >>> [row["page"] for row in DocumentPageIterator("report.pdf")]  # doctest: +SKIP
    [1, 2, 3]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from mediatable import types as ts
from mediatable.functions.document import page_texts


class DocumentPageIterator:
    """Yields `{'pos', 'page', 'text'}` rows, one per page of a local document.

    `pos` counts rows from 0 and `page` is the 1-based page number (as a PDF viewer shows it). A PDF
    gives one row per page (the text pypdf extracts; `''` for a page without a text layer); text,
    Markdown and HTML documents give one row holding their whole text (see
    :mod:`mediatable.functions.document`).

    Lifecycle: the constructor only records the path; each iteration reads the file afresh and
    extracts pages lazily, one per row.

    Args:
        path: local document file.

    Raises:
        MediaDecodeError: the document cannot be read (while iterating).

    Examples:
        >>> list(DocumentPageIterator("two_pages.pdf"))  # doctest: +SKIP
        [{'pos': 0, 'page': 1, 'text': 'first page'}, {'pos': 1, 'page': 2, 'text': 'second page'}]
    """

    output_schema = {"pos": ts.Int, "page": ts.Int, "text": ts.String}

    @staticmethod
    def reads_ranges(**options: Any) -> bool:
        """Whether iterating reads only parts of a file: never, it reads all of it."""
        return False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"DocumentPageIterator({self.path!r})"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for pos, text in enumerate(page_texts(self.path)):
            yield {"pos": pos, "page": pos + 1, "text": text}
