"""The one exception tree of mediatable.

Every error the library raises on purpose derives from :class:`Error`::

    Error
    ├── ConfigError                  bad setting value or config file
    ├── InvalidArgument              (also ValueError) an argument outside its allowed values
    ├── CatalogError
    │   ├── NotFoundError            (also LookupError)
    │   │   ├── DirNotFound
    │   │   ├── TableNotFound
    │   │   └── ColumnNotFound    (also AttributeError)
    │   ├── AlreadyExists
    │   ├── InvalidName
    │   ├── DependencyError          dropping something others depend on
    │   ├── ConcurrentChange         another process changed the table's schema meanwhile
    │   └── ReadOnlyTable            an earlier version or a snapshot cannot change
    ├── DataError                    (also ValueError) a value does not fit its column
    │   └── UnsupportedScheme        a media URL whose scheme we cannot read
    ├── ExprError                    an expression that cannot be built or typed
    ├── MediaError                   reading or writing one media object; has .url (redacted)
    │   ├── MediaNotFound            (also FileNotFoundError)
    │   ├── MediaAccessDenied        (also PermissionError)
    │   ├── MediaFetchTimeout        (also TimeoutError)
    │   ├── MediaFetchError          other transport failures; .status, .is_retryable
    │   │   └── MediaChanged         the object changed while it was being read by ranges
    │   ├── MediaDecodeError         the bytes arrived but are not a valid image/video/...
    │   ├── MediaConfigError         (also ConfigError) the URL's store cannot be configured
    │   └── PresignError             a URL that cannot be turned into a presigned HTTPS URL
    ├── ComputeError                 a computed value failed; has .table, .column, .row
    ├── CacheError                   the local file cache is unusable
    ├── MissingDependency            (also ImportError) an optional extra is not installed
    └── ProviderError                an AI provider's API refused or failed a request; .provider, .status

Context lives in attributes, never only in the message. URLs stored on errors are
always redacted (no query strings, no userinfo), so printing an error never leaks a secret.
"""

from __future__ import annotations


class Error(Exception):
    """Root of every mediatable error."""


class ConfigError(Error):
    """A setting has an invalid value, or the config file cannot be read."""


class InvalidArgument(Error, ValueError):
    """An argument has a value outside the allowed ones (e.g. `if_exists='sometimes'`)."""


class CatalogError(Error):
    """A problem with directories, tables, views or columns."""


class NotFoundError(CatalogError, LookupError):
    """A named catalog object does not exist."""


class DirNotFound(NotFoundError):
    """The directory does not exist."""


class TableNotFound(NotFoundError):
    """The table or view does not exist."""


class ColumnNotFound(NotFoundError, AttributeError):
    """The column does not exist in the table (also an AttributeError: `hasattr(t, 'x')` is False)."""


class AlreadyExists(CatalogError):
    """A directory, table or column with that name already exists."""


class InvalidName(CatalogError, ValueError):
    """A name is not a valid identifier, or is reserved."""


class DependencyError(CatalogError):
    """The object cannot be dropped or changed because others depend on it."""


class ConcurrentChange(CatalogError):
    """Another process changed the table's schema while this change was prepared; nothing was changed.

    Attributes:
        table: the table's path.
    """

    def __init__(self, message: str, *, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class ReadOnlyTable(CatalogError):
    """The handle reads an earlier version or a snapshot: its rows and schema cannot change."""


class DataError(Error, ValueError):
    """A value does not fit its column, or a row names an unknown column.

    Attributes:
        row: index of the offending row within the call, when known.
        column: column name, when known.
    """

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.column = column


class UnsupportedScheme(DataError):
    """A media URL uses a scheme mediatable cannot read."""


class ExprError(Error):
    """An expression cannot be built, typed or evaluated as written."""


class MediaError(Error):
    """Reading or writing one media object failed.

    Attributes:
        url: the object's URL, redacted (no query string, no credentials).
        status: the HTTP status code when there was one.
        is_retryable: whether trying again later may succeed.
    """

    is_retryable: bool = False

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class MediaNotFound(MediaError, FileNotFoundError):
    """The object does not exist (HTTP 404, missing key, missing file)."""


class MediaAccessDenied(MediaError, PermissionError):
    """The credentials in use may not read (or write) the object."""


class MediaFetchTimeout(MediaError, TimeoutError):
    """The server did not answer in time."""

    is_retryable = True


class MediaFetchError(MediaError):
    """Any other failure while transferring an object (see `status` and `is_retryable`)."""

    def __init__(
        self, message: str, *, url: str | None = None, status: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.is_retryable = retryable


class MediaChanged(MediaFetchError):
    """The object was replaced while it was being read by ranges: its ETag (or size, or date) changed.

    No bytes of the new version are mixed with the old: the read stops. Reading it again works on the
    new version.
    """


class MediaDecodeError(MediaError):
    """The object was read but its bytes are not valid media of the expected kind."""


class MediaConfigError(MediaError, ConfigError):
    """The store of one media URL cannot be configured (no Azure account, a bad option or key).

    It is that URL's error (one cell), and also a :class:`ConfigError`: the fix is a setting.
    """


class PresignError(MediaError):
    """The URL cannot be turned into a presigned HTTPS URL."""


class ComputeError(Error):
    """Computing a value failed.

    Attributes:
        table: the table's path.
        column: the column being computed.
        row: the row's id, when the failure belongs to one row.
    """

    def __init__(
        self, message: str, *, table: str | None = None, column: str | None = None, row: int | None = None
    ) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.row = row


class CacheError(Error):
    """The local file cache cannot be used (unwritable folder, corrupt index)."""


class MissingDependency(Error, ImportError):
    """A feature needs an optional package that is not installed; the message names the pip command."""


class ProviderError(Error):
    """A request to an AI provider (OpenAI or a compatible server) failed.

    Attributes:
        provider: the provider's name in the config (`openai`, ...).
        status: the HTTP status code when there was one.
        is_retryable: whether trying again later may succeed (429, 5xx, timeouts).
    """

    def __init__(self, message: str, *, provider: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.is_retryable = retryable
