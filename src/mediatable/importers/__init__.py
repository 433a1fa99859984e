"""Importers: rows from lists, iterables, DataFrames, Arrow tables, CSV and Parquet files, and listings.

:class:`~mediatable.importers.rows.RowSource` reads any of them in bounded batches and infers the
column types of `create_table(path, source=...)`; :class:`~mediatable.importers.listing.ObjectListing`
streams the objects of a bucket or folder as rows of `url, size, etag, last_modified`.
"""

from mediatable.importers.listing import FIELDS, ObjectListing
from mediatable.importers.rows import BATCH_SIZE, RowSource, none_if_missing

__all__ = ["BATCH_SIZE", "FIELDS", "ObjectListing", "RowSource", "none_if_missing"]
