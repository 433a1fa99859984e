"""Built-in document functions: `t.doc.page_count`, `t.doc.text`, `t.doc.metadata`.

The document argument is the path of a local file (in a table: the cached copy of the stored URL).
Supported formats, told apart by extension and, failing that, by the file's first bytes:

- PDF (`.pdf`), read with pypdf: one page per PDF page;
- plain text and Markdown (`.txt`, `.md`, ...): one page, the text as is (UTF-8);
- HTML (`.html`, `.htm`): one page, the visible text (tags, scripts and styles removed).

A file that is not valid in its format raises :class:`~mediatable.errors.MediaDecodeError`.
:func:`page_texts` is the plain reader behind these functions and the document-page iterator.

Examples:
    >>> import pathlib, tempfile
    >>> note = pathlib.Path(tempfile.mkdtemp()) / "note.html"
    >>> _ = note.write_text("<p>Hello <b>world</b></p><script>x = 1</script>")
    >>> text(note), page_count(note)
    ('Hello world', 1)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pypdf

from mediatable import types as ts
from mediatable.errors import MediaDecodeError
from mediatable.functions._errors import decode_errors
from mediatable.functions.udf import udf

PAGE_SEPARATOR = "\n\n"
_HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def document_format(path: str | os.PathLike[str]) -> str:
    """`'pdf'`, `'html'` or `'text'` for a file, by extension, else by its first bytes.

    Raises:
        MediaNotFound: no such file.

    Examples:
        >>> document_format("report.PDF")
        'pdf'
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".pdf":
        return "pdf"
    if suffix in _HTML_SUFFIXES:
        return "html"
    if suffix in (".txt", ".md", ".markdown", ".rst", ".csv"):
        return "text"
    with decode_errors("document", path), open(path, "rb") as file:
        head = file.read(1024)
    if head.startswith(b"%PDF"):
        return "pdf"
    if re.match(rb"\s*<(!doctype html|html)", head, re.IGNORECASE):
        return "html"
    return "text"


def page_texts(path: str | os.PathLike[str]) -> Iterator[str]:
    """The text of each page, read lazily (a non-PDF document is one page).

    Raises:
        MediaNotFound: no such file.
        MediaDecodeError: the file is not a valid document of its format (or not UTF-8 text).

    Examples:
        >>> import pathlib, tempfile
        >>> note = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = note.write_text("line one")
        >>> list(page_texts(note))
        ['line one']
    """
    kind = document_format(path)
    if kind == "pdf":
        with decode_errors("document", path):
            reader = _open_pdf(path)
            for page in reader.pages:
                yield page.extract_text()
        return
    body = _read_text(path)
    yield _html_text(body) if kind == "html" else body


def _open_pdf(path: str | os.PathLike[str]) -> pypdf.PdfReader:
    reader = pypdf.PdfReader(path)
    if reader.is_encrypted and not reader.decrypt(""):  # many PDFs are "encrypted" with no password
        raise MediaDecodeError(f"cannot decode document {os.fspath(path)!r}: it needs a password")
    return reader


def _read_text(path: str | os.PathLike[str]) -> str:
    with decode_errors("document", path):
        data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")  # -sig: drop a byte-order mark, as editors on Windows write one
    except UnicodeDecodeError as exc:
        raise MediaDecodeError(f"cannot decode document {os.fspath(path)!r}: not UTF-8 text ({exc})") from exc


class _TextExtractor(HTMLParser):
    """Collects visible text: skips script/style/head content, breaks lines at block elements."""

    _HIDDEN = frozenset({"script", "style", "head", "template", "noscript"})
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer"}
        | {"h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "title", "hr"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"
        if tag in self._HIDDEN:
            self._hidden += 1
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False
        if tag in self._HIDDEN and self._hidden:
            self._hidden -= 1
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data
        if not self._hidden:
            self.parts.append(data)


def _parse_html(body: str) -> _TextExtractor:
    parser = _TextExtractor()
    parser.feed(body)
    parser.close()
    return parser


def _html_text(body: str) -> str:
    """Visible text, whitespace collapsed within lines, one line per block, no blank lines."""
    raw = "".join(_parse_html(body).parts)
    lines = (" ".join(line.split()) for line in raw.split("\n"))
    return "\n".join(line for line in lines if line)


@udf(method_of=ts.Document, is_property=True)
def page_count(doc: ts.Document) -> int:
    """Number of pages: a PDF's page count; 1 for text, Markdown and HTML.

    Examples:
        >>> page_count("report.pdf")  # doctest: +SKIP
        12
    """
    if document_format(doc) != "pdf":
        return 1
    with decode_errors("document", doc):
        return len(_open_pdf(doc).pages)


@udf(method_of=ts.Document, is_property=True)
def text(doc: ts.Document) -> str:
    """The document's text; PDF pages are joined with a blank line (`PAGE_SEPARATOR`).

    PDF text is what pypdf extracts (scanned pages without a text layer give `''`); HTML gives its
    visible text, one line per block element.

    Examples:
        >>> text("report.pdf")  # doctest: +SKIP
        'Page one text\\n\\nPage two text'
    """
    return PAGE_SEPARATOR.join(page_texts(doc))


@udf(method_of=ts.Document, is_property=True)
def metadata(doc: ts.Document) -> dict[str, Any]:
    """Facts about the document; the same keys for every format, None when unknown.

    Returns:
        `{'format': 'pdf'|'html'|'text', 'page_count': int, 'size_bytes': int, 'title': str|None,
        'author': str|None, 'subject': str|None, 'creator': str|None, 'producer': str|None,
        'created': ISO-8601 str|None, 'encrypted': bool}`. HTML's title is its `<title>`.

    Examples:
        >>> metadata("report.pdf")["page_count"]  # doctest: +SKIP
        12
    """
    kind = document_format(doc)
    with decode_errors("document", doc):
        size_bytes = os.path.getsize(doc)
    info: dict[str, Any] = dict.fromkeys(("title", "author", "subject", "creator", "producer", "created"))
    info.update(format=kind, page_count=1, size_bytes=size_bytes, encrypted=False)
    if kind == "pdf":
        with decode_errors("document", doc):
            reader = _open_pdf(doc)
            info.update(page_count=len(reader.pages), encrypted=reader.is_encrypted)
            fields = reader.metadata
            if fields is not None:
                created = fields.creation_date
                info.update(
                    title=fields.title,
                    author=fields.author,
                    subject=fields.subject,
                    creator=fields.creator,
                    producer=fields.producer,
                    created=created.isoformat() if created else None,
                )
    elif kind == "html":
        title = _parse_html(_read_text(doc)).title
        info["title"] = " ".join(title.split()) if title else None
    return info
