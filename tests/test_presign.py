"""Presigned URLs (io/presign.py, `mt.functions.presigned_url`) against the real emulators on 127.0.0.1.

Signatures are proven, not shapes: Azurite verifies SAS itself (a tampered `sig` gets 403); moto and
fake-gcs-server accept anything, so S3 signatures are recomputed with botocore's own signer at the
URL's `X-Amz-Date`, and GCS signatures are verified with the service account's public key and
recomputed with google-cloud-storage's V4 signer at the same timestamp. Every URL is also fetched.
"""

from __future__ import annotations

import datetime
import json
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import mediatable as mt
from mediatable.cli import main
from mediatable.config import Settings
from mediatable.errors import InvalidArgument, PresignError
from mediatable.io.objects import ObjectStores
from mediatable.io.objects.gcs import signed_url
from mediatable.io.presign import Presigner
from servers.cloud import SEED, AzureServer, GCSServer, S3Server, write_service_account
from servers.http import FaultServer

CAT = SEED["images/cat.jpg"]
README = SEED["docs/readme.txt"]


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def set_aws_env(monkeypatch: pytest.MonkeyPatch, s3: S3Server, *, endpoint: str | None = None) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "mt-session-token-for-presign")
    monkeypatch.setenv("AWS_REGION", s3.region)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint or s3.endpoint)


def presigner(home: Path, buckets: dict[str, dict[str, Any]] | None = None) -> Presigner:
    return Presigner(ObjectStores(Settings(home=home, buckets=buckets or {}), instance_credentials=False))


def botocore_signature(url: str, key_id: str, secret: str, token: str | None, region: str) -> str:
    """The SigV4 query signature botocore computes for `url` at the URL's own X-Amz-Date and expiry."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    request = AWSRequest(method="GET", url=urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    request.context["timestamp"] = query["X-Amz-Date"]  # the signer's clock, fixed at the URL's time
    signer = S3SigV4QueryAuth(Credentials(key_id, secret, token), "s3", region, expires=int(query["X-Amz-Expires"]))
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


# -- S3 -------------------------------------------------------------------------------------------------


def test_s3_signature_is_botocores_and_the_url_serves_the_object(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    set_aws_env(monkeypatch, s3_server)
    keys = ["images/cat.jpg", "odd names/caf\u00e9 + 1.txt"]
    urls = [f"s3://{s3_server.private_bucket}/{key}" for key in keys]
    signed = presigner(clean_env).presign(urls, 900)
    for url, key in zip(signed, keys, strict=True):
        assert isinstance(url, str), url
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        # Path-style on the configured endpoint (the S3-compatible server), session token included.
        assert f"{parts.scheme}://{parts.netloc}" == s3_server.endpoint
        assert parts.path == f"/{s3_server.private_bucket}/{quote(key)}"
        assert query["X-Amz-Expires"] == "900" and query["X-Amz-Security-Token"] == "mt-session-token-for-presign"
        assert query["X-Amz-Credential"].startswith(f"{s3_server.access_key_id}/")
        expected = botocore_signature(
            url, s3_server.access_key_id, s3_server.secret_access_key, "mt-session-token-for-presign", s3_server.region
        )
        assert query["X-Amz-Signature"] == expected
        # A tampered URL would not match: the check above is not vacuous.
        tampered = url.replace(quote(key), quote(key) + "x")
        assert dict(parse_qsl(urlsplit(tampered).query))["X-Amz-Signature"] != botocore_signature(
            tampered, s3_server.access_key_id, s3_server.secret_access_key, "mt-session-token-for-presign", "us-east-1"
        )
    assert http_get(signed[0]) == (200, CAT)
    assert http_get(signed[1]) == (200, b"odd key\n")


def test_s3_profile_endpoint_and_region_from_aws_config(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    # endpoint_url and region of the AWS_PROFILE's ~/.aws/config section: reads and presigning go there.
    aws = Path.home() / ".aws"
    aws.mkdir()
    keys = f"aws_access_key_id = {s3_server.access_key_id}\naws_secret_access_key = {s3_server.secret_access_key}\n"
    (aws / "credentials").write_text(f"[minio]\n{keys}")
    (aws / "config").write_text(f"[profile minio]\nregion = eu-central-1\nendpoint_url = {s3_server.endpoint}\n")
    monkeypatch.setenv("AWS_PROFILE", "minio")
    url = f"s3://{s3_server.private_bucket}/images/cat.jpg"
    (signed,) = presigner(clean_env).presign([url], 600)
    assert isinstance(signed, str) and signed.startswith(f"{s3_server.endpoint}/{s3_server.private_bucket}/")
    assert "%2Feu-central-1%2Fs3%2F" in signed
    assert dict(parse_qsl(urlsplit(signed).query))["X-Amz-Signature"] == botocore_signature(
        signed, s3_server.access_key_id, s3_server.secret_access_key, None, "eu-central-1"
    )
    assert http_get(signed) == (200, CAT)


def test_signing_makes_no_network_call(monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path) -> None:
    # Endpoints nothing listens on (the discard port) and a GCS token URI there too: signing still
    # works, so it asked no server anything.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOFFLINE000000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "offline-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_connection_string("http://127.0.0.1:9/acct", "acct"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(write_service_account(tmp_path, "http://127.0.0.1:9")))
    urls = ["s3://b/a.jpg", "gs://b/a.jpg", "az://c/a.jpg"]
    signed = presigner(clean_env).presign(urls, 60)
    assert all(isinstance(s, str) and s.startswith("http://127.0.0.1:9/") for s in signed), signed


# -- GCS ------------------------------------------------------------------------------------------------


def verify_goog4(url: str, key: dict[str, Any]) -> None:
    """Check a GOOG4-RSA-SHA256 URL against the documented algorithm with the account's public key."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    signature = bytes.fromhex(dict(params)["X-Goog-Signature"])
    canonical_query = urlencode(sorted((k, v) for k, v in params if k != "X-Goog-Signature"), quote_via=quote)
    canonical = f"GET\n{parts.path}\n{canonical_query}\nhost:{parts.netloc}\n\nhost\nUNSIGNED-PAYLOAD"
    date = dict(params)["X-Goog-Date"]
    to_sign = f"GOOG4-RSA-SHA256\n{date}\n{date[:8]}/auto/storage/goog4_request\n"
    to_sign += __import__("hashlib").sha256(canonical.encode()).hexdigest()
    public = serialization.load_pem_private_key(key["private_key"].encode(), None).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_gcs_signature_verifies_with_the_public_key_and_serves_the_object(
    gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    key_file = write_service_account(tmp_path, gcs_server.endpoint)
    key = json.loads(key_file.read_text())
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint)
    keys = ["images/cat.jpg", "odd names/caf\u00e9 + 1.txt"]
    signed = presigner(clean_env).presign([f"gs://{gcs_server.bucket}/{k}" for k in keys], 3600)
    for url, name in zip(signed, keys, strict=True):
        assert isinstance(url, str), url
        assert url.startswith(f"{gcs_server.endpoint}/{gcs_server.bucket}/")  # signed for the emulator's host
        verify_goog4(url, key)
        with pytest.raises(InvalidSignature):
            verify_goog4(url.replace("X-Goog-Expires=3600", "X-Goog-Expires=3601"), key)
        # google-cloud-storage's own V4 signer, at the same timestamp, gives the same URL.
        from google.cloud.storage._signing import generate_signed_url_v4
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_info(key)
        theirs = generate_signed_url_v4(
            credentials,
            f"/{gcs_server.bucket}/{quote(name, safe='/~')}",
            expiration=3600,
            api_access_endpoint=gcs_server.endpoint,
            _request_timestamp=dict(parse_qsl(urlsplit(url).query))["X-Goog-Date"],
        )
        assert theirs == url
    assert http_get(signed[0]) == (200, CAT)
    assert http_get(signed[1]) == (200, b"odd key\n")


def test_gcs_default_host_and_signing_function() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key = {"client_email": "a@b.iam.gserviceaccount.com", "private_key": pem}
    when = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
    url = signed_url(key, "https://storage.googleapis.com", "bucket", "dir/a b+c.jpg", 604800, when)
    assert url.startswith("https://storage.googleapis.com/bucket/dir/a%20b%2Bc.jpg?X-Goog-Algorithm=GOOG4-RSA-SHA256")
    assert "X-Goog-Date=20261201T120000Z" in url and "X-Goog-Expires=604800" in url
    verify_goog4(url, key)


# -- Azure ----------------------------------------------------------------------------------------------


def azure_connection_string(endpoint: str, account: str, key: str = "a2V5LWZvci1vZmZsaW5lLXNpZ25pbmc=") -> str:
    return f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={endpoint};"


@pytest.mark.parametrize("source", ["connection_string", "account_key"])
def test_azure_sas_is_accepted_by_azurite_and_a_tampered_one_is_not(
    source: str, azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    if source == "connection_string":
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_server.connection_string)
        buckets = None
    else:
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azure_server.account)
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", azure_server.key)
        buckets = {f"az://{azure_server.container}": {"endpoint": azure_server.endpoint}}
    urls = [f"az://{azure_server.container}/images/cat.jpg", f"az://{azure_server.container}/docs/readme.txt"]
    signed = presigner(clean_env, buckets).presign(urls, 300)
    assert all(isinstance(s, str) and "sig=" in s for s in signed), signed
    assert http_get(signed[0]) == (200, CAT)
    assert http_get(signed[1]) == (200, README)
    sig = dict(parse_qsl(urlsplit(signed[0]).query))["sig"]
    other_sig = ("B" if sig[0] == "A" else "A") + sig[1:]  # a different first character, always
    tampered = signed[0].replace(quote(sig, safe=""), quote(other_sig, safe=""))
    assert tampered != signed[0]
    assert http_get(tampered)[0] == 403
    # The SAS grants read on that blob only.
    other = signed[0].replace("images/cat.jpg", "docs/readme.txt")
    assert http_get(other)[0] == 403


def test_azure_sas_token_alone_cannot_sign(
    azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azure_server.account)
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", azure_server.container_sas())
    (error,) = presigner(clean_env, {f"az://{azure_server.container}": {"endpoint": azure_server.endpoint}}).presign(
        [f"az://{azure_server.container}/images/cat.jpg"], 60
    )
    assert isinstance(error, PresignError) and "AZURE_STORAGE_ACCOUNT_KEY" in str(error)
    assert "sig=" not in str(error)


# -- what cannot be signed ------------------------------------------------------------------------------


def test_http_passes_through_and_local_files_say_what_to_do(clean_env: Path, tmp_path: Path) -> None:
    local = tmp_path / "clip.mp4"
    local.write_bytes(b"x")
    urls = ["https://cdn.example.com/a.jpg", "https://h/x.jpg?token=already-signed", str(local), f"file://{local}"]
    out = presigner(clean_env).presign(urls, 60)
    assert out[:2] == urls[:2]
    for error in out[2:]:
        assert isinstance(error, PresignError)
        assert "destination=" in str(error) and "serve the folder" in str(error) and str(local) in str(error)


def test_no_credentials_is_a_clear_error_per_url(s3_server: S3Server, clean_env: Path) -> None:
    stores = {f"s3://{s3_server.public_bucket}": {"endpoint": s3_server.endpoint}}
    (error,) = presigner(clean_env, stores).presign([f"s3://{s3_server.public_bucket}/images/cat.jpg"], 60)
    assert isinstance(error, PresignError) and error.url == f"s3://{s3_server.public_bucket}/images/cat.jpg"
    assert "no AWS credentials found" in str(error)
    (error,) = presigner(clean_env).presign(["gs://some-bucket/a.jpg"], 60)
    assert isinstance(error, PresignError) and "GOOGLE_APPLICATION_CREDENTIALS" in str(error)
    (error,) = presigner(clean_env).presign(["az://container/a.jpg"], 60)
    assert isinstance(error, mt.MediaError) and "no Azure storage account" in str(error)


@pytest.mark.parametrize("seconds", [0, -5, 1.5, True, "3600"])
def test_bad_expiration_is_refused_when_the_expression_is_built(seconds: Any) -> None:
    with pytest.raises(InvalidArgument, match="expiration_seconds"):
        mt.functions.presigned_url(mt.functions.string.upper("s3://b/k"), seconds)


def test_provider_maximum_per_url(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOFFLINE000000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "offline-secret")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_connection_string("http://127.0.0.1:9/acct", "acct"))
    eight_days = 8 * 86400
    s3, azure = presigner(clean_env).presign(["s3://b/a.jpg", "az://c/a.jpg"], eight_days)
    assert isinstance(s3, PresignError) and "more than S3 allows (7 days)" in str(s3)
    assert isinstance(azure, str) and "sig=" in azure  # an account-key SAS has no maximum


# -- tables -----------------------------------------------------------------------------------------------


def test_computed_column_method_form_and_string_urls(
    s3_server: S3Server, http_server: FaultServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    set_aws_env(monkeypatch, s3_server)
    mt.init(home=clean_env, quiet=True)
    local = tmp_path / "local.mp4"
    local.write_bytes(b"local")
    videos = mt.create_table("videos", {"video": mt.Video, "link": mt.String})
    rows = [
        {
            "video": f"s3://{s3_server.private_bucket}/images/cat.jpg",
            "link": f"s3://{s3_server.private_bucket}/docs/readme.txt",
        },
        {"video": http_server.url("clip.mp4"), "link": None},
        {"video": str(local), "link": "https://example.com/x.mp4"},
    ]
    videos.insert(rows, quiet=True)
    status = videos.add_computed_column(url=mt.functions.presigned_url(videos.video, expiration_seconds=3600))
    assert (status.num_computed_values, status.num_excs) == (3, 1)
    result = videos.select(videos.url, videos.url.errortype, videos.url.errormsg).collect()
    signed, passthrough, missing = result["url"]
    assert http_get(signed) == (200, CAT)
    assert passthrough == http_server.url("clip.mp4") and missing is None
    assert result["url_errortype"][2] == "PresignError" and "destination=" in result["url_errormsg"][2]
    assert http_server.count("clip.mp4") == 0  # presigning downloads nothing
    # The method form, on a String column of URLs too; None stays None.
    links = videos.select(l=videos.link.presigned_url(60)).collect()
    assert http_get(links["l"][0]) == (200, README) and links["l"][1] is None
    assert links["l"][2] == "https://example.com/x.mp4"
    with pytest.raises(mt.ComputeError, match="PresignError: cannot presign a local file"):
        videos.select(v=videos.video.presigned_url(60)).collect()  # a query raises on a failed value
    # Rows inserted later get their links on insert.
    videos.insert([{"video": f"s3://{s3_server.private_bucket}/docs/readme.txt"}], quiet=True)
    assert http_get(videos.select(videos.url).collect()["url"][3]) == (200, README)
    # The stored expression survives a new session.
    mt.init(home=clean_env, quiet=True)
    assert "presigned_url(videos.video, expiration_seconds=3600)" in repr(mt.get_table("videos"))


def test_signatures_stay_out_of_reprs_errors_and_cli(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_aws_env(monkeypatch, s3_server)
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("clips", {"video": mt.Video})
    t.insert([{"video": f"s3://{s3_server.private_bucket}/images/cat.jpg"}], quiet=True)
    t.add_computed_column(url=t.video.presigned_url(600), quiet=True)
    result = t.select(t.url).collect()
    signature = dict(parse_qsl(urlsplit(result["url"][0]).query))["X-Amz-Signature"]
    shown = repr(result) + repr(t.head())
    capsys.readouterr()
    assert main(["--home", str(clean_env), "show", "clips"]) == 0
    shown += capsys.readouterr().out
    # An error about the object behind a presigned URL (its bytes are no JPEG) names it redacted.
    images = mt.create_table("images", {"image": mt.Image})
    images.insert([{"image": result["url"][0]}], quiet=True)
    with pytest.raises(mt.ComputeError) as failed:
        images.add_computed_column(w=images.image.width, on_error="abort", quiet=True)
    shown += "".join(traceback.format_exception(failed.value))
    assert f"{s3_server.endpoint}/{s3_server.private_bucket}/images/cat.jpg?…" in shown
    assert signature not in shown and "mt-session-token-for-presign" not in shown


def test_expiration_past_the_maximum_fails_before_any_work(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    set_aws_env(monkeypatch, s3_server)
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("clips", {"video": mt.Video})
    t.insert([{"video": "https://example.com/a.mp4"}, {"video": f"s3://{s3_server.private_bucket}/clips/b.mp4"}])
    with pytest.raises(InvalidArgument) as error:
        t.add_computed_column(url=mt.functions.presigned_url(t.video, expiration_seconds=8 * 86400))
    message = str(error.value)
    assert "'url'" in message and "S3 allows (7 days)" in message
    assert f"s3://{s3_server.private_bucket}/clips/b.mp4" in message
    assert t.columns == ["video"]  # nothing was added
    with pytest.raises(InvalidArgument, match="S3 allows"):
        t.select(t.video.presigned_url(10 * 86400)).collect()
