"""Bucket and folder listings as rows: `mt.list_objects('s3://bucket/photos/', pattern='*.jpg')`.

A listing is lazy and streamed: iterating it asks the store for one page of object names at a
time (obstore's paged `list`), so a bucket of a million objects is never held in memory at once,
and `t.insert(listing)` inserts it in bounded batches. Iterating again lists again.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import obstore
import obstore.exceptions

from mediatable.errors import InvalidArgument, MediaNotFound, UnsupportedScheme
from mediatable.io.urls import MediaUrl, parse_url, redact_url

if TYPE_CHECKING:
    from mediatable.io.objects import ObjectStores

__all__ = ["FIELDS", "ObjectListing"]

FIELDS = ("url", "size", "etag", "last_modified")
"""What a listing row holds: the object's URL, its size in bytes, its ETag and modification time (UTC)."""
_PAGE_SIZE = 1000  # objects per list request (S3's maximum)


class ObjectListing:
    """The objects under a prefix of a bucket, container or local folder, as rows of :data:`FIELDS`.

    Args:
        stores: the session's object stores (credentials and endpoints as for reads).
        prefix: `s3://bucket/folder/`, `gs://...`, `az://...` / `https://<account>.blob.core.windows.net/...`,
            `abfs[s]://...`, `file://...` or a local folder. The prefix names a folder: `s3://b/photos`
            and `s3://b/photos/` both list what is under `photos/`, at every depth.
        pattern: a shell pattern (`*.jpg`, `2024/*/cam?.mp4`) matched against each object's path
            below the prefix; `*` also matches `/`. None: every object.
        columns: which fields become which columns: a list of field names to keep (`['url', 'size']`)
            or a mapping of field to column name (`{'url': 'image'}`: only the fields named).
            None: all of :data:`FIELDS` under their own names.
        page_size: objects per list request (at most 1,000 on S3).

    Raises:
        UnsupportedScheme: an `http(s)://` prefix (web servers cannot be listed) or an unknown scheme.
        InvalidArgument: `columns` names a field that does not exist.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from mediatable.config import Settings
        >>> from mediatable.io.objects import ObjectStores
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ('a.jpg', 'b.txt', 'sub/c.jpg'):
        ...     (folder / name).parent.mkdir(exist_ok=True); _ = (folder / name).write_bytes(b'xyz')
        >>> listing = ObjectListing(ObjectStores(Settings()), folder, pattern='*.jpg', columns={'url': 'image'})
        >>> sorted(row['image'].rsplit('/', 2)[-1] for row in listing)
        ['a.jpg', 'c.jpg']
    """

    def __init__(
        self,
        stores: ObjectStores,
        prefix: str | Any,
        pattern: str | None = None,
        columns: Sequence[str] | Mapping[str, str] | None = None,
        *,
        page_size: int = _PAGE_SIZE,
    ) -> None:
        self._stores = stores
        self._page_size = page_size
        self._prefix = parse_url(prefix)
        if self._prefix.kind == "http":
            raise UnsupportedScheme(
                f"cannot list {redact_url(self._prefix.url)}: web servers have no listing; list a bucket "
                "(s3://, gs://, az://) or a local folder, or insert the URLs themselves"
            )
        self._pattern = pattern
        self._columns = _column_map(columns)

    def __repr__(self) -> str:
        pattern = f", pattern={self._pattern!r}" if self._pattern else ""
        return f"ObjectListing({redact_url(self._prefix.url)!r}{pattern})"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for page in self.pages():
            yield from page

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """The matching rows, one list per page the store returned (pages may be empty after filtering).

        Raises:
            MediaNotFound: the bucket, container or local folder does not exist.
            MediaAccessDenied: the credentials in use may not list it (the message says when the
                request went unsigned).
            MediaFetchError, MediaFetchTimeout: the listing request failed.
        """
        local = self._prefix.local_path
        if local is not None and not local.is_dir():
            raise MediaNotFound(f"cannot list {local}: no such folder", url=str(local))
        store, folder = self._stores.resolve(self._prefix)
        folder = folder.strip("/")
        below = len(folder) + 1 if folder else 0
        try:
            for page in obstore.list(store, folder or None, chunk_size=self._page_size):
                rows = []
                for meta in page:
                    path = meta["path"]
                    if self._pattern is not None and not fnmatch.fnmatchcase(path[below:], self._pattern):
                        continue
                    row = {
                        "url": _object_url(self._prefix, path),
                        "size": int(meta["size"]),
                        "etag": meta.get("e_tag"),
                        "last_modified": meta.get("last_modified"),
                    }
                    rows.append({column: row[field] for field, column in self._columns.items()})
                yield rows
        except (obstore.exceptions.BaseError, OSError, TimeoutError) as exc:
            raise self._stores.translate_error(exc, self._prefix.url) from exc


def _column_map(columns: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    if columns is None:
        return {field: field for field in FIELDS}
    chosen = dict(columns) if isinstance(columns, Mapping) else {field: field for field in columns}
    unknown = [field for field in chosen if field not in FIELDS]
    if unknown or not chosen:
        raise InvalidArgument(
            f"columns= must name listing fields ({', '.join(FIELDS)}), got {', '.join(map(repr, unknown)) or 'none'}"
        )
    return chosen


def _object_url(prefix: MediaUrl, path: str) -> str:
    """The URL of the object at store path `path`, spelled like the prefix (same scheme, account, bucket)."""
    key = quote(path, safe="/:@!$&'()*+,;=-._~")
    if prefix.kind == "file":
        return f"file:///{key}"
    root = prefix.url.split("?", 1)[0]
    quoted_folder = quote(prefix.key, safe="/:@!$&'()*+,;=-._~")
    if quoted_folder and root.endswith(quoted_folder):
        root = root[: -len(quoted_folder)]
    return root.rstrip("/") + "/" + key
