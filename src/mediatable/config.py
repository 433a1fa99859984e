"""Settings: one typed, frozen object built from defaults, `<home>/config.toml` and env vars.

Precedence, lowest first: built-in defaults, `<home>/config.toml`, environment variables,
keyword arguments to :func:`load_settings` (what `mt.init(...)` passes).

Example `config.toml`::

    cache_size = "50GiB"
    max_concurrent_downloads = 64

    [buckets."s3://my-minio-bucket"]      # keys follow obstore's own names
    endpoint = "http://127.0.0.1:9000"
    region = "us-east-1"
    allow_http = true

    [buckets."s3://open-data"]
    anonymous = true

    [openai]                              # an AI provider (see ProviderSettings); any other [name]
    api_key = "sk-..."                    # section is one more OpenAI-compatible server
    base_url = "http://127.0.0.1:8000/v1"
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from mediatable.errors import ConfigError

log = logging.getLogger(__name__)

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: str | int) -> int:
    """Parse a byte count: an int, or a string like ``"20GiB"``, ``"500 MB"`` or ``"1048576"``.

    Examples:
        >>> parse_size("20GiB")
        21474836480
        >>> parse_size("1.5 kb")
        1500
        >>> parse_size(42)
        42
    """
    if isinstance(value, bool):
        raise ConfigError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"a size cannot be negative: {value}")
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ConfigError(f"not a size: {value!r} (use a byte count or e.g. '20GiB', '500MB')")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_duration(value: str | float | int) -> float:
    """Parse seconds: a number, or a string like ``"30s"``, ``"500ms"``, ``"2m"``.

    Examples:
        >>> parse_duration("500ms")
        0.5
        >>> parse_duration(3)
        3.0
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*", str(value))
    if not match:
        raise ConfigError(f"not a duration: {value!r} (use seconds or e.g. '30s', '500ms')")
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * factor


def _parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _image_format(value: str) -> str:
    lowered = value.strip().lower()
    return "jpeg" if lowered == "jpg" else lowered


def _parse_names(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A list of names: a sequence, or one comma-separated string (lower-cased, blanks dropped)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip().lower() for item in items if str(item).strip())


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of mediatable. Each field names its default and its environment variable.

    Examples:
        >>> s = Settings(home=Path("/tmp/mt"))
        >>> s.cache_dir
        PosixPath('/tmp/mt/file_cache')
    """

    home: Path = dataclasses.field(default_factory=lambda: Path("~/.mediatable").expanduser())
    """Where the catalog, cache and generated media live. Env `MEDIATABLE_HOME`; default `~/.mediatable`."""

    db_url: str | None = None
    """SQLAlchemy URL of the catalog. Env `MEDIATABLE_DB_URL`; default SQLite file `<home>/catalog.db`."""

    cache_size: int = 20 * 1024**3
    """Byte budget of the file cache. Env `MEDIATABLE_CACHE_SIZE` (e.g. `20GiB`); default 20 GiB."""

    max_concurrent_downloads: int = 32
    """Downloads in flight at once. Env `MEDIATABLE_MAX_CONCURRENT_DOWNLOADS`; default 32."""

    compute_workers: int = dataclasses.field(default_factory=lambda: max(os.cpu_count() or 1, 1))
    """Threads computing values. Env `MEDIATABLE_COMPUTE_WORKERS`; default the number of CPUs."""

    image_format: Literal["jpeg", "webp", "png"] = "jpeg"
    """Format of generated images (thumbnails, frames, ...): `jpeg`, `webp` or `png`; under `jpeg`, images with
    alpha are written as PNG. A column can choose its own. Env `MEDIATABLE_IMAGE_FORMAT`; default `jpeg`."""

    image_quality: int = 90
    """Quality (1-100) of generated JPEG and WebP images. Env `MEDIATABLE_IMAGE_QUALITY`; default 90."""

    cache_validation: Literal["never", "etag"] = "never"
    """`never`: a cached file is served as is; `etag`: a HEAD request checks that the object is unchanged.
    Env `MEDIATABLE_CACHE_VALIDATION`; default `never`."""

    connect_timeout: float = 10.0
    """Seconds to open a connection. Env `MEDIATABLE_CONNECT_TIMEOUT`; default 10."""

    request_timeout: float = 20.0
    """Seconds without progress before a transfer attempt counts as stalled (and is retried).
    Env `MEDIATABLE_REQUEST_TIMEOUT`; default 20: with 5 retries a stalled server costs a cell ~2 minutes."""

    min_transfer_rate: int = 16 * 1024
    """Bytes per second below which a body counts as stalled, e.g. `16KiB`; 0 turns the check off.
    Env `MEDIATABLE_MIN_TRANSFER_RATE`; default 16 KiB/s."""

    allowed_schemes: tuple[str, ...] = ()
    """URL schemes accepted as media, e.g. `("https", "s3")`; empty: all supported ones. For tables
    holding untrusted URLs (`file` lets them read local files). Env `MEDIATABLE_ALLOWED_SCHEMES`
    (comma-separated); default all."""

    allow_private_addresses: bool = True
    """Whether http(s) media may live at loopback, private or shared (CGNAT) addresses; False for
    untrusted URLs (host names are resolved before downloading). Link-local addresses (cloud
    metadata: 169.254.169.254) are refused always. Env `MEDIATABLE_ALLOW_PRIVATE_ADDRESSES`; default True."""

    max_retries: int = 5
    """Retries of a transient failure (5xx, 429, timeout, reset). Env `MEDIATABLE_MAX_RETRIES`; default 5."""

    retry_backoff: float = 0.2
    """First retry delay in seconds; doubles each time, with jitter. Env `MEDIATABLE_RETRY_BACKOFF`."""

    block_size: int = 4 * 1024**2
    """Bytes per block of a large object read by ranges (see `min_ranged_size`). Env `MEDIATABLE_BLOCK_SIZE`;
    default 4 MiB."""

    min_ranged_size: int = 32 * 1024**2
    """Objects at least this large are read in blocks, on demand, by functions that need only part of them
    (video and audio metadata, `extract_frame`, `clip`, sampled frames); smaller ones are downloaded whole.
    Env `MEDIATABLE_MIN_RANGED_SIZE`; default 32 MiB."""

    progress: bool | None = None
    """Show progress bars: True, False, or None (only when stderr is a terminal). Env `MEDIATABLE_PROGRESS`."""

    output_media_dest: str | None = None
    """Where computed media columns write their files when `add_computed_column` names no
    `destination=`: `s3://bucket/prefix/`, `gs://…`, `az://…` or a local folder. Env
    `MEDIATABLE_OUTPUT_MEDIA_DEST`; default None (`<home>/media`)."""

    executor: str = "local"
    """Where computed columns are evaluated: `local` (this process), `ray` (the Ray cluster of `RAY_ADDRESS`,
    or a new local one) or `ray://host:port` (a Ray cluster's client address). Env `MEDIATABLE_EXECUTOR`;
    default `local`."""

    ray_workers: int | None = None
    """Ray actors computing at once (one CPU each). Env `MEDIATABLE_RAY_WORKERS`; default the cluster's CPUs."""

    buckets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict, repr=False)
    """Per-bucket object-store options keyed by `scheme://bucket`, in obstore's key names. Config file only."""

    providers: Mapping[str, ProviderSettings] = dataclasses.field(default_factory=dict, repr=False)
    """AI providers by name (`openai` always; one more per `[name]` section of config.toml)."""

    @property
    def cache_dir(self) -> Path:
        """Folder of the file cache: `<home>/file_cache`."""
        return self.home / "file_cache"

    @property
    def media_dir(self) -> Path:
        """Folder where generated media is written when no destination is given: `<home>/media`."""
        return self.home / "media"

    @property
    def catalog_url(self) -> str:
        """The catalog's SQLAlchemy URL (`db_url`, or the embedded SQLite file)."""
        return self.db_url or f"sqlite:///{self.home / 'catalog.db'}"


@dataclasses.dataclass(frozen=True)
class ProviderSettings:
    """An AI provider: OpenAI, or a server speaking its API (vLLM, Ollama, ...), from `[name]` in config.toml.

    The env vars `NAME_API_KEY` and `NAME_BASE_URL` (`OPENAI_API_KEY`, `OPENAI_BASE_URL` for `[openai]`)
    win over the file. The key never appears in reprs, logs or error messages.
    """

    api_key: str | None = dataclasses.field(default=None, repr=False)
    """The API key (`api_key`; env `NAME_API_KEY`). Required: servers that need none take any string."""

    base_url: str | None = None
    """The API's base URL (`base_url`; env `NAME_BASE_URL`); default OpenAI's for `openai`."""

    max_concurrency: int = 8
    """Requests in flight at once to this provider, per process (`max_concurrency`); default 8."""

    max_retries: int = 5
    """Retries of a 408/409/429/5xx, timeout or reset (`max_retries`); default 5."""

    retry_backoff: float = 0.5
    """First retry delay in seconds when the server names none (`retry_backoff`); doubles, with jitter."""

    timeout: float = 120.0
    """Seconds to wait for one response (`timeout`); default 120."""


_PROVIDER_PARSERS: dict[str, Any] = {
    "api_key": str,
    "base_url": str,
    "max_concurrency": int,
    "max_retries": int,
    "retry_backoff": parse_duration,
    "timeout": parse_duration,
}


def _provider_settings(
    sections: Mapping[str, Mapping[str, Any]], env: Mapping[str, str], source: str
) -> dict[str, ProviderSettings]:
    """`openai` and each `[name]` section, with `NAME_API_KEY` / `NAME_BASE_URL` from env winning."""
    providers = {}
    for name in sorted({"openai", *sections}):
        fields: dict[str, Any] = {}
        for key, raw in sections.get(name, {}).items():
            if key not in _PROVIDER_PARSERS:
                known = ", ".join(_PROVIDER_PARSERS)
                raise ConfigError(f"{source}: unknown setting {key!r} in [{name}] (known: {known})")
            if key == "api_key" and not isinstance(raw, str):
                raise ConfigError(f"{source}: api_key in [{name}] must be a string")  # the value is never shown
            fields[key] = raw if key == "api_key" else _convert(f"{name}.{key}", raw, _PROVIDER_PARSERS[key], source)
        prefix = re.sub(r"\W", "_", name).upper()
        for key in ("api_key", "base_url"):
            if env.get(f"{prefix}_{key.upper()}"):
                fields[key] = env[f"{prefix}_{key.upper()}"]
        if int(fields.get("max_concurrency", 1)) < 1:
            raise ConfigError(f"{source}: max_concurrency in [{name}] must be at least 1")
        providers[name] = ProviderSettings(**fields)
    return providers


_ENV_FIELDS: dict[str, tuple[str, Any]] = {
    "MEDIATABLE_DB_URL": ("db_url", str),
    "MEDIATABLE_CACHE_SIZE": ("cache_size", parse_size),
    "MEDIATABLE_MAX_CONCURRENT_DOWNLOADS": ("max_concurrent_downloads", int),
    "MEDIATABLE_COMPUTE_WORKERS": ("compute_workers", int),
    "MEDIATABLE_CACHE_VALIDATION": ("cache_validation", str),
    "MEDIATABLE_IMAGE_FORMAT": ("image_format", _image_format),
    "MEDIATABLE_IMAGE_QUALITY": ("image_quality", int),
    "MEDIATABLE_CONNECT_TIMEOUT": ("connect_timeout", parse_duration),
    "MEDIATABLE_REQUEST_TIMEOUT": ("request_timeout", parse_duration),
    "MEDIATABLE_MAX_RETRIES": ("max_retries", int),
    "MEDIATABLE_RETRY_BACKOFF": ("retry_backoff", parse_duration),
    "MEDIATABLE_PROGRESS": ("progress", _parse_bool),
    "MEDIATABLE_BLOCK_SIZE": ("block_size", parse_size),
    "MEDIATABLE_MIN_RANGED_SIZE": ("min_ranged_size", parse_size),
    "MEDIATABLE_OUTPUT_MEDIA_DEST": ("output_media_dest", str),
    "MEDIATABLE_EXECUTOR": ("executor", str),
    "MEDIATABLE_RAY_WORKERS": ("ray_workers", int),
    "MEDIATABLE_MIN_TRANSFER_RATE": ("min_transfer_rate", parse_size),
    "MEDIATABLE_ALLOWED_SCHEMES": ("allowed_schemes", _parse_names),
    "MEDIATABLE_ALLOW_PRIVATE_ADDRESSES": ("allow_private_addresses", _parse_bool),
}

_FILE_PARSERS: dict[str, Any] = {
    "db_url": str,
    "cache_size": parse_size,
    "max_concurrent_downloads": int,
    "compute_workers": int,
    "cache_validation": str,
    "image_format": _image_format,
    "image_quality": int,
    "connect_timeout": parse_duration,
    "request_timeout": parse_duration,
    "max_retries": int,
    "retry_backoff": parse_duration,
    "progress": _parse_bool,
    "block_size": parse_size,
    "min_ranged_size": parse_size,
    "output_media_dest": str,
    "executor": str,
    "ray_workers": int,
    "min_transfer_rate": parse_size,
    "allowed_schemes": _parse_names,
    "allow_private_addresses": _parse_bool,
}


def create_home(home: Path) -> None:
    """Create the home folder readable by its owner only (0700), if it does not exist yet.

    It holds the catalog and the cache index, whose URLs may carry signatures and passwords.

    Examples:
        >>> import tempfile
        >>> home = Path(tempfile.mkdtemp()) / "mt"
        >>> create_home(home)
        >>> oct(home.stat().st_mode & 0o777)
        '0o700'
    """
    if not home.is_dir():
        home.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            home.mkdir(mode=0o700)


def create_private_file(path: Path) -> None:
    """Create an empty file readable by its owner only (0600), if it does not exist yet."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def load_settings(
    home: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from defaults, `<home>/config.toml`, env vars and `overrides`.

    Args:
        home: the home folder; default env `MEDIATABLE_HOME` or `~/.mediatable`.
        environ: the environment to read (default `os.environ`).
        **overrides: field values that win over everything else (None values are ignored).

    Returns:
        The frozen settings.

    Raises:
        ConfigError: a value cannot be parsed, or the config file is not valid TOML.

    Examples:
        >>> s = load_settings("/tmp/mt-doc", environ={"MEDIATABLE_CACHE_SIZE": "1GiB"})
        >>> s.cache_size
        1073741824
    """
    env = os.environ if environ is None else environ
    home_path = Path(home or env.get("MEDIATABLE_HOME") or "~/.mediatable").expanduser().resolve()
    values: dict[str, Any] = {"home": home_path}

    config_file = home_path / "config.toml"
    provider_sections: dict[str, Mapping[str, Any]] = {}
    if config_file.is_file():
        try:
            data = tomllib.loads(config_file.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"cannot read {config_file}: {exc}") from exc
        for key, raw in data.items():
            if key == "buckets":
                values["buckets"] = {str(k).rstrip("/"): dict(v) for k, v in raw.items()}
            elif key in _FILE_PARSERS:
                values[key] = _convert(key, raw, _FILE_PARSERS[key], str(config_file))
            elif isinstance(raw, dict):  # any other section is an AI provider
                provider_sections[key] = raw
            else:
                raise ConfigError(f"{config_file}: unknown setting {key!r}")
        if any("api_key" in section for section in provider_sections.values()) and config_file.stat().st_mode & 0o077:
            log.warning("%s holds an API key and other users can read it: chmod 600 %s", config_file, config_file)
    values["providers"] = _provider_settings(provider_sections, env, str(config_file))

    for var, (field, parser) in _ENV_FIELDS.items():
        if env.get(var):
            values[field] = _convert(field, env[var], parser, var)

    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in _FILE_PARSERS and key not in ("buckets", "home"):
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _convert(key, raw, _FILE_PARSERS.get(key, lambda x: x), "argument")
    if values.get("cache_validation", "never") not in ("never", "etag"):
        raise ConfigError(f"cache_validation must be 'never' or 'etag', not {values['cache_validation']!r}")
    if values.get("image_format", "jpeg") not in ("jpeg", "webp", "png"):
        raise ConfigError(f"image_format must be 'jpeg', 'webp' or 'png', not {values['image_format']!r}")
    if not 1 <= int(values.get("image_quality", 90)) <= 100:
        raise ConfigError(f"image_quality must be from 1 to 100, not {values['image_quality']}")
    check_executor(values.get("executor", "local"))
    for positive in ("max_concurrent_downloads", "compute_workers", "block_size", "ray_workers"):
        if positive in values and int(values[positive]) < 1:
            raise ConfigError(f"{positive} must be at least 1, not {values[positive]}")
    for duration in ("connect_timeout", "request_timeout"):
        if duration in values and not float(values[duration]) > 0:
            raise ConfigError(f"{duration} must be more than 0 seconds, not {values[duration]}")
    return Settings(**values)


def check_executor(value: str) -> str:
    """`value` if it names an executor: `local`, `ray` or `ray://host:port`.

    Examples:
        >>> check_executor("ray://10.0.0.5:10001")
        'ray://10.0.0.5:10001'
        >>> check_executor("spark")
        Traceback (most recent call last):
        ...
        mediatable.errors.ConfigError: executor must be 'local', 'ray' or 'ray://host:port', not 'spark'
    """
    if value in ("local", "ray") or re.fullmatch(r"ray://[^/\s:]+:[0-9]+", value):
        return value
    raise ConfigError(f"executor must be 'local', 'ray' or 'ray://host:port', not {value!r}")


def _convert(field: str, raw: Any, parser: Any, source: str) -> Any:
    try:
        return parser(raw)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid value for {field}: {raw!r}") from exc
