"""Media URLs: parse, normalize and redact every scheme mediatable reads.

One object is one URL: `normalize_url` makes spellings of the same object equal (scheme and host
case, default ports, percent-encoding, `.`/`..` segments of http(s) paths, `~` and relative local
paths, trailing slashes), and :attr:`MediaUrl.cache_key` also drops the signing parameters of
presigned URLs (S3, GCS, Azure SAS, CloudFront), so the file cache keys on one string per object.
`redact_url` is what logs and errors show. :class:`UrlPolicy` decides which URLs may be read at all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from mediatable.config import Settings
from mediatable.errors import MediaAccessDenied, UnsupportedScheme

SUPPORTED_SCHEMES = ("http", "https", "s3", "gs", "az", "abfs", "abfss", "file")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_AZURE_BLOB_HOST = re.compile(r"^(?P<account>[a-z0-9]+)\.(?:blob|dfs)\.core\.windows\.net$")
# Characters left as they are when re-quoting a path: RFC 3986 unreserved + sub-delims + ':' '@' '/'.
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Query parameters that sign a URL rather than name an object: presigned URLs of one object that
# differ only in these are one cache entry. S3 SigV4 and GCS V4 prefixes; the rest by name, and
# only when the URL carries that scheme's signature parameter.
_SIGNING_PREFIXES = ("x-amz-", "x-goog-")
_SIGNED_BY = {
    "signature": {"awsaccesskeyid", "googleaccessid", "expires", "signature", "policy", "key-pair-id"},
    "sig": {
        "sv", "ss", "srt", "sp", "se", "st", "spr", "sig", "sip", "si", "sr", "sdd", "skoid", "sktid",
        "skt", "ske", "sks", "skv", "saoid", "suoid", "scid", "ses",
    },
}  # fmt: skip
# Host names of cloud metadata services (their addresses are link-local, refused anyway).
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})


@dataclasses.dataclass(frozen=True)
class MediaUrl:
    """A parsed, normalized media URL.

    Attributes:
        url: the normalized URL string (the identity of the object).
        kind: storage kind: "http", "s3", "gs", "azure" or "file".
        bucket: bucket / container (object stores), host[:port] (http), "" (file).
        key: object key within the bucket (no leading slash); for http the path; for file the local path.
        account: Azure storage account, when known.
        cache_key: what identifies the object's bytes: `url` without the signing parameters of a
            presigned URL (the download still uses `url`).

    Examples:
        >>> u = parse_url("s3://my-bucket/a/b.jpg")
        >>> (u.kind, u.bucket, u.key)
        ('s3', 'my-bucket', 'a/b.jpg')
        >>> parse_url("https://h/a.jpg?X-Amz-Signature=abc&v=2").cache_key
        'https://h/a.jpg?v=2'
    """

    url: str
    kind: str
    bucket: str
    key: str
    account: str | None = None
    cache_key: str = ""

    def __post_init__(self) -> None:
        if not self.cache_key:
            object.__setattr__(self, "cache_key", self.url)

    @property
    def local_path(self) -> Path | None:
        """The local path for `file://` URLs, else None."""
        return Path(self.key) if self.kind == "file" else None

    @property
    def extension(self) -> str:
        """The file extension of the key, lower case, with dot (`".jpg"`), or `""`."""
        name = self.key.rsplit("/", 1)[-1]
        return os.path.splitext(unquote(name))[1].lower()[:16]


def is_url_like(value: str) -> bool:
    """True when `value` looks like `scheme://...` rather than a local path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", value) is not None


def parse_url(value: str | os.PathLike[str]) -> MediaUrl:
    """Parse and normalize a media URL or local path.

    Local paths (absolute, relative or `~`) become `file://` URLs with an absolute path.

    Raises:
        UnsupportedScheme: the scheme is not one of :data:`SUPPORTED_SCHEMES`, or the URL is malformed.

    Examples:
        >>> parse_url("HTTPS://Example.COM:443/a%7eb/c.png").url
        'https://example.com/a~b/c.png'
        >>> parse_url("az://container/dir/x.mp4").kind
        'azure'
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise UnsupportedScheme(f"not a media URL or path: {value!r}")
    text = value.strip()
    if not is_url_like(text):
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", text) and not re.match(r"^[A-Za-z]:[\\/]", text):
            scheme = text.split(":", 1)[0].lower()
            if scheme not in ("file",):
                raise _unsupported(scheme, text)
        path = Path(text).expanduser().absolute()
        return _file_url(str(path))

    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise _unsupported(scheme, text)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedScheme(f"file:// URLs must name a local path, got host {parts.netloc!r}")
        return _file_url(unquote(parts.path))

    host = (parts.hostname or "").lower()
    if not host:
        raise UnsupportedScheme(f"media URL has no host or bucket: {redact_url(text)}")
    path = _requote(parts.path, _SAFE_PATH)

    if scheme in ("http", "https"):
        path = _remove_dot_segments(path)
        port = parts.port
        bracketed = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
        netloc = bracketed if port in (None, _DEFAULT_PORTS[scheme]) else f"{bracketed}:{port}"
        if parts.username or parts.password:
            userinfo = quote(unquote(parts.username or ""), safe="")
            if parts.password is not None:
                userinfo += ":" + quote(unquote(parts.password), safe="")
            netloc = f"{userinfo}@{netloc}"
        query = _requote(parts.query, _SAFE_QUERY + "=&") if parts.query else ""
        url = urlunsplit((scheme, netloc, path or "/", query, ""))
        unsigned = _unsigned_query(query)
        cache_key = url if unsigned == query else urlunsplit((scheme, netloc, path or "/", unsigned, ""))
        azure = _AZURE_BLOB_HOST.match(host)
        if azure:
            container, _, key = path.lstrip("/").partition("/")
            return MediaUrl(url, "azure", container, unquote(key), account=azure.group("account"), cache_key=cache_key)
        return MediaUrl(url, "http", netloc, path.lstrip("/"), cache_key=cache_key)

    # Object stores: bucket is the host, key the path.
    key = path.lstrip("/")
    if scheme in ("abfs", "abfss"):
        # abfs[s]://container@account.dfs.core.windows.net/path
        container = unquote(parts.username or "") or host.split(".", 1)[0]
        account = host.split(".", 1)[0] if parts.username else None
        url = f"{scheme}://{container}@{host}/{key}" if parts.username else f"{scheme}://{container}/{key}"
        return MediaUrl(url, "azure", container, unquote(key), account=account)
    url = f"{scheme}://{host}/{key}"
    kind = {"s3": "s3", "gs": "gs", "az": "azure"}[scheme]
    return MediaUrl(url, kind, host, unquote(key))


# URLs that are canonical already: lower-case host, no port, userinfo, query or fragment, and a path of
# unreserved characters without empty or dot segments. parse_url gives them back unchanged, so
# normalize_url skips it for them (inserting 100k such URLs costs ~0.1 s instead of ~1 s).
_CANONICAL = re.compile(r"(?:https?|s3|gs)://[a-z0-9][a-z0-9.-]*(?:/(?![/.])[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+/?")


def normalize_url(value: str | os.PathLike[str]) -> str:
    """The canonical string for a media URL or local path (see :func:`parse_url`).

    Examples:
        >>> normalize_url("s3://bucket//a/./b.jpg") == normalize_url("s3://bucket//a/./b.jpg")
        True
        >>> normalize_url("http://h:80/x")
        'http://h/x'
    """
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return value
    return parse_url(value).url


# A batch of canonical URLs is recognized without one match per URL when they share a canonical
# scheme and host: each line of their joined text starts with that head, and the rest may only hold
# unreserved characters and slashes, without empty or dot segments (a few scans of the text).
_CANONICAL_HEAD = re.compile(r"(?:https?|s3|gs)://[a-z0-9][a-z0-9.-]*/")
_PATH_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/\n"


def normalize_urls(values: list[str | None]) -> list[str | None]:
    """:func:`normalize_url` of each value (None stays None): `values` itself when all are canonical.

    Inserting 100k canonical URLs costs a few scans of their joined text instead of 100k matches.

    Raises:
        UnsupportedScheme: a value is not a media URL or path (see :func:`parse_url`).

    Examples:
        >>> normalize_urls(["s3://b/a.jpg", None, "HTTPS://Host/x"])
        ['s3://b/a.jpg', None, 'https://host/x']
    """
    urls = [v for v in values if v is not None]
    if not urls or _all_canonical(urls):
        return values
    return [None if v is None else normalize_url(v) for v in values]


def _all_canonical(urls: list[str]) -> bool:
    """Whether :func:`normalize_url` gives each of `urls` back unchanged (False: it may not)."""
    head = _CANONICAL_HEAD.match(urls[0])
    if head is None:
        return all(map(_CANONICAL.fullmatch, urls))
    try:
        text = "\n".join(urls).encode("ascii")
    except UnicodeEncodeError:
        return False
    start = head.group().encode("ascii")
    lines = len(urls) - 1
    if not (text.startswith(start) and text.count(b"\n") == lines == text.count(b"\n" + start)):
        return all(map(_CANONICAL.fullmatch, urls))  # several hosts (or a line break in a value)
    return (
        text.translate(None, _PATH_BYTES) == b":" * len(urls)  # only the scheme's ':' is left
        and text.count(b"//") == len(urls)  # only the scheme's '//': no empty path segment
        and b"/." not in text  # no dot segments
    )


def redact_url(value: str) -> str:
    """The URL without userinfo and query string, safe to show in logs and errors.

    Examples:
        >>> redact_url("https://user:pw@host/a.jpg?X-Amz-Signature=abc")
        'https://***@host/a.jpg?…'
    """
    if not isinstance(value, str):
        return repr(type(value))
    if not is_url_like(value):
        return value
    try:
        parts = urlsplit(value)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        if parts.username or parts.password:
            netloc = "***@" + netloc
        return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
    except ValueError:
        return value.split("?", 1)[0].split("#", 1)[0]


def _requote(text: str, safe: str) -> str:
    """Canonical percent-encoding that never changes meaning.

    Escapes of unreserved characters are decoded (`%7E` -> `~`), other escapes are kept with upper-case
    hex (`%2f` -> `%2F`: an encoded slash or plus is data, not a separator or a space, and signed URLs
    depend on it), and characters that must be escaped are escaped.
    """

    def escape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    decoded_unreserved = re.sub(r"%([0-9A-Fa-f]{2})", escape, text)
    return quote(decoded_unreserved, safe=safe + "%")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: `/a/./b/../c` -> `/a/c` (for http(s), whose servers do the same)."""
    if "." not in path:
        return path
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:] if path.startswith("/") else segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")  # `/a/b/..` names the folder `/a/`
    return "/" + "/".join(out)


def _unsigned_query(query: str) -> str:
    """The query string without the parameters that only sign the URL (order of the others kept)."""
    if not query:
        return query
    pairs = [(item.split("=", 1)[0].lower(), item) for item in query.split("&")]
    names = {name for name, _ in pairs}
    signing = {name for name in names if name.startswith(_SIGNING_PREFIXES)}
    for marker, members in _SIGNED_BY.items():
        if marker in names:
            signing |= names & members
    return "&".join(item for name, item in pairs if name not in signing)


@dataclasses.dataclass(frozen=True)
class UrlPolicy:
    """Which URLs may be read as media: the settings `allowed_schemes` and `allow_private_addresses`.

    Link-local addresses (169.254.0.0/16, fe80::/10: where cloud metadata services answer with
    credentials) and metadata host names are never media. With ``allow_private_addresses=False``,
    http(s) URLs must not point at loopback, private or shared addresses either; host names are
    resolved (:meth:`check_resolved`) just before a download.

    Examples:
        >>> policy = UrlPolicy()
        >>> policy.check(parse_url("http://169.254.169.254/latest/meta-data/"))
        Traceback (most recent call last):
        ...
        mediatable.errors.MediaAccessDenied: refusing http://169.254.169.254/latest/meta-data/: ...
        >>> UrlPolicy(schemes=("https",)).check(parse_url("file:///etc/passwd"))
        Traceback (most recent call last):
        ...
        mediatable.errors.MediaAccessDenied: refusing file:///etc/passwd: the scheme file:// is not allowed ...
    """

    schemes: tuple[str, ...] = ()
    allow_private: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        return cls(schemes=tuple(settings.allowed_schemes), allow_private=settings.allow_private_addresses)

    def check(self, url: MediaUrl) -> None:
        """Raise :class:`~mediatable.errors.MediaAccessDenied` if ``url`` may not be read (no DNS lookup)."""
        scheme = url.url.split(":", 1)[0]
        if self.schemes and scheme not in self.schemes:
            self._refuse(
                url, f"the scheme {scheme}:// is not allowed (setting allowed_schemes: {', '.join(self.schemes)})"
            )
        if url.kind != "http":
            return
        host = (urlsplit(url.url).hostname or "").lower()
        if host in _METADATA_HOSTS:
            self._refuse(url, "it names a cloud metadata service")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        self._check_address(url, address)

    def check_resolved(self, url: MediaUrl) -> None:
        """:meth:`check`, then resolve the host name and check every address (blocking DNS lookup)."""
        self.check(url)
        if url.kind != "http" or self.allow_private:
            return
        parts = urlsplit(url.url)
        try:
            infos = socket.getaddrinfo(parts.hostname or "", parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError:
            return  # the download reports the unknown host
        for info in infos:
            self._check_address(url, ipaddress.ip_address(info[4][0].split("%", 1)[0]))

    def _check_address(self, url: MediaUrl, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_link_local or address == ipaddress.ip_address("fd00:ec2::254"):
            self._refuse(url, f"{address} is a link-local address (cloud metadata services answer there)")
        if not self.allow_private and (
            address.is_private or address.is_loopback or address.is_reserved or not address.is_global
        ):
            self._refuse(url, f"{address} is a private address (setting allow_private_addresses)")

    @staticmethod
    def _refuse(url: MediaUrl, why: str) -> None:
        raise MediaAccessDenied(f"refusing {redact_url(url.url)}: {why}", url=redact_url(url.url))


def _file_url(path: str) -> MediaUrl:
    normalized = os.path.normpath(path)
    return MediaUrl("file://" + quote(normalized, safe=_SAFE_PATH), "file", "", normalized)


def _unsupported(scheme: str, text: str) -> UnsupportedScheme:
    return UnsupportedScheme(
        f"unsupported URL scheme {scheme!r} in {redact_url(text)}; "
        f"supported: {', '.join(s + '://' for s in SUPPORTED_SCHEMES)} and local paths"
    )
