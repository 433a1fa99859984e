"""Tests of mediatable.functions.document on generated PDFs, text, Markdown and HTML files."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import mediagen
from mediatable import types as ts
from mediatable.errors import MediaDecodeError, MediaNotFound
from mediatable.exprs import CellError, FunctionCall
from mediatable.exprs.methods import lookup_method
from mediatable.functions import document
from mediatable.functions.udf import Function

PAGES = ["Annual report\nRevenue grew (a lot)", "Page two: café 100%", "The end"]
HTML = """<!DOCTYPE html>
<html><head><title> Quarterly
  notes </title><style>p { color: red }</style><script>var x = "<p>hidden</p>";</script></head>
<body><h1>Results</h1><p>Revenue   grew<br>by 5&nbsp;% &amp; more.</p>
<ul><li>one</li><li>two</li></ul><!-- a comment --></body></html>"""


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("documents")
    files = {
        "pdf": mediagen.make_pdf(folder / "report.pdf", PAGES, title="Report 2026", author="Ada"),
        "bare_pdf": mediagen.make_pdf(folder / "bare.pdf", ["only page"]),
        "corrupt_pdf": mediagen.make_corrupt_pdf(folder / "corrupt.pdf"),
        "txt": folder / "notes.txt",
        "md": folder / "README.md",
        "html": folder / "page.html",
        "latin1": folder / "latin1.txt",
        "sniffed_pdf": folder / "download",
        "sniffed_html": folder / "index",
    }
    files["txt"].write_text("line one\n  line two  \n", encoding="utf-8")
    files["md"].write_bytes("\ufeff# Title\n\n*emphasis*".encode())  # with a byte-order mark
    files["html"].write_text(HTML, encoding="utf-8")
    files["latin1"].write_bytes("caf\xe9".encode("latin-1"))
    files["sniffed_pdf"].write_bytes(files["pdf"].read_bytes())
    files["sniffed_html"].write_text(HTML, encoding="utf-8")
    return files


def test_pdf(media: dict[str, Path]) -> None:
    assert document.page_count(media["pdf"]) == 3
    assert document.text(media["pdf"]) == "\n\n".join(PAGES)
    assert list(document.page_texts(media["pdf"])) == PAGES


def test_pdf_metadata(media: dict[str, Path]) -> None:
    assert document.metadata(media["pdf"]) == {
        "format": "pdf",
        "page_count": 3,
        "size_bytes": media["pdf"].stat().st_size,
        "title": "Report 2026",
        "author": "Ada",
        "subject": None,
        "creator": None,
        "producer": "mediagen",
        "created": None,
        "encrypted": False,
    }
    assert document.metadata(media["bare_pdf"])["title"] is None


def test_plain_text_and_markdown(media: dict[str, Path]) -> None:
    assert document.text(media["txt"]) == "line one\n  line two  \n"  # as is
    assert document.text(media["md"]) == "# Title\n\n*emphasis*"  # byte-order mark dropped
    assert document.page_count(media["md"]) == 1
    info = document.metadata(media["txt"])
    assert (info["format"], info["page_count"], info["title"]) == ("text", 1, None)
    assert info["size_bytes"] == len(b"line one\n  line two  \n")


def test_html_text_is_visible_text(media: dict[str, Path]) -> None:
    # entities decoded, runs of whitespace (no-break spaces too) collapsed, one line per block
    assert document.text(media["html"]) == "Results\nRevenue grew\nby 5 % & more.\none\ntwo"
    assert document.metadata(media["html"])["title"] == "Quarterly notes"
    assert document.page_count(media["html"]) == 1


def test_format_sniffed_without_extension(media: dict[str, Path]) -> None:
    assert document.document_format(media["sniffed_pdf"]) == "pdf"
    assert document.text(media["sniffed_pdf"]) == "\n\n".join(PAGES)
    assert document.document_format(media["sniffed_html"]) == "html"
    assert document.document_format(media["txt"]) == "text"


CALLS = [document.page_count, document.text, document.metadata]


@pytest.mark.parametrize("function", CALLS, ids=[f.__name__ for f in CALLS])
def test_decode_errors(media: dict[str, Path], tmp_path: Path, function: Function) -> None:
    with pytest.raises(MediaDecodeError, match=r"cannot decode document .*corrupt\.pdf"):
        function(media["corrupt_pdf"])
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(media["pdf"].read_bytes()[:300])
    with pytest.raises(MediaDecodeError):
        function(truncated)
    with pytest.raises(MediaNotFound):
        function(tmp_path / "missing.pdf")


def test_text_that_is_not_utf8(media: dict[str, Path]) -> None:
    with pytest.raises(MediaDecodeError, match="not UTF-8"):
        document.text(media["latin1"])


def test_registered_as_document_properties() -> None:
    for function in CALLS:
        assert lookup_method("Document", function.__name__) == (function, True)
    assert [f.return_type for f in CALLS] == [ts.Int, ts.String, ts.Json]


def test_expressions(media: dict[str, Path]) -> None:
    col = mediagen.column("doc", ts.Document)
    assert isinstance(col.text, FunctionCall) and col.text.col_type == ts.String
    rows = [{"doc": str(media["pdf"])}, {"doc": None}, {"doc": str(media["corrupt_pdf"])}]
    counts = mediagen.evaluate(col.page_count, rows)
    assert counts[:2] == [3, None]
    assert isinstance(counts[2], CellError) and counts[2].errortype == "MediaDecodeError"
    # a string method on a document property
    assert mediagen.evaluate(col.text.upper().startswith("ANNUAL"), rows[:1]) == [True]


def test_docstring_examples_run() -> None:
    assert doctest.testmod(document).failed == 0
