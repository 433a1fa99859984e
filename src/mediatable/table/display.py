"""HTML for notebooks: results and tables as tables with inline thumbnails.

Images become small inline JPEG/PNG thumbnails; videos their first frame; short audio an inline
player (longer audio its file name); long text and JSON are folded (`<details>`); every URL is
redacted and every value HTML-escaped. A cell that cannot be shown says why instead of breaking
the table.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import PIL.Image

from mediatable import types as ts
from mediatable.errors import MediaError
from mediatable.exec.media_cells import MediaCell
from mediatable.exprs import CellError
from mediatable.functions import video as video_functions
from mediatable.io.urls import is_url_like, redact_url

THUMBNAIL = (96, 96)
FOLD_AT = 80
AUDIO_INLINE_BYTES = 2 * 1024 * 1024
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_STYLE = (
    "<style>.mt-table{border-collapse:collapse;font:13px sans-serif}"
    ".mt-table th,.mt-table td{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}"
    ".mt-table th small{color:#888;font-weight:normal}.mt-null{color:#aaa}.mt-err{color:#b00}</style>"
)


def table_html(
    columns: Sequence[str],
    col_types: Sequence[ts.ColumnType],
    rows: Sequence[Sequence[Any]],
    *,
    caption: str = "",
    total: int | None = None,
) -> str:
    """An HTML table of `rows` (values as a query returns them), with a header naming types.

    Examples:
        >>> html_text = table_html(["n", "label"], [ts.Int, ts.String], [[1, "<b>cat</b>"]])
        >>> "&lt;b&gt;cat&lt;/b&gt;" in html_text and "<small>Int</small>" in html_text
        True
    """
    head = "".join(
        f"<th>{html.escape(name)}<br><small>{html.escape(repr(t))}</small></th>"
        for name, t in zip(columns, col_types, strict=True)
    )
    body = "".join(
        "<tr>" + "".join(f"<td>{cell_html(v, t)}</td>" for v, t in zip(row, col_types, strict=True)) + "</tr>"
        for row in rows
    )
    more = ""
    if total is not None and total > len(rows):
        more = f"<p>{len(rows)} of {total} rows shown</p>"
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'{_STYLE}<table class="mt-table">{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


def error_text(error: CellError) -> str:
    """A failed cell as text: its error type and message (URLs in it redacted).

    Examples:
        >>> error_text(CellError("MediaNotFound", "404 for https://h/a.jpg?token=x"))
        'MediaNotFound: 404 for https://h/a.jpg?…'
    """
    message = _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), error.errormsg)
    return f"{error.errortype}: {message}" if message else error.errortype


def cell_html(value: Any, col_type: ts.ColumnType) -> str:
    """One cell as HTML (never raises: a cell that cannot be shown says why, a failed cell its error)."""
    if value is None:
        return '<span class="mt-null">None</span>'
    if isinstance(value, CellError):
        text = error_text(value)
        short = text if len(text) <= FOLD_AT else text[: FOLD_AT - 1] + "…"
        return f'<span class="mt-err" title="{html.escape(text)}">{html.escape(short)}</span>'
    try:
        if isinstance(value, MediaCell):
            return _media_html(value)
        if isinstance(value, PIL.Image.Image):
            return _image_tag(value, "")
        if col_type == ts.Json or isinstance(value, dict | list):
            return _text_html(json.dumps(_redacted(value), default=str, ensure_ascii=False))
        return _text_html(str(value))
    except (MediaError, OSError, ValueError) as exc:
        return f'<span class="mt-err">cannot show: {html.escape(str(exc))}</span>'


def _media_html(cell: MediaCell) -> str:
    title = cell.redacted_url or Path(cell.path).name
    if cell.col_type == ts.Image:
        with cell.value() as image:
            return _image_tag(image, title)
    if cell.col_type == ts.Video:
        frame = video_functions.extract_frame(cell.path, 0.0)
        if frame is None:
            return _text_html(title)
        return _image_tag(frame, title)
    if cell.col_type == ts.Audio and Path(cell.path).stat().st_size <= AUDIO_INLINE_BYTES:
        data = base64.b64encode(Path(cell.path).read_bytes()).decode("ascii")
        mime = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg", ".m4a": "audio/mp4"}.get(
            Path(cell.path).suffix.lower(), "audio/mpeg"
        )
        return f'<audio controls preload="none" title="{html.escape(title)}" src="data:{mime};base64,{data}"></audio>'
    return _text_html(title)


def _image_tag(image: PIL.Image.Image, title: str) -> str:
    thumb = image.copy()
    thumb.thumbnail(THUMBNAIL)
    lossless = thumb.mode in ("RGBA", "LA", "P", "1")
    if not lossless and thumb.mode != "RGB":
        thumb = thumb.convert("RGB")
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG" if lossless else "JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    mime = "image/png" if lossless else "image/jpeg"
    alt = html.escape(title or f"image {image.width}x{image.height}")
    return (
        f'<img src="data:{mime};base64,{data}" alt="{alt}" title="{alt}" width="{thumb.width}" height="{thumb.height}">'
    )


def _redacted(value: Any) -> Any:
    """JSON with every URL in it redacted."""
    if isinstance(value, str):
        return redact_url(value) if is_url_like(value) else value
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _text_html(text: str) -> str:
    if is_url_like(text):
        text = redact_url(text)  # a stored presigned URL's signature is a secret: never show it
    if len(text) <= FOLD_AT:
        return html.escape(text)
    return f"<details><summary>{html.escape(text[:FOLD_AT])}…</summary>{html.escape(text)}</details>"
