"""URL parsing, normalization and redaction (io/urls.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mediatable.errors import UnsupportedScheme
from mediatable.io.urls import _CANONICAL, normalize_url, normalize_urls, parse_url, redact_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("HTTPS://Example.COM:443/a%7eb/c.png", "https://example.com/a~b/c.png"),
        ("http://h:80/x", "http://h/x"),
        ("http://h:8080/x", "http://h:8080/x"),
        ("http://h", "http://h/"),
        ("https://h/a b.jpg", "https://h/a%20b.jpg"),
        ("https://h/a%20b.jpg", "https://h/a%20b.jpg"),
        ("https://h/x.jpg?sig=a%2fb%2B&e=1", "https://h/x.jpg?sig=a%2Fb%2B&e=1"),
        ("https://h/dir%2Fname.jpg", "https://h/dir%2Fname.jpg"),
        ("https://h/%7Euser/a+b.jpg", "https://h/~user/a+b.jpg"),
        ("S3://Bucket/key/with space.jpg", "s3://bucket/key/with%20space.jpg"),
        ("gs://b/a/b.png", "gs://b/a/b.png"),
        ("az://container/dir/x.mp4", "az://container/dir/x.mp4"),
        ("file:///tmp/../tmp/x.jpg", "file:///tmp/x.jpg"),
    ],
)
def test_normalization(given: str, expected: str) -> None:
    assert normalize_url(given) == expected
    assert normalize_url(expected) == expected  # idempotent


def test_local_paths_become_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_url("x/y.jpg") == f"file://{tmp_path}/x/y.jpg"
    assert normalize_url(tmp_path / "z.png") == f"file://{tmp_path}/z.png"
    assert normalize_url("~/a.jpg") == f"file://{Path.home()}/a.jpg"
    assert parse_url("x/y.jpg").local_path == tmp_path / "x" / "y.jpg"


def test_kinds_buckets_and_keys() -> None:
    s3 = parse_url("s3://my-bucket/a/b.JPG")
    assert (s3.kind, s3.bucket, s3.key, s3.extension) == ("s3", "my-bucket", "a/b.JPG", ".jpg")
    blob = parse_url("https://acct.blob.core.windows.net/container/dir/v.mp4?sv=1&sig=x")
    assert (blob.kind, blob.account, blob.bucket, blob.key) == ("azure", "acct", "container", "dir/v.mp4")
    abfs = parse_url("abfss://container@acct.dfs.core.windows.net/p/q.wav")
    assert (abfs.kind, abfs.account, abfs.bucket, abfs.key) == ("azure", "acct", "container", "p/q.wav")
    http = parse_url("http://127.0.0.1:9000/dir/f.jpg")
    assert (http.kind, http.bucket, http.key) == ("http", "127.0.0.1:9000", "dir/f.jpg")


@pytest.mark.parametrize("bad", ["ftp://h/x", "mailto:x@y", "data:image/png;base64,xx", "", "s3:///nobucket"])
def test_unsupported(bad: str) -> None:
    with pytest.raises(UnsupportedScheme):
        parse_url(bad)


def test_redaction_removes_secrets() -> None:
    secret = "https://user:pw@host/a.jpg?X-Amz-Signature=abc&X-Amz-Credential=AKIA"
    shown = redact_url(secret)
    assert shown == "https://***@host/a.jpg?…"
    for leaked in ("pw", "abc", "AKIA", "user"):
        assert leaked not in shown
    assert redact_url("s3://b/k.jpg") == "s3://b/k.jpg"


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com/photos/000123.jpg",
        "s3://bucket/a/b/c.png",
        "gs://bucket/x_y~z-1.webp",
        "http://host/dir/",
        "https://host/a/b.c.d",
        "s3://my-bucket/deep/er/key.jpg",
    ],
)
def test_canonical_urls_take_the_fast_path_unchanged(url: str) -> None:
    assert _CANONICAL.fullmatch(url) and parse_url(url).url == url == normalize_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "HTTPS://Host/a.jpg",
        "https://host:443/a.jpg",
        "https://host/a/./b.jpg",
        "https://host/a/../b.jpg",
        "s3://bucket//a.jpg",
        "https://host/a%7Eb.jpg",
        "https://host/a.jpg?x=1",
        "https://user@host/a.jpg",
        "https://host",
        "az://container/a.jpg",
    ],
)
def test_other_urls_are_normalized_by_the_parser(url: str) -> None:
    assert not _CANONICAL.fullmatch(url)
    assert normalize_url(url) == parse_url(url).url


def _some_urls(rng: random.Random) -> list[str | None]:
    """A batch of URLs that mostly share a scheme and host, with a few near-canonical variants."""
    head = rng.choice(["https://h.example.com/", "s3://bucket/", "gs://b-1/", "http://127.0.0.1/"])
    pieces = ["a", "B", "0", "_", "~", "-", ".", "..", "x.jpg", "", " ", "%7E", "é", "?q=1", "#f", ":8", "\n"]
    urls: list[str | None] = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.1:
            urls.append(None)
            continue
        start = head if rng.random() < 0.9 else rng.choice(["HTTPS://H/", "https://other/", "az://c/", "s3://b"])
        path = "/".join(rng.choice(pieces[:9]) if rng.random() < 0.9 else rng.choice(pieces) for _ in range(3))
        urls.append(start + path)
    return urls


def test_a_batch_normalizes_as_each_url_alone() -> None:
    rng = random.Random(9)
    fast = 0
    for _ in range(3000):
        urls = _some_urls(rng)
        try:
            expected: list[str | None] | type[UnsupportedScheme] = [
                None if u is None else normalize_url(u) for u in urls
            ]
        except UnsupportedScheme:
            expected = UnsupportedScheme
        try:
            got: list[str | None] | type[UnsupportedScheme] = normalize_urls(urls)
        except UnsupportedScheme:
            got = UnsupportedScheme
        assert got == expected, urls
        fast += got is urls
    assert fast > 300  # the batch check said "all canonical" often enough to be tested


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://h/p/x/../a.jpg", "https://h/p/a.jpg"),
        ("https://h/p/./a.jpg", "https://h/p/a.jpg"),
        ("https://h/p/%2E%2E/a.jpg", "https://h/a.jpg"),
        ("https://h/../../a.jpg", "https://h/a.jpg"),
        ("https://h/p/q/..", "https://h/p/"),
        ("https://h/a..b/c.jpg", "https://h/a..b/c.jpg"),
        ("s3://b/p/../a.jpg", "s3://b/p/../a.jpg"),  # an object key is a name, not a path: kept
    ],
)
def test_dot_segments_of_http_paths(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize(
    ("signed", "key"),
    [
        (
            "https://b.s3.amazonaws.com/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1"
            "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=ab12",
            "https://b.s3.amazonaws.com/a.jpg",
        ),
        (
            "https://storage.googleapis.com/b/a.jpg?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa"
            "&X-Goog-Date=20260101T000000Z&X-Goog-Expires=60&X-Goog-SignedHeaders=host&X-Goog-Signature=cd",
            "https://storage.googleapis.com/b/a.jpg",
        ),
        (
            "https://acct.blob.core.windows.net/c/a.jpg?sv=2023-11-03&se=2026-01-01T00%3A00%3A00Z&sr=b&sp=r&sig=ef",
            "https://acct.blob.core.windows.net/c/a.jpg",
        ),
        ("https://h/a.jpg?versionId=3&X-Amz-Signature=ab", "https://h/a.jpg?versionId=3"),
        ("https://h/a.jpg?token=secret&sp=2", "https://h/a.jpg?token=secret&sp=2"),  # no SAS: all kept
    ],
)
def test_signing_parameters_leave_the_cache_key(signed: str, key: str) -> None:
    parsed = parse_url(signed)
    assert parsed.cache_key == key
    assert parsed.url == normalize_url(signed)  # the download still uses the signed URL


def test_url_policy() -> None:
    from mediatable.errors import MediaAccessDenied
    from mediatable.io.urls import UrlPolicy

    default = UrlPolicy()
    for metadata in (
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[fe80::1]/x",
        "http://[fd00:ec2::254]/latest/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[::ffff:169.254.169.254]/",
    ):
        with pytest.raises(MediaAccessDenied, match="refusing"):
            default.check(parse_url(metadata))
    default.check(parse_url("http://127.0.0.1:8000/a.jpg"))  # private addresses are fine by default
    strict = UrlPolicy(schemes=("https", "s3"), allow_private=False)
    strict.check(parse_url("https://example.com/a.jpg"))
    strict.check(parse_url("s3://bucket/a.jpg"))
    for refused in ("http://example.com/a.jpg", "file:///etc/passwd", "/etc/passwd", "https://10.1.2.3/a.jpg"):
        with pytest.raises(MediaAccessDenied):
            strict.check(parse_url(refused))
    with pytest.raises(MediaAccessDenied, match="private"):
        UrlPolicy(allow_private=False).check_resolved(parse_url("http://localhost/a.jpg"))
