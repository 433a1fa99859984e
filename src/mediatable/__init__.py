"""mediatable: tables whose media columns stay where they live (S3, GCS, Azure, HTTP, local disk).

Examples:
    >>> import mediatable as mt
    >>> mt.Image
    Image
"""

from mediatable import functions
from mediatable.api import (
    audio_chunks,
    coalesce,
    create_dir,
    create_table,
    create_view,
    document_pages,
    drop_dir,
    drop_table,
    frames,
    get_table,
    if_else,
    init,
    list_dirs,
    list_tables,
)
from mediatable.catalog.table import Table
from mediatable.config import Settings
from mediatable.errors import (
    AlreadyExists,
    CacheError,
    CatalogError,
    ColumnNotFound,
    ComputeError,
    ConfigError,
    DataError,
    DependencyError,
    DirNotFound,
    Error,
    ExprError,
    InvalidArgument,
    InvalidName,
    MediaAccessDenied,
    MediaDecodeError,
    MediaError,
    MediaFetchError,
    MediaFetchTimeout,
    MediaNotFound,
    NotFoundError,
    PresignError,
    TableNotFound,
    UnsupportedScheme,
)
from mediatable.exec.query import Query, ResultSet
from mediatable.exec.status import UpdateStatus
from mediatable.functions.udf import Function, udf
from mediatable.session import Session
from mediatable.types import (
    Array,
    Audio,
    Bool,
    ColumnType,
    Document,
    Float,
    Image,
    Int,
    Json,
    String,
    Timestamp,
    Video,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Array",
    "Audio",
    "Bool",
    "CacheError",
    "CatalogError",
    "ColumnNotFound",
    "ColumnType",
    "ComputeError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "DirNotFound",
    "Document",
    "Error",
    "ExprError",
    "Float",
    "Function",
    "Image",
    "Int",
    "InvalidArgument",
    "InvalidName",
    "Json",
    "MediaAccessDenied",
    "MediaDecodeError",
    "MediaError",
    "MediaFetchError",
    "MediaFetchTimeout",
    "MediaNotFound",
    "NotFoundError",
    "PresignError",
    "Query",
    "ResultSet",
    "Session",
    "Settings",
    "String",
    "Table",
    "TableNotFound",
    "Timestamp",
    "UnsupportedScheme",
    "UpdateStatus",
    "Video",
    "audio_chunks",
    "coalesce",
    "create_dir",
    "create_table",
    "create_view",
    "document_pages",
    "drop_dir",
    "drop_table",
    "frames",
    "functions",
    "get_table",
    "if_else",
    "init",
    "list_dirs",
    "list_tables",
    "udf",
]
