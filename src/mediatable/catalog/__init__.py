"""The catalog: directories, tables, views and columns, persisted with SQLAlchemy (SQLite or PostgreSQL).

It knows nothing of execution or of the user-facing handles: :mod:`~mediatable.catalog.catalog`
changes and loads descriptions, :mod:`~mediatable.catalog.model` holds them in memory,
:mod:`~mediatable.catalog.schema` defines the catalog's own SQL tables and the naming rules,
:mod:`~mediatable.catalog.versions` the table versions (locking, history, revert, old versions),
:mod:`~mediatable.catalog.change` one open change, :mod:`~mediatable.catalog.columns` the column
changes made inside it, :mod:`~mediatable.catalog.paths` moves and :mod:`~mediatable.catalog.engine`
the database engine.
"""
