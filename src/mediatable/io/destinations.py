"""Destinations for generated media: where a computed media column writes its files.

A destination is a bucket prefix (`s3://bucket/prefix/`, `gs://…`, `az://container/prefix/`, and
the other Azure spellings) or a local folder (a path or `file://` URL). Objects are named by their
content, `<prefix><sha256 of the bytes><extension>`, so identical outputs are stored once and a
re-run writes the same names. Nothing here deletes objects, except the probe object
:func:`probe` writes to check that the destination accepts writes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import uuid
from pathlib import Path

from mediatable.errors import InvalidArgument, MediaAccessDenied, MediaError, MediaNotFound, UnsupportedScheme
from mediatable.io.objects import ObjectStores
from mediatable.io.urls import is_url_like, parse_url, redact_url

__all__ = ["Destination", "parse_destination", "probe"]

log = logging.getLogger(__name__)

_WRITABLE = ("s3", "gs", "azure", "file")


@dataclasses.dataclass(frozen=True)
class Destination:
    """A parsed destination.

    Attributes:
        url: the destination's normalized URL, ending with `/` (e.g. `s3://bucket/thumbs/`).
        kind: `"s3"`, `"gs"`, `"azure"` or `"file"`.
        bucket: the bucket or container (`""` for a local folder).

    Examples:
        >>> d = parse_destination("s3://bucket/thumbs")
        >>> d.url, d.object_url("ab12.png")
        ('s3://bucket/thumbs/', 's3://bucket/thumbs/ab12.png')
    """

    url: str
    kind: str
    bucket: str

    def object_url(self, name: str) -> str:
        """The URL of the object called `name` under this destination."""
        return parse_url(self.url + name).url

    @property
    def local_folder(self) -> Path | None:
        """The folder of a local destination, else None."""
        return parse_url(self.url + "x").local_path.parent if self.kind == "file" else None  # type: ignore[union-attr]


def parse_destination(value: str | os.PathLike[str]) -> Destination:
    """Check and normalize a destination.

    Raises:
        InvalidArgument: an empty value, a scheme that cannot be written (http(s), unknown ones).

    Examples:
        >>> parse_destination("/data/thumbs").url
        'file:///data/thumbs/'
        >>> parse_destination("https://example.com/thumbs/")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mediatable.errors.InvalidArgument: cannot write generated media to https://example.com/thumbs/: web servers...
    """
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"destination must be s3://, gs://, az:// or a local folder, not {value!r}")
    text = text.strip()
    if text.startswith("~"):
        text = os.path.expanduser(text)
    try:
        probe_url = parse_url(text.rstrip("/") + "/x")
    except UnsupportedScheme as exc:
        raise InvalidArgument(
            f"unsupported destination {redact_url(text)}: {exc}; use s3://, gs://, az:// or a local folder"
        ) from None
    if probe_url.kind not in _WRITABLE:
        raise InvalidArgument(
            f"cannot write generated media to {redact_url(text)}: web servers are read-only; "
            "use s3://, gs://, az:// or a local folder"
        )
    if "?" in probe_url.url or "#" in probe_url.url:
        raise InvalidArgument(f"a destination has no query string or fragment: {redact_url(text)}")
    if probe_url.kind != "file" and not probe_url.bucket:
        raise InvalidArgument(f"destination {redact_url(text)} names no bucket")
    base = probe_url.url[: -len("x")]
    if not is_url_like(base):
        raise InvalidArgument(f"cannot use {text!r} as a destination")
    return Destination(url=base, kind=probe_url.kind, bucket=probe_url.bucket)


def probe(destination: Destination, stores: ObjectStores, column: str) -> None:
    """Check that `destination` accepts writes: write a small object there and delete it again.

    A local folder is created when missing.

    Args:
        destination: where the column will write.
        stores: the session's stores (credentials, endpoints).
        column: the column's name, for messages.

    Raises:
        MediaNotFound: the bucket does not exist; the message names it and the credentials tried.
        MediaAccessDenied: the credentials may not write there.
        MediaError: another failure (unreachable endpoint, bad configuration).
    """
    safe = redact_url(destination.url)
    folder = destination.local_folder
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MediaAccessDenied(
                f"destination {safe} of column {column!r}: cannot create the folder: {exc.strerror}", url=safe
            ) from None
    target = parse_url(destination.object_url(f".mediatable-write-probe-{uuid.uuid4().hex}"))
    credentials = stores.credentials(target)
    with tempfile.NamedTemporaryFile(prefix="mediatable-probe-", suffix=".txt") as source:
        source.write(b"mediatable checks that this destination accepts writes; this object is deleted at once\n")
        source.flush()
        try:
            stores.put_file(target, source.name, content_type="text/plain")
        except MediaNotFound as exc:
            where = f"bucket {destination.bucket!r}" if destination.bucket else "the folder"
            raise MediaNotFound(
                f"destination {safe} of column {column!r}: {where} does not exist (credentials: {credentials.source})",
                url=safe,
                status=exc.status,
            ) from exc
        except MediaAccessDenied as exc:
            raise MediaAccessDenied(
                f"destination {safe} of column {column!r} does not accept writes with the credentials in use "
                f"({credentials.source}): {exc}",
                url=safe,
                status=exc.status,
            ) from exc
        except MediaError as exc:
            raise type(exc)(f"destination {safe} of column {column!r} cannot be written: {exc}", url=safe) from exc
    try:
        stores.delete(target)
    except MediaError as exc:
        log.warning("could not delete the probe object %s: %s", redact_url(target.url), exc)
