"""Object-store failures as :mod:`mediatable.errors`, with every secret scrubbed from the message.

obstore puts request URLs in its messages verbatim (query strings, i.e. signatures and SAS tokens,
included) and servers echo requests in their error bodies (S3's SignatureDoesNotMatch holds the
string to sign, Azure's AuthenticationErrorDetail the signature). What reaches a user is the status
line and a short excerpt of the body, bounded and scrubbed: URLs redacted, anything that looks like
a credential masked.
"""

from __future__ import annotations

import contextlib
import html
import re

import obstore.exceptions

from mediatable.errors import Error, MediaAccessDenied, MediaError, MediaFetchError, MediaFetchTimeout, MediaNotFound
from mediatable.io.urls import redact_url

__all__ = ["scrub", "translate_error"]

# The longest excerpt of a server's error body kept in a message.
BODY_EXCERPT = 200

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`,)]+")
_SECRET_PAIR = re.compile(
    r"(?i)\b(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|token|access_token|sas_key|sas_token|accountkey|account_key|sharedaccesssignature|"
    r"secret|secret_access_key|password|passwd|client_secret|private_key|api_key|apikey|key|credential|"
    r"authorization|auth|session)(\s*[=:]\s*)(\"?)[^&;,\s\"'<>]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic|sharedkey|aws4-hmac-sha256|goog4-rsa-sha256)\s+[^\s\"'<>]+")
# Runs that are credentials whatever surrounds them: AWS key ids, JWTs; in a server's body also any
# long string of base64/hex with letters and digits mixed (signatures, keys, tokens it echoes).
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_.-]+")
_OPAQUE = re.compile(r"(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9+/=_-]*\d)(?=[A-Za-z0-9+/=_-]*[A-Za-z])[A-Za-z0-9+/=_-]{24,}")
_STATUS = re.compile(r"status code: (\d{3})([^:\n]*)(?::\s?(.*))?", re.DOTALL)
_DEBUG_STATUS = re.compile(r"\bstatus: (\d{3})\b")
_HTTP_KIND = re.compile(r"HttpError \{\s*kind: (\w+)")
_OS_KIND = re.compile(r"kind: (ConnectionReset|ConnectionRefused|ConnectionAborted|BrokenPipe|TimedOut|UnexpectedEof)")
_OS_MESSAGE = re.compile(r'(?:message|error): "([^"]{1,200})"')
_XML_CODE = re.compile(r"<Code>\s*([^<]{1,100}?)\s*</Code>")
_XML_MESSAGE = re.compile(r"<Message>\s*([^<]{1,400})")
_JSON_MESSAGE = re.compile(r'"(?:message|error_description|error)"\s*:\s*"((?:[^"\\]|\\.){1,400})"')
_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.DOTALL | re.IGNORECASE)
_RETRYABLE_STATUS = frozenset({408, 425, 429})


def translate_error(exc: BaseException, url: str) -> MediaError:
    """Map an obstore or OS error for `url` onto :mod:`mediatable.errors`, without secrets.

    ==========================================  ==============================================
    failure                                     result
    ==========================================  ==============================================
    missing object or bucket, HTTP 404          :class:`MediaNotFound`
    HTTP 401 / 403, permission denied           :class:`MediaAccessDenied`
    connect / read / overall timeout            :class:`MediaFetchTimeout` (retryable)
    HTTP 5xx, 408, 429, reset, refused, cut     :class:`MediaFetchError`, ``retryable=True``
    other HTTP 4xx, bad path, DNS, config       :class:`MediaFetchError`, ``retryable=False``
    ==========================================  ==============================================

    The result carries `.url` (redacted) and `.status` (the HTTP status, or None). obstore puts request
    URLs in its messages verbatim (query strings, i.e. signatures and SAS tokens, included), so `exc`'s
    own message is replaced in place by a scrubbed one: `raise translate_error(exc, url) from exc` then
    prints no secret anywhere in the traceback.

    Args:
        exc: what obstore (or the OS) raised.
        url: the media URL being read or written; only its redacted form is kept.

    Returns:
        The error to raise (`exc` itself when it already is a :class:`MediaError`).

    Examples:
        >>> err = translate_error(FileNotFoundError("gone"), "https://h/a.jpg?sig=SECRET")
        >>> type(err).__name__, err.url
        ('MediaNotFound', 'https://h/a.jpg?…')
        >>> translate_error(TimeoutError(), "s3://b/k").is_retryable
        True
    """
    if isinstance(exc, MediaError):
        return exc
    safe_url = redact_url(url)
    text = str(exc)
    head, _, debug = text.partition("\n\nDebug source:")
    status, reason, body = None, "", ""
    match = _STATUS.search(head)
    if match:
        status, reason, body = int(match.group(1)), match.group(2).strip(), match.group(3) or ""
        head = head[: match.end(2)]
    elif found := _DEBUG_STATUS.search(debug):
        status = int(found.group(1))
    http_kind = (_HTTP_KIND.search(debug) or _HTTP_KIND.search(head) or _NO_MATCH).group(1)
    os_kind = (_OS_KIND.search(debug) or _NO_MATCH).group(1)
    os_message = (_OS_MESSAGE.search(debug) or _NO_MATCH).group(1)
    lowered = text.lower()

    body_detail = detail = body_excerpt(body)
    if status is not None:
        detail = f"HTTP {status} {scrub(reason)[:60]}".strip() + (f" - {detail}" if detail else "")
    elif os_message:
        detail = scrub(os_message)
    elif http_kind:
        detail = {"Connect": "cannot connect", "Interrupted": "connection closed mid-transfer"}.get(http_kind)

    timeout = isinstance(exc, TimeoutError) or http_kind == "Timeout" or os_kind == "TimedOut"
    # "Name or service not known" will not change by retrying; "Temporary failure in name resolution" may.
    dns = ("dns error" in lowered or "failed to lookup address" in lowered) and "temporary" not in lowered
    connection = (
        isinstance(exc, ConnectionError)
        or http_kind in ("Connect", "Interrupted", "Request", "Decode")
        or os_kind in ("ConnectionReset", "ConnectionRefused", "ConnectionAborted", "BrokenPipe", "UnexpectedEof")
    )

    error: MediaError
    if isinstance(exc, FileNotFoundError | obstore.exceptions.NotFoundError) or status == 404:
        error = MediaNotFound(_message("not found", safe_url, detail), url=safe_url)
    elif isinstance(
        exc,
        PermissionError | obstore.exceptions.PermissionDeniedError | obstore.exceptions.UnauthenticatedError,
    ) or status in (401, 403):
        error = MediaAccessDenied(_message("access denied", safe_url, detail), url=safe_url)
    elif timeout and status is None:
        error = MediaFetchTimeout(_message("timed out", safe_url, detail or "no answer in time"), url=safe_url)
    elif status is not None:
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        summary = "server error" if status >= 500 else "request failed"
        error = MediaFetchError(_message(summary, safe_url, detail), url=safe_url, status=status, retryable=retryable)
    elif dns:
        error = MediaFetchError(_message("unknown host", safe_url, detail or "DNS lookup failed"), url=safe_url)
    elif connection:
        error = MediaFetchError(_message("connection failed", safe_url, detail), url=safe_url, retryable=True)
    elif "builder error" in lowered:
        hint = "plain http:// needs allow_http = true (AWS_ALLOW_HTTP=true, or in the bucket's settings)"
        error = MediaFetchError(_message("cannot send request", safe_url, hint), url=safe_url)
    elif isinstance(exc, ValueError | obstore.exceptions.InvalidPathError):
        error = MediaFetchError(_message("invalid object path", safe_url, scrub(first_line(head))), url=safe_url)
    elif type(exc).__name__ == "PanicException":
        error = MediaFetchError(_message("object store crashed", safe_url, scrub(first_line(head))), url=safe_url)
    elif isinstance(exc, Error):
        error = MediaFetchError(_message(type(exc).__name__, safe_url, scrub(first_line(head))), url=safe_url)
    else:
        error = MediaFetchError(_message("transfer failed", safe_url, scrub(first_line(head))), url=safe_url)
    # Not every class in the tree declares .status; set it on all so callers can read it uniformly.
    error.status = status
    _scrub_in_place(exc, head, body_detail or (os_message and scrub(os_message)), http_kind)
    return error


class _NoMatch:
    @staticmethod
    def group(_: int) -> None:
        return None


_NO_MATCH = _NoMatch()


def _message(summary: str, safe_url: str, detail: str | None) -> str:
    return f"{summary}: {safe_url}" + (f" ({detail})" if detail else "")


def body_excerpt(body: str, limit: int = BODY_EXCERPT) -> str | None:
    """The useful words of a server's error body, scrubbed and at most `limit` characters.

    XML `<Code>`/`<Message>` (S3, GCS XML, Azure) and JSON `message`/`error` fields are picked out;
    any other body (plain text, an HTML error page) gives its first words with tags removed.

    Examples:
        >>> body_excerpt("<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
        'AccessDenied: Access Denied'
        >>> body_excerpt("denied: key=hunter2 for AKIAABCDEFGHIJKLMNOP")
        'denied: key=*** for ***'
    """
    if not body.strip():
        return None
    code = _XML_CODE.search(body)
    message = _XML_MESSAGE.search(body) or _JSON_MESSAGE.search(body)
    if code or message:
        parts = [code.group(1) + (":" if message else "") if code else "", message.group(1) if message else ""]
        text = " ".join(p for p in parts if p)
    else:
        text = _TAG.sub(" ", body)
    text = " ".join(html.unescape(text).split())  # one line: no control characters, no layout
    cleaned = _OPAQUE.sub("***", scrub(text))
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned or None


def scrub(text: str) -> str:
    """`text` with URLs redacted and anything that looks like a credential masked.

    Examples:
        >>> scrub("GET https://h/a.jpg?sig=abc failed; Authorization: Bearer tok123")
        'GET https://h/a.jpg?… failed; Authorization: *** ***'
    """
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***", text)
    text = _AWS_KEY_ID.sub("***", text)
    return _JWT.sub("***", text)


def first_part(text: str) -> str:
    """An obstore message without its `Debug source:` tail."""
    return text.partition("\n\nDebug source:")[0].strip()


def first_line(text: str) -> str:
    """The first line of `text`, at most 300 characters."""
    return text.strip().partition("\n")[0][:300]


def _scrub_in_place(exc: BaseException, head: str, detail: str | None, http_kind: str | None) -> None:
    """Replace `exc`'s message by its scrubbed first part, so a chained traceback shows no secret."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return  # a real OS error: its message is the OS's, built from errno and a local file name
    cleaned = scrub(first_line(head))
    extras = [x for x in (detail, http_kind and f"kind: {http_kind}") if x]
    if extras:
        cleaned += f" [{'; '.join(extras)}]"
    with contextlib.suppress(AttributeError, TypeError):  # exotic exception types with fixed args
        exc.args = (cleaned,)
