"""The catalog's own SQL tables, and the naming rules for everything users name.

User data lives in one SQL table per mediatable table, `mt_t<id>`: a `_rowid` primary key, one SQL
column `c_<name>` per stored column, plus `c_<name>_errortype` / `c_<name>_errormsg` for computed
columns. SQL identifiers are never built from unchecked user text: names must match
:data:`NAME_PATTERN` and are additionally prefixed, so no name can reach SQL as code.
"""

from __future__ import annotations

import keyword
import re

import sqlalchemy as sa

from mediatable.errors import InvalidName

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
RESERVED_COLUMN_NAMES = frozenset({"rowid", "errortype", "errormsg", "localpath", "fileurl"})
"""Names of column properties. (Names of `Table` methods are refused by the table handles.)"""

metadata = sa.MetaData()

dirs = sa.Table(
    "mt_dirs",
    metadata,
    sa.Column("path", sa.String(512), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

tables = sa.Table(
    "mt_tables",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("path", sa.String(512), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),  # 'table' | 'view'
    sa.Column("base_id", sa.Integer, nullable=True),  # views: the table they iterate over
    sa.Column("iterator", sa.JSON, nullable=True),  # views: serialized iterator call
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

columns = sa.Table(
    "mt_columns",
    metadata,
    sa.Column("table_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("col_type", sa.JSON, nullable=False),
    sa.Column("computed", sa.JSON, nullable=True),  # serialized expression for computed columns
    sa.Column("on_error", sa.String(8), nullable=True),
    sa.Column("destination", sa.Text, nullable=True),
)

schema_versions = sa.Table(
    "mt_schema_versions",
    metadata,
    sa.Column("table_id", sa.Integer, primary_key=True),
    # a fresh stamp (above all earlier ones) when the table is created and on every column added or dropped;
    # rows outlive their tables, so a re-created table with a reused id never matches an old handle
    sa.Column("version", sa.Integer, nullable=False),
)


def check_name(name: str, what: str) -> str:
    """Validate one identifier (a column, or one segment of a directory/table path).

    Raises:
        InvalidName: not an identifier, a Python keyword, or reserved.

    Examples:
        >>> check_name("image_2", "column")
        'image_2'
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidName(
            f"invalid {what} name {name!r}: use letters, digits and underscores, starting with a letter "
            "or underscore, at most 63 characters"
        )
    if keyword.iskeyword(name) or name.startswith("_"):
        raise InvalidName(f"invalid {what} name {name!r}: Python keywords and names starting with '_' are reserved")
    if what == "column" and name.lower() in RESERVED_COLUMN_NAMES:
        raise InvalidName(f"invalid column name {name!r}: reserved ({', '.join(sorted(RESERVED_COLUMN_NAMES))})")
    return name


def as_column_name(name: object) -> str:
    """A valid column name for an imported column (a CSV header, a DataFrame column): the name itself
    when valid, else lower case with other characters turned into `_`, and `c_` before a leading
    digit, a keyword or a reserved name.

    Examples:
        >>> as_column_name("Image URL"), as_column_name("2nd-label"), as_column_name("class"), as_column_name("n")
        ('image_url', 'c_2nd_label', 'c_class', 'n')
    """
    try:
        return check_name(str(name), "column")
    except InvalidName:
        pass
    text = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_").lower() or "column"
    if not text[0].isalpha() or keyword.iskeyword(text) or text in RESERVED_COLUMN_NAMES:
        text = "c_" + text
    return text[:63]


def check_path(path: str, what: str) -> str:
    """Validate a dotted catalog path like `dir.sub.table`.

    Examples:
        >>> check_path("cloud_demo.images", "table")
        'cloud_demo.images'
    """
    if not isinstance(path, str) or not path:
        raise InvalidName(f"invalid {what} path {path!r}")
    for segment in path.split("."):
        check_name(segment, what)
    return path


def data_table_name(table_id: int) -> str:
    """The SQL table holding a mediatable table's rows."""
    return f"mt_t{table_id}"


def value_column(name: str) -> str:
    """The SQL column holding a mediatable column's values."""
    return f"c_{name}"


def error_columns(name: str) -> tuple[str, str]:
    """The SQL columns holding a computed column's error type and message."""
    return f"c_{name}_errortype", f"c_{name}_errormsg"
