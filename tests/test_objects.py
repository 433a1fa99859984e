"""Tests of io/objects.py against real emulators on 127.0.0.1: moto (S3), fake-gcs-server, Azurite, HTTP."""

from __future__ import annotations

import datetime
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import obstore
import obstore.exceptions
import pytest
from obstore.auth.boto3 import Boto3CredentialProvider
from obstore.store import GCSStore, S3Store

import mediatable as mt
from mediagen import make_jpeg
from mediatable.config import Settings, load_settings
from mediatable.errors import (
    ConfigError,
    MediaAccessDenied,
    MediaError,
    MediaFetchError,
    MediaFetchTimeout,
    MediaNotFound,
)
from mediatable.io.objects import ObjectInfo, ObjectStores, translate_error
from mediatable.io.urls import parse_url
from objects_support import make_stores, printed, raised, read, set_aws_env
from servers.cloud import SEED, AzureServer, GCSServer, S3Server, write_service_account
from servers.http import FaultServer

CAT = SEED["images/cat.jpg"]


# -- S3 -------------------------------------------------------------------------------------------------


def test_s3_env_credentials(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    set_aws_env(monkeypatch, s3_server)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "mt-session-token")
    stores = make_stores(clean_env)
    url = f"s3://{s3_server.private_bucket}/images/cat.jpg"
    assert read(stores, url) == CAT
    store, path = stores.resolve(parse_url(url))
    assert isinstance(store, S3Store) and path == "images/cat.jpg"
    assert store.config["access_key_id"] == s3_server.access_key_id
    assert store.config.get("skip_signature") in (None, False, "false")
    # The request is signed with those keys: a presigned URL names the key id and the session token.
    signed = obstore.sign(store, "GET", path, datetime.timedelta(minutes=5))
    assert s3_server.access_key_id in signed and "mt-session-token" in signed
    # Odd keys (space, non-ASCII, '+') reach S3 as the same key.
    assert read(stores, f"s3://{s3_server.private_bucket}/odd names/caf\u00e9 + 1.txt") == b"odd key\n"


def test_s3_endpoint_url_s3_wins_and_http_allowed_without_flag(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    set_aws_env(monkeypatch, s3_server)
    monkeypatch.delenv("AWS_ALLOW_HTTP")  # an explicit http:// endpoint is allowed by itself
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9/unused")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    assert read(make_stores(clean_env), f"s3://{s3_server.private_bucket}/docs/readme.txt") == SEED["docs/readme.txt"]


def test_s3_profile_from_aws_files(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    aws = Path.home() / ".aws"  # the temporary HOME of the autouse fixture
    aws.mkdir()
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIADEFAULTPROFILE01\naws_secret_access_key = default-secret\n\n"
        "[dev]\naws_access_key_id = AKIADEVPROFILE000001\naws_secret_access_key = dev-secret\n"
    )
    (aws / "config").write_text("[default]\nregion = us-east-1\n\n[profile dev]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    url = f"s3://{s3_server.private_bucket}/images/cat.jpg"

    store, path = make_stores(clean_env).resolve(parse_url(url))
    assert isinstance(store.credential_provider, Boto3CredentialProvider)
    assert "AKIADEFAULTPROFILE01" in obstore.sign(store, "GET", path, datetime.timedelta(minutes=5))
    assert bytes(obstore.get(store, path).bytes()) == CAT

    monkeypatch.setenv("AWS_PROFILE", "dev")
    stores = make_stores(clean_env)
    store, path = stores.resolve(parse_url(url))
    assert store.config["region"] == "eu-west-1"  # from [profile dev] in ~/.aws/config
    signed = obstore.sign(store, "GET", path, datetime.timedelta(minutes=5))
    assert "AKIADEVPROFILE000001" in signed and "eu-west-1" in signed
    assert read(stores, url) == CAT
    assert "dev-secret" not in repr(stores)

    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(ConfigError, match="nope"):
        make_stores(clean_env).resolve(parse_url(url))


def test_s3_public_bucket_is_read_anonymously(s3_server: S3Server, clean_env: Path) -> None:
    # No credentials anywhere: requests go unsigned (and nothing asks 169.254.169.254).
    stores = make_stores(clean_env, {f"s3://{s3_server.public_bucket}": {"endpoint": s3_server.endpoint}})
    url = f"s3://{s3_server.public_bucket}/images/cat.jpg"
    store, _ = stores.resolve(parse_url(url))
    assert store.config["skip_signature"] in (True, "true")
    assert read(stores, url) == CAT


def test_s3_anonymous_flag_wins_over_credentials(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    set_aws_env(monkeypatch, s3_server)
    stores = make_stores(clean_env, {f"s3://{s3_server.public_bucket}": {"anonymous": True}})
    public, _ = stores.resolve(parse_url(f"s3://{s3_server.public_bucket}/images/cat.jpg"))
    private, _ = stores.resolve(parse_url(f"s3://{s3_server.private_bucket}/images/cat.jpg"))
    assert public.config["skip_signature"] in (True, "true") and "access_key_id" not in public.config
    assert private.config["access_key_id"] == s3_server.access_key_id
    assert read(stores, f"s3://{s3_server.public_bucket}/images/cat.jpg") == CAT


def test_s3_bucket_settings_from_config_toml(s3_server: S3Server, clean_env: Path) -> None:
    clean_env.mkdir()
    (clean_env / "config.toml").write_text(
        f'[buckets."s3://{s3_server.private_bucket}"]\n'
        f'endpoint = "{s3_server.endpoint}"\n'
        f'region = "{s3_server.region}"\n'
        f'access_key_id = "{s3_server.access_key_id}"\n'
        f'secret_access_key = "{s3_server.secret_access_key}"\n'
        'timeout = "20s"\n'
    )
    stores = ObjectStores(load_settings(), instance_credentials=False)
    url = f"s3://{s3_server.private_bucket}/docs/readme.txt"
    assert read(stores, url) == SEED["docs/readme.txt"]
    store, _ = stores.resolve(parse_url(url))
    assert store.config["endpoint"] == s3_server.endpoint
    assert store.client_options["allow_http"] in (True, "true") and store.client_options["timeout"] == "20s"
    assert s3_server.secret_access_key not in repr(stores)


def test_s3_unknown_bucket_option_is_a_config_error(clean_env: Path) -> None:
    stores = make_stores(clean_env, {"s3://b": {"endpoint": "http://127.0.0.1:9", "no_such_option": "x"}})
    with pytest.raises(ConfigError, match="no_such_option"):
        stores.resolve(parse_url("s3://b/k"))


def test_s3_missing_object_and_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    set_aws_env(monkeypatch, s3_server)
    stores = make_stores(clean_env)
    missing = raised(stores.head, parse_url(f"s3://{s3_server.private_bucket}/no/such.jpg"))
    assert isinstance(missing, MediaNotFound) and isinstance(missing, FileNotFoundError)
    assert missing.status == 404 and not missing.is_retryable
    assert missing.url == f"s3://{s3_server.private_bucket}/no/such.jpg"
    assert isinstance(raised(stores.head, parse_url("s3://mt-no-such-bucket/x.jpg")), MediaNotFound)
    # A GET has a body: its S3 error code makes it into the message.
    no_bucket = translate_error(raised(read, stores, "s3://mt-no-such-bucket/x.jpg"), "s3://mt-no-such-bucket/x.jpg")
    assert isinstance(no_bucket, MediaNotFound) and "NoSuchBucket" in str(no_bucket)


def test_s3_head_and_put_file(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    set_aws_env(monkeypatch, s3_server)
    stores = make_stores(clean_env)
    info = stores.head(parse_url(f"s3://{s3_server.private_bucket}/images/cat.jpg"))
    _, response = s3_server.get(s3_server.private_bucket, "images/cat.jpg")
    assert info.size == len(CAT) and info.etag == response["ETag"]
    assert isinstance(info.last_modified, datetime.datetime) and info.last_modified.tzinfo is not None

    source = tmp_path / "thumb.png"
    source.write_bytes(b"\x89PNG-thumbnail")
    url = parse_url(f"s3://{s3_server.private_bucket}/thumbs/t 1.png")
    put = stores.put_file(url, source)
    data, response = s3_server.get(s3_server.private_bucket, "thumbs/t 1.png")
    assert data == b"\x89PNG-thumbnail" and response["ContentType"] == "image/png"
    assert put.size == len(data) and put.etag == response["ETag"] == stores.head(url).etag

    with pytest.raises(FileNotFoundError):
        stores.put_file(url, tmp_path / "missing.png")
    with pytest.raises(MediaNotFound):
        stores.put_file(parse_url("s3://mt-no-such-bucket/t.png"), source)


# -- GCS ------------------------------------------------------------------------------------------------


def test_gcs_anonymous_with_bucket_endpoint(gcs_server: GCSServer, clean_env: Path) -> None:
    stores = make_stores(clean_env, {f"gs://{gcs_server.bucket}": {"endpoint": gcs_server.endpoint}})
    url = f"gs://{gcs_server.bucket}/images/cat.jpg"
    assert read(stores, url) == CAT
    store, path = stores.resolve(parse_url(url))
    assert isinstance(store, GCSStore) and path == "images/cat.jpg"
    assert store.config["skip_signature"] in (True, "true")
    assert read(stores, f"gs://{gcs_server.bucket}/odd names/caf\u00e9 + 1.txt") == b"odd key\n"

    info = stores.head(parse_url(url))
    assert info.size == len(CAT) and info.etag and info.version  # GCS generation
    assert isinstance(info.last_modified, datetime.datetime)
    with pytest.raises(MediaNotFound) as missing:
        stores.head(parse_url(f"gs://{gcs_server.bucket}/no/such.jpg"))
    assert missing.value.status == 404
    with pytest.raises(MediaNotFound):
        make_stores(clean_env, {"gs://mt-nobucket": {"endpoint": gcs_server.endpoint}}).head(
            parse_url("gs://mt-nobucket/x")
        )


def test_gcs_storage_emulator_host(gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint.removeprefix("http://"))
    assert read(make_stores(clean_env), f"gs://{gcs_server.bucket}/docs/readme.txt") == SEED["docs/readme.txt"]


@pytest.fixture
def gcs_key_file(gcs_server: GCSServer, tmp_path: Path) -> Path:
    """A service-account file that points at the emulator and asks for no OAuth token exchange."""
    key_file = tmp_path / "sa.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "mediatable-test",
                "private_key_id": "mt-key-id",
                "private_key": "-----BEGIN PRIVATE KEY-----\nMIIBmtFAKE\n-----END PRIVATE KEY-----\n",
                "client_email": "tester@mediatable-test.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "http://127.0.0.1:9/token",
                "gcs_base_url": gcs_server.endpoint,
                "disable_oauth": True,
            }
        )
    )
    return key_file


def test_gcs_application_credentials(
    gcs_server: GCSServer, gcs_key_file: Path, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gcs_key_file))
    stores = make_stores(clean_env, {f"gs://{gcs_server.bucket}": {"endpoint": gcs_server.endpoint}})
    url = f"gs://{gcs_server.bucket}/images/cat.jpg"
    store, _ = stores.resolve(parse_url(url))
    assert store.config["service_account"] == str(gcs_key_file) and "skip_signature" not in store.config
    assert read(stores, url) == CAT


def test_gcs_anonymous_upload_is_refused_early(clean_env: Path, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"x")
    with pytest.raises(MediaAccessDenied, match="GOOGLE_APPLICATION_CREDENTIALS"):
        make_stores(clean_env).put_file(parse_url("gs://some-bucket/a.txt"), source)


def test_gcs_put_file(gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path) -> None:
    # GCS uploads go to a PUT URL signed with the service-account key: fake-gcs-server accepts those
    # (it answers plain XML API uploads with 400), and so does real GCS.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(write_service_account(tmp_path, gcs_server.endpoint)))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint)
    source = tmp_path / "a.png"
    source.write_bytes(b"\x89PNG-upload")
    stores = make_stores(clean_env)
    url = parse_url(f"gs://{gcs_server.bucket}/up/odd name+1.png")
    info = stores.put_file(url, source)
    assert info.size == len(source.read_bytes())
    blob = gcs_server.client.bucket(gcs_server.bucket).get_blob("up/odd name+1.png")
    assert blob.download_as_bytes() == source.read_bytes() and blob.content_type == "image/png"
    assert stores.head(url).size == info.size
    stores.delete(url)
    assert gcs_server.client.bucket(gcs_server.bucket).get_blob("up/odd name+1.png") is None
    with pytest.raises(MediaNotFound):
        stores.put_file(parse_url("gs://mt-no-such-bucket/a.png"), source)


# -- caching --------------------------------------------------------------------------------------------


def test_store_cache(
    s3_server: S3Server, http_server: FaultServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    set_aws_env(monkeypatch, s3_server)
    stores = make_stores(clean_env)
    first, _ = stores.resolve(parse_url(f"s3://{s3_server.private_bucket}/a.jpg"))
    assert stores.resolve(parse_url(f"s3://{s3_server.private_bucket}/other/b.jpg"))[0] is first
    assert stores.resolve(parse_url(f"s3://{s3_server.public_bucket}/a.jpg"))[0] is not first
    # Other credentials in the environment: another store (and the old one is still there for the old ones).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOTHERKEY00000001")
    second, _ = stores.resolve(parse_url(f"s3://{s3_server.private_bucket}/a.jpg"))
    assert second is not first and second.config["access_key_id"] == "AKIAOTHERKEY00000001"

    # Many threads asking at once get one store.
    url = parse_url(http_server.url("cache/x.jpg"))
    with ThreadPoolExecutor(16) as pool:
        found = set(map(id, (s for s, _ in pool.map(lambda _: stores.resolve(url), range(64)))))
    assert len(found) == 1


def test_url_stores_are_bounded(http_server: FaultServer, clean_env: Path) -> None:
    stores = ObjectStores(Settings(home=clean_env), instance_credentials=False, max_url_stores=4)
    urls = [parse_url(http_server.url(f"u/{i}.jpg") + f"?token={i}") for i in range(10)]
    first = stores.resolve(urls[0])[0]
    assert stores.resolve(urls[0])[0] is first
    for url in urls[1:]:
        stores.resolve(url)
    assert "url_stores=4" in repr(stores)
    assert stores.resolve(urls[0])[0] is not first  # evicted, rebuilt


def test_local_files(tmp_path: Path, clean_env: Path) -> None:
    stores = make_stores(clean_env)
    source = tmp_path / "a.txt"
    source.write_bytes(b"local")
    assert read(stores, str(source)) == b"local"
    assert stores.head(parse_url(str(source))).size == 5
    stores.put_file(parse_url(str(tmp_path / "deep" / "b.txt")), source)
    assert (tmp_path / "deep" / "b.txt").read_bytes() == b"local"
    with pytest.raises(MediaNotFound):
        stores.head(parse_url(str(tmp_path / "missing.txt")))


# -- translate_error ------------------------------------------------------------------------------------


# The shape of obstore's message for a failed DNS lookup (Debug part abridged).
_DNS = (
    "Generic HTTP error: Error performing GET http://h.invalid/x in 1ms - HTTP error: error sending request"
    '\n\nDebug source:\nHttpError {{ kind: Connect, source: ConnectError("dns error", Custom {{ kind: Uncategorized, '
    'error: "failed to lookup address information: {}" }}) }}'
)


@pytest.mark.parametrize(
    ("exc", "kind", "status", "retryable"),
    [
        (FileNotFoundError("Object at location k not found"), MediaNotFound, None, False),
        (PermissionError("denied"), MediaAccessDenied, None, False),
        (TimeoutError(), MediaFetchTimeout, None, True),
        (ConnectionResetError(104, "Connection reset by peer"), MediaFetchError, None, True),
        (obstore.exceptions.UnauthenticatedError("status code: 401 Unauthorized: "), MediaAccessDenied, 401, False),
        (obstore.exceptions.GenericError("x - status code: 502 Bad Gateway: oops"), MediaFetchError, 502, True),
        (obstore.exceptions.GenericError("x - status code: 429 Too Many Requests: "), MediaFetchError, 429, True),
        (obstore.exceptions.GenericError("x - status code: 416 Range Not Satisfiable: "), MediaFetchError, 416, False),
        (
            obstore.exceptions.PreconditionError("x - status code: 412 Precondition Failed: "),
            MediaFetchError,
            412,
            False,
        ),
        (ValueError('Could not parse path: Error parsing Path "a//b"'), MediaFetchError, None, False),
        (obstore.exceptions.GenericError("HTTP error: builder error"), MediaFetchError, None, False),
        (obstore.exceptions.GenericError(_DNS.format("Name or service not known")), MediaFetchError, None, False),
        (
            obstore.exceptions.GenericError(_DNS.format("Temporary failure in name resolution")),
            MediaFetchError,
            None,
            True,
        ),
    ],
)
def test_translate_error_table(exc: BaseException, kind: type, status: int | None, retryable: bool) -> None:
    error = translate_error(exc, "s3://bucket/key.jpg")
    assert type(error) is kind and isinstance(error, MediaError)
    assert (error.status, error.is_retryable, error.url) == (status, retryable, "s3://bucket/key.jpg")


def test_translate_error_keeps_media_errors_and_explains_allow_http() -> None:
    original = MediaNotFound("gone", url="s3://b/k")
    assert translate_error(original, "s3://b/k") is original
    hint = translate_error(obstore.exceptions.GenericError("HTTP error: builder error"), "s3://b/k")
    assert "allow_http" in str(hint)


# -- secrets --------------------------------------------------------------------------------------------


def test_no_secret_in_messages_reprs_or_logs(
    s3_server: S3Server,
    azure_server: AzureServer,
    http_server: FaultServer,
    monkeypatch: pytest.MonkeyPatch,
    clean_env: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mediatable")
    sas = azure_server.container_sas()
    secrets = [s3_server.secret_access_key, "mt-session-secret-token", azure_server.key, sas.rpartition("sig=")[2]]
    secrets += ["pw-hunter2", "tok-0123456789"]
    set_aws_env(monkeypatch, s3_server)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "mt-session-secret-token")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_server.connection_string)
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", sas)
    stores = make_stores(clean_env)

    failures = [
        (stores.head, f"s3://{s3_server.private_bucket}/missing.jpg"),
        (stores.head, f"az://{azure_server.container}/missing.jpg"),
        (stores.head, http_server.url("missing.jpg") + "?X-Amz-Security-Token=tok-0123456789&sig=pw-hunter2"),
        (stores.head, f"{azure_server.endpoint}/{azure_server.container}/nope.jpg?{sas}"),
        (stores.head, f"http://user:pw-hunter2@{http_server.base_url.removeprefix('http://')}/missing.jpg"),
        (read, "http://user:pw-hunter2@127.0.0.1:9/x.jpg?token=tok-0123456789"),
    ]
    shown = []
    for call, url in failures:
        exc = raised(call, stores, url) if call is read else raised(call, parse_url(url))
        error = exc if isinstance(exc, MediaError) else stores.translate_error(exc, url)
        assert isinstance(error, MediaError), exc
        shown.append(printed(error))
    # A raw obstore error, translated the documented way, loses its signed URL too.
    raw = raised(read, stores, http_server.url("missing.jpg") + "?sig=pw-hunter2")
    try:
        raise translate_error(raw, "x") from raw
    except MediaError as chained:
        shown.append(printed(chained))
    shown.append(repr(stores))
    shown.append(caplog.text)
    everything = "\n".join(shown)
    assert "new S3 store" in caplog.text  # the debug log is there, it just holds no secret
    for secret in secrets:
        assert secret not in everything, secret


def test_repr_lists_buckets_only(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    set_aws_env(monkeypatch, s3_server)
    stores = make_stores(clean_env)
    stores.resolve(parse_url(f"s3://{s3_server.private_bucket}/a.jpg"))
    assert repr(stores) == f"ObjectStores(stores=['s3://{s3_server.private_bucket}'], url_stores=0)"


def test_object_info_is_a_value() -> None:
    assert ObjectInfo(1, None, None) == ObjectInfo(size=1, etag=None, last_modified=None, version=None)


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_put_file_multipart(
    kind: str,
    s3_server: S3Server,
    azure_server: AzureServer,
    monkeypatch: pytest.MonkeyPatch,
    clean_env: Path,
    tmp_path: Path,
) -> None:
    # Over obstore's 5 MiB chunk size the upload goes in parts (S3 multipart, Azure block list).
    data = bytes(range(256)) * (6 * 1024 * 4 + 1)  # 6 MiB + 256 bytes
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    if kind == "s3":
        set_aws_env(monkeypatch, s3_server)
        url = f"s3://{s3_server.private_bucket}/big/file.bin"
    else:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_server.connection_string)
        url = f"az://{azure_server.container}/big/file.bin"
    stores = make_stores(clean_env)
    assert stores.put_file(parse_url(url), source).size == len(data)
    assert read(stores, url) == data


# -- credentials where users keep them; one URL's trouble is one cell's --------------------------------


def test_profile_endpoint_url_and_region_for_reads_and_uploads(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    aws = Path.home() / ".aws"
    aws.mkdir()
    keys = f"aws_access_key_id = {s3_server.access_key_id}\naws_secret_access_key = {s3_server.secret_access_key}\n"
    (aws / "credentials").write_text(f"[minio]\n{keys}\n[nested]\n{keys}")
    (aws / "config").write_text(
        f"[profile minio]\nregion = eu-central-1\nendpoint_url = {s3_server.endpoint}\n\n"
        "[profile nested]\nservices = local\n\n"
        f"[services local]\ns3 =\n  endpoint_url = {s3_server.endpoint}\n"
    )
    url = f"s3://{s3_server.private_bucket}/images/cat.jpg"
    for profile in ("minio", "nested"):
        monkeypatch.setenv("AWS_PROFILE", profile)
        stores = make_stores(clean_env)
        assert read(stores, url) == CAT, profile
        store, _ = stores.resolve(parse_url(url))
        assert store.config["endpoint"] == s3_server.endpoint
    assert store.config.get("region") in (None, "us-east-1")  # [profile nested] names no region
    monkeypatch.setenv("AWS_PROFILE", "minio")
    stores = make_stores(clean_env)
    assert stores.resolve(parse_url(url))[0].config["region"] == "eu-central-1"
    source = tmp_path / "up.txt"
    source.write_bytes(b"uploaded through the profile's endpoint")
    stores.put_file(parse_url(f"s3://{s3_server.private_bucket}/up/profile.txt"), source)
    assert s3_server.get(s3_server.private_bucket, "up/profile.txt")[0] == source.read_bytes()
    # The environment's endpoint wins over the profile's, as in the AWS CLI.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert make_stores(clean_env).resolve(parse_url(url))[0].config["endpoint"] == "http://127.0.0.1:9"


def test_unsigned_denied_read_says_no_credentials_in_the_cell(
    azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    # Through a table (file cache -> fetch), where users meet it; the account is known, the key is not.
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azure_server.account)
    monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", azure_server.endpoint)
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("private", {"image": mt.Image})
    t.insert([{"image": f"az://{azure_server.container}/images/cat.jpg"}], quiet=True)
    t.add_computed_column(w=t.image.width, quiet=True)
    (message,) = t.select(t.w.errormsg).collect()["w_errormsg"]
    assert message.startswith(f"access denied: az://{azure_server.container}/images/cat.jpg")
    assert "the request was unsigned: no Azure credentials found" in message and "AZURE_STORAGE_ACCOUNT_KEY" in message
    assert "Authorization header" not in message


def test_a_url_whose_store_cannot_be_configured_is_that_cells_error(
    http_server: FaultServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    good = http_server.put("ok/cat.jpg", make_jpeg(tmp_path / "cat.jpg", size=(64, 48)).read_bytes())
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("mixed", {"image": mt.Image})
    t.insert([{"image": good}, {"image": "az://container/no-account.jpg"}], quiet=True)
    status = t.add_computed_column(w=t.image.width, quiet=True)  # no ConfigError for the whole column
    assert (status.num_computed_values, status.num_excs) == (2, 1)
    result = t.select(t.w, t.w.errortype, t.w.errormsg).collect()
    assert result["w"] == [64, None] and result["w_errortype"] == [None, "MediaConfigError"]
    assert "no Azure storage account for az://container/no-account.jpg" in result["w_errormsg"][1]
    # A query fails on that cell, naming it; with on_error='ignore' the other rows come back.
    with pytest.raises(mt.ComputeError, match="MediaConfigError: no Azure storage account"):
        t.select(w=t.image.width).collect()
    assert t.select(w=t.image.width).collect(on_error="ignore")["w"] == [64, None]
    # A malformed key: the same, naming the URL.
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "not base64 at all!")
    t.recompute_columns("w", quiet=True)
    errors = t.select(t.w.errortype, t.w.errormsg).collect()
    assert errors["w_errortype"] == [None, "MediaConfigError"]
    assert "cannot configure the object store for az://container/no-account.jpg" in errors["w_errormsg"][1]
    assert "not base64 at all" not in errors["w_errormsg"][1]
