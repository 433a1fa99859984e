"""S3 and S3-compatible stores: the AWS credential chain, profiles of `~/.aws/config`, endpoints.

Order, first match wins (the AWS CLI's own order):

- credentials: the bucket's `[buckets."s3://…"]` keys; `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
  (+ `AWS_SESSION_TOKEN`); the profile `AWS_PROFILE` (or `default`) of `~/.aws/credentials` and
  `~/.aws/config`, through boto3 (static keys, SSO, assume-role, `credential_process`); web identity
  (EKS), container (ECS) or instance (EC2) credentials when present; else unsigned requests.
- endpoint: the bucket's `endpoint`; `AWS_ENDPOINT_URL_S3`; `AWS_ENDPOINT_URL`; the profile's
  `services` section (`s3 = endpoint_url = …`); the profile's `endpoint_url`; else AWS.
- region: the bucket's `region`; `AWS_REGION`; `AWS_DEFAULT_REGION`; the profile's `region`.

`AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` ignores endpoints from the environment and the profile.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

from obstore.store import S3Store

from mediatable.errors import MediaConfigError
from mediatable.io.objects.options import StoreContext, StorePlan, bucket_names, file_stamp, plan, truthy
from mediatable.io.urls import MediaUrl, redact_url

__all__ = ["AwsProfiles", "s3_plan"]

_AWS_CREDENTIAL_KEYS = (
    "aws_access_key_id",
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
    "credential_source",
    "source_profile",
)


@dataclasses.dataclass(frozen=True)
class Profile:
    """What one AWS profile says.

    Attributes:
        name: the profile's name.
        key: a cache key naming the files and their versions.
        provider: a boto3 credential provider when the profile holds credentials, else None.
        region, endpoint_url, addressing_style: the profile's S3 settings, when set.
    """

    name: str
    key: tuple[Any, ...]
    provider: Any = None
    region: str | None = None
    endpoint_url: str | None = None
    addressing_style: str | None = None


class AwsProfiles:
    """Reads the profile `AWS_PROFILE` names (or `default`) from the AWS files, once per file version.

    boto3 is imported only when a profile holds credentials: it costs ~150 ms, which most sessions
    never pay. Safe to use from many threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._profiles: dict[tuple[Any, ...], Profile] = {}

    def current(self, url: str) -> Profile | None:
        """The profile in effect now, or None when there are no AWS files at all.

        Args:
            url: the (redacted) URL being resolved, named by errors.

        Raises:
            MediaConfigError: `AWS_PROFILE` names a profile that is not defined (or no files exist),
                or the files cannot be read.
        """
        env = os.environ
        home = Path(env.get("HOME") or Path.home())
        credentials_file = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
        config_file = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
        profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE")
        stamps = tuple(file_stamp(f) for f in (credentials_file, config_file))
        if stamps == (None, None):
            if profile:
                raise MediaConfigError(
                    f"AWS_PROFILE={profile!r} is set but neither {credentials_file} nor {config_file} exists", url=url
                )
            return None
        name = profile or "default"
        key = ("aws-profile", name, str(credentials_file), str(config_file), stamps)
        with self._lock:
            found = self._profiles.get(key)
        if found is not None:
            return found
        values, defined, has_credentials = _read_profile(name, credentials_file, config_file, url)
        if profile and not defined:
            raise MediaConfigError(
                f"AWS profile {profile!r} is not defined in {credentials_file} or {config_file}", url=url
            )
        provider = None
        region = values.get("region")
        if has_credentials:
            # Deferred imports: boto3 costs ~150 ms, see the class docstring.
            import boto3
            from obstore.auth.boto3 import Boto3CredentialProvider

            session = boto3.Session(profile_name=name)
            try:
                provider = Boto3CredentialProvider(session)
            except ValueError as exc:  # the profile names a source that yields nothing
                raise MediaConfigError(f"AWS profile {name!r} gives no credentials", url=url) from exc
            region = region or session.region_name
        s3 = _nested(values.get("s3", ""))
        services = _read_services(values.get("services"), config_file)
        found = Profile(
            name=name,
            key=key,
            provider=provider,
            region=region,
            endpoint_url=services.get("endpoint_url") or s3.get("endpoint_url") or values.get("endpoint_url"),
            addressing_style=s3.get("addressing_style"),
        )
        with self._lock:
            self._profiles[key] = found
        return found


def s3_plan(url: MediaUrl, context: StoreContext, profiles: AwsProfiles) -> StorePlan:
    """How to build the store of `url`'s bucket with the credentials in effect now."""
    env = os.environ
    options = context.bucket_options(*bucket_names(url))
    overrides = dict(options.store)
    profile = profiles.current(redact_url(url.url))
    config: dict[str, Any] = {}
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or (profile and profile.region)
    endpoint = None
    if not truthy(env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "")):
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or (profile and profile.endpoint_url)
    if endpoint:
        config["endpoint"] = endpoint
    if profile and profile.addressing_style in ("virtual", "path"):
        config["virtual_hosted_style_request"] = profile.addressing_style == "virtual"
    provider = None
    provider_key: tuple[Any, ...] = ()
    signed = options.has_credentials
    source = f'keys in [buckets."{options.name}"]' if signed else ""
    if options.anonymous is not True and not signed:
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            config["access_key_id"] = env["AWS_ACCESS_KEY_ID"]
            config["secret_access_key"] = env["AWS_SECRET_ACCESS_KEY"]
            if env.get("AWS_SESSION_TOKEN"):
                config["session_token"] = env["AWS_SESSION_TOKEN"]
            signed, source = True, "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        elif profile is not None and profile.provider is not None:
            provider, provider_key = profile.provider, profile.key
            signed, source = True, f"AWS profile {profile.name!r}"
        else:
            # Credentials obstore finds by itself: web identity (EKS), container (ECS), instance role.
            for found, name in (
                (env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"), "AWS_WEB_IDENTITY_TOKEN_FILE"),
                (env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
                (env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"), "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
                (
                    context.use_instance_credentials("aws") and not truthy(env.get("AWS_EC2_METADATA_DISABLED", "")),
                    "the EC2 instance role",
                ),
            ):
                if found:
                    signed, source = True, name
                    break
    if region:
        config["region"] = region
    if options.anonymous is True or (options.anonymous is None and not signed):
        config["skip_signature"] = True
        provider, provider_key = None, ()
        for name in ("access_key_id", "secret_access_key", "session_token"):
            config.pop(name, None)
        source = (
            f'anonymous = true in [buckets."{options.name}"]'
            if options.anonymous
            else "no AWS credentials found (AWS_ACCESS_KEY_ID, AWS_PROFILE / ~/.aws/credentials, instance role)"
        )
    config.update(overrides)
    endpoint = str(config.get("endpoint") or config.get("endpoint_url") or config.get("aws_endpoint") or "")
    allow_http = truthy(env.get("AWS_ALLOW_HTTP", "")) or endpoint.startswith("http://")
    client = context.client(options.client, allow_http=allow_http)
    return plan(
        S3Store,
        "S3",
        "s3",
        url.bucket,
        config,
        client,
        source=source,
        provider_key=provider_key,
        credential_provider=provider,
    )


def _read_profile(name: str, credentials_file: Path, config_file: Path, url: str) -> tuple[dict[str, str], bool, bool]:
    """(the profile's values, whether it is defined at all, whether it holds credentials)."""
    values: dict[str, str] = {}
    defined = has_credentials = False
    for path, section in ((config_file, name if name == "default" else f"profile {name}"), (credentials_file, name)):
        parser = _parse(path, url)
        if parser.has_section(section):
            defined = True
            options = dict(parser.items(section))
            has_credentials = has_credentials or any(options.get(k) for k in _AWS_CREDENTIAL_KEYS)
            for key, value in options.items():
                values.setdefault(key, value)
    return values, defined, has_credentials


def _read_services(name: str | None, config_file: Path) -> dict[str, str]:
    """The S3 settings of a `[services NAME]` section of the config file (`s3 =` then indented keys)."""
    if not name:
        return {}
    parser = _parse(config_file, "")
    section = f"services {name.strip()}"
    return _nested(parser.get(section, "s3", fallback="")) if parser.has_section(section) else {}


def _nested(value: str) -> dict[str, str]:
    """A nested AWS config value (`s3 =` followed by indented `key = value` lines) as a dict."""
    out: dict[str, str] = {}
    for line in value.splitlines():
        key, sep, item = line.partition("=")
        if sep:
            out[key.strip().lower()] = item.strip()
    return out


def _parse(path: Path, url: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise MediaConfigError(f"cannot read {path}: {type(exc).__name__}", url=url) from None
    return parser
