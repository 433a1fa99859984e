"""The `mediatable` command.

Subcommands are plain functions registered in :data:`COMMANDS` (name -> (help, add_arguments, run)),
so adding one is one function and one line::

    mediatable cache info                 # entries, bytes, budget of the file cache
    mediatable cache prune --max-size 10GiB
    mediatable cache clear
    mediatable cache warm TABLE --column video [--where "label == 'cat'"]   # download ahead of a job
    mediatable cache verify               # sizes and content hashes; damaged files removed (exit 1)
    mediatable demo [--cloud]             # the cloud-media recipe end to end, on local servers
    mediatable demo --ai                  # "Analyze images in batch": OCR, near-duplicates, similarity search
    mediatable ls [DIR]                   # directories and tables, with row counts
    mediatable show TABLE [-n 10]         # schema and the first rows of a table or view

Every command works on the home folder :func:`mediatable.config.load_settings` finds
(`MEDIATABLE_HOME`, default `~/.mediatable`), or the one given with `--home`.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mediatable import demo
from mediatable.config import Settings, load_settings, parse_size
from mediatable.demo import ai_recipe
from mediatable.errors import Error, InvalidArgument
from mediatable.exec.status import TransferBars
from mediatable.io.cache import FileCache
from mediatable.session import Session
from mediatable.table import tables

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Settings], int]]


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except Error as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _cache_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{info,prune,clear,verify,warm}")
    actions.add_parser("info", help="show entries, bytes and budget")
    prune = actions.add_parser("prune", help="evict least recently used files down to the budget or --max-size")
    prune.add_argument("--max-size", type=_size, default=None, help="target size, e.g. 10GiB (default: budget)")
    actions.add_parser("clear", help="remove every cached file that no running operation holds")
    actions.add_parser("verify", help="check every cached file (size, content hash); remove damaged ones (exit 1)")
    warm = actions.add_parser("warm", help="download a table's media ahead of a job, as much as the budget holds")
    warm.add_argument("table", help="table or view path, e.g. cloud_demo.videos")
    warm.add_argument("--column", action="append", required=True, help="a media column (repeat for more)")
    warm.add_argument(
        "--where",
        default=None,
        help="only rows where this holds: comparisons of stored columns joined by 'and', "
        "e.g. \"label == 'cat' and year >= 2020\"",
    )


_OPERATORS = {"==": operator.eq, "=": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le}
_OPERATORS.update({">": operator.gt, "<": operator.lt})
_COMPARISON = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|>=|<=|=|>|<)\s*(.+?)\s*$")


def parse_where(table: Any, text: str) -> Any:
    """A filter expression from ``column OP value [and ...]`` (values as JSON, or bare words).

    Raises:
        InvalidArgument: a part is not such a comparison.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('pets', {'label': mt.String, 'year': mt.Int})
        Created table 'pets'.
        >>> parse_where(t, "label == 'cat' and year >= 2020")
        ((pets.label == 'cat') & (pets.year >= 2020))
    """
    parts = re.split(r"\s+and\s+", text.strip())
    combined = None
    for part in parts:
        match = _COMPARISON.fullmatch(part)
        if match is None:
            example = '"label == \'cat\'" or "year >= 2020"'
            raise InvalidArgument(f"cannot read the condition {part!r}: use e.g. {example}")
        name, op, raw = match.groups()
        quoted = re.fullmatch(r"'(.*)'", raw)
        if quoted:
            value: Any = quoted.group(1)
        else:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        condition = _OPERATORS[op](table[name], value)
        combined = condition if combined is None else combined & condition
    return combined


def _warm(args: argparse.Namespace, settings: Settings) -> int:
    session = Session(settings, progress_bars=TransferBars(settings))
    try:
        table = tables.get_table(session, args.table)
        where = parse_where(table, args.where) if args.where else None
        print(table.prefetch(*(table[name] for name in args.column), where=where))
    finally:
        session.close()
    return 0


def _cache(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "warm":
        return _warm(args, settings)
    with FileCache(settings) as cache:
        if args.action == "info":
            print(cache.info())
            return 0
        if args.action == "verify":
            verified = cache.verify()
            print(verified)
            return 0 if verified.clean else 1
        pruned = cache.clear() if args.action == "clear" else cache.prune(args.max_size)
        print(pruned)
        print(cache.info())
    return 0


def _ls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=None, help="only what is inside this directory")


def _ls(args: argparse.Namespace, settings: Settings) -> int:
    session = Session(settings)
    try:
        for path in session.catalog.list_dirs(args.dir):
            print(f"{path}/")
        for path in session.catalog.list_tables(args.dir):
            table = tables.get_table(session, path)
            kind = "view" if table._meta.is_view else "table"
            print(f"{path}  ({kind}, {table.count()} rows, columns: {', '.join(table.columns)})")
    finally:
        session.close()
    return 0


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="table or view path, e.g. cloud_demo.images")
    parser.add_argument("-n", "--rows", type=int, default=10, help="how many rows to show (default 10)")


def _show(args: argparse.Namespace, settings: Settings) -> int:
    session = Session(settings)
    try:
        table = tables.get_table(session, args.table)
        table.describe()
        print(f"\n{table.count()} rows; the first {args.rows}:")
        stored = [table[name].fileurl if table[name].col_type.is_media else table[name] for name in table.columns]
        print(table.select(*stored).limit(args.rows).collect())
    finally:
        session.close()
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cloud", action="store_true", help="read public cloud buckets instead of local servers (needs internet)"
    )
    parser.add_argument(
        "--port", type=int, default=demo.servers.HTTP_PORT, help="port of the local web server (default %(default)s)"
    )
    parser.add_argument(
        "--ai",
        action="store_true",
        help="run the 'Analyze images in batch' recipe instead (OCR, near-duplicates, search)",
    )


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.ai:
        ai_recipe.main(settings.home)
        return 0
    demo.main(settings.home, cloud=args.cloud, http_port=args.port)
    return 0


COMMANDS: dict[str, Command] = {
    "cache": ("inspect, trim and warm the local file cache", _cache_arguments, _cache),
    "demo": ("run the cloud-media recipe end to end (offline: local HTTP and S3 servers)", _demo_arguments, _demo),
    "ls": ("list directories and tables", _ls_arguments, _ls),
    "show": ("show a table's schema and first rows", _show_arguments, _show),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every registered command.

    Examples:
        >>> build_parser().parse_args(["cache", "prune", "--max-size", "1GiB"]).max_size
        1073741824
    """
    parser = argparse.ArgumentParser(prog="mediatable", description="Tables of media that stays where it lives.")
    parser.add_argument("--home", default=None, help="home folder (default: $MEDIATABLE_HOME or ~/.mediatable)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `mediatable` command line; returns the exit status.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when mediatable reports an error (printed to stderr), 2 for bad usage.

    Examples:
        >>> import tempfile
        >>> main(["--home", tempfile.mkdtemp(), "cache", "clear"])
        removed 0 files (0 B)
        cache:      /.../file_cache
        entries:    0
        ...
        0
    """
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.home)
        return COMMANDS[args.command][2](args, settings)
    except Error as exc:
        print(f"mediatable: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
