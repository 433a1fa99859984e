"""The catalog's own SQL tables, and the naming rules for everything users name.

User data lives in one SQL table per mediatable table, `mt_t<id>`: a `_rowid` primary key, `_v_min`
(the table version that wrote the row), one SQL column `c<n>` per stored column (`n` is fixed when the
column is added and survives renames), plus `c<n>_et` / `c<n>_em` (error type and message) for
computed columns. Earlier images of changed or deleted rows live in `mt_t<id>_h` with the version
range they were current for (see :mod:`~mediatable.catalog.versions`). SQL identifiers are never built
from user text, so a name's length or spelling cannot collide with or overflow a backend's identifier
limit (63 bytes on PostgreSQL); names are checked against :data:`NAME_PATTERN` for readability.
"""

from __future__ import annotations

import keyword
import re

import sqlalchemy as sa

from mediatable.errors import InvalidArgument, InvalidName

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_PATH_LENGTH = 512
"""Longest catalog path (`dir.sub.table`), the width of the path columns."""
RESERVED_COLUMN_NAMES = frozenset({"rowid", "errortype", "errormsg", "localpath", "fileurl"})
"""Names of column properties. (Names of `Table` methods are refused by the table handles.)"""

metadata = sa.MetaData()

dirs = sa.Table(
    "mt_dirs",
    metadata,
    sa.Column("path", sa.String(MAX_PATH_LENGTH), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

tables = sa.Table(
    "mt_tables",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("path", sa.String(MAX_PATH_LENGTH), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),  # 'table' | 'view' | 'snapshot'
    sa.Column("base_id", sa.Integer, nullable=True),  # views: the table they iterate over; snapshots: the table
    sa.Column("iterator", sa.JSON, nullable=True),  # views: serialized iterator call
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # A table and the views over it form a family sharing one version counter, kept on the family's
    # root (the base table): every change of any member takes the next version, under the root row's lock.
    sa.Column("root_id", sa.Integer, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("schema_version", sa.Integer, nullable=False, server_default="0"),  # bumped by each schema change
    sa.Column("created_version", sa.Integer, nullable=False, server_default="0"),  # snapshots: the version frozen
    sa.Column("primary_key", sa.JSON, nullable=True),
    sa.Column("media_validation", sa.String(8), nullable=False, server_default="on_read"),
    # Ids are never reused (SQLite would reuse the highest after a drop): files named by a dropped
    # table's id are deleted after its drop commits, and must not belong to a newer table by then;
    # a dataset's recipe (and its workers) must not read a table that replaced the one it was made from.
    sqlite_autoincrement=True,
)

columns = sa.Table(
    "mt_columns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("table_id", sa.Integer, nullable=False, index=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("stem", sa.String(32), nullable=True),  # SQL column name; kept across renames
    sa.Column("v_min", sa.Integer, nullable=False, server_default="0"),  # first version with this column
    sa.Column("v_max", sa.Integer, nullable=True),  # first version without it (dropped, renamed); None: current
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


versions = sa.Table(
    "mt_versions",
    metadata,
    sa.Column("root_id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("table_id", sa.Integer, nullable=False),  # the member the change was made on
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("op", sa.String(32), nullable=False),
    sa.Column("summary", sa.Text, nullable=False, server_default=""),
    sa.Column("inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("undo", sa.JSON, nullable=True),  # what revert needs beyond row images and column ranges
)


def check_name(name: str, what: str) -> str:
    """Validate one identifier (a column, or one segment of a directory/table path).

    Raises:
        InvalidName: not an identifier, a Python keyword, or reserved.

    Examples:
        >>> check_name("image_2", "column")
        'image_2'
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
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
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidName(f"invalid {what} path {path[:40]!r}...: {len(path)} characters, at most {MAX_PATH_LENGTH}")
    for segment in path.split("."):
        check_name(segment, what)
    return path


def data_table_name(table_id: int) -> str:
    """The SQL table holding a mediatable table's current rows."""
    return f"mt_t{table_id}"


def history_table_name(table_id: int) -> str:
    """The SQL table holding earlier images of a table's changed and deleted rows."""
    return f"mt_t{table_id}_h"


def column_stem(column_id: int) -> str:
    """The SQL column holding the values of catalog column `column_id` (fixed for the column's life)."""
    return f"c{column_id}"


def error_columns(stem: str) -> tuple[str, str]:
    """The SQL columns holding a computed column's error type and message, from its value column's name."""
    return f"{stem}_et", f"{stem}_em"


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise InvalidArgument unless `value` is one of `choices`."""
    if value not in choices:
        raise InvalidArgument(f"{name} must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
