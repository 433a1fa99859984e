"""Functions over the URLs of media: `presigned_url`, also a method of every media type and of String.

Examples:
    >>> import mediatable as mt, tempfile
    >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
    >>> t = mt.create_table('clips', {'video': mt.Video})
    Created table 'clips'.
    >>> t.video.presigned_url(600)
    presigned_url(clips.video, expiration_seconds=600)
"""

from __future__ import annotations

from mediatable import types as ts
from mediatable.exprs import Expr
from mediatable.exprs.methods import register_method
from mediatable.exprs.presign import PresignedUrl

__all__ = ["presigned_url"]


def presigned_url(url: Expr | str, expiration_seconds: int = 3600) -> Expr:
    """Time-limited HTTPS URLs for the objects a media column (or a String column of URLs) points at.

    `s3://` URLs (AWS or S3-compatible endpoints) get a SigV4 query signature for the store's
    endpoint, `gs://` URLs a GOOG4-RSA-SHA256 signature made with the service-account key, Azure
    URLs a read-only service SAS made with the account key; `http(s)://` URLs pass through
    unchanged. Signing happens on this machine, batched per bucket, with the credentials the
    session reads objects with. A URL that cannot be signed (a local file, a bucket without
    credentials) is that cell's :class:`~mediatable.errors.PresignError`. The links are secrets
    until they expire: results and messages print them redacted.

    Args:
        url: a media or String expression, e.g. `t.video`.
        expiration_seconds: how long each link stays valid; S3 and GCS allow at most 7 days.

    Returns:
        A String expression: `t.add_computed_column(link=presigned_url(t.video, 3600))`, or select it.

    Raises:
        InvalidArgument: `expiration_seconds` is not a positive whole number of seconds (at once), or
            more than a provider allows for a URL the column holds (when the column is added).

    Examples:
        >>> from mediatable.exprs import Literal
        >>> presigned_url(Literal("s3://bucket/clip.mp4"), expiration_seconds=600)
        presigned_url('s3://bucket/clip.mp4', expiration_seconds=600)
    """
    return PresignedUrl(url, expiration_seconds)


for _type in (ts.Image, ts.Video, ts.Audio, ts.Document, ts.String):
    register_method(_type.name, "presigned_url", presigned_url, is_property=False)
