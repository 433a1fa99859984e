"""Execution: the only place that schedules work.

:mod:`~mediatable.exec.pipeline` evaluates expressions over rows (prefetch -> compute -> values),
:mod:`~mediatable.exec.compute` fills computed columns, :mod:`~mediatable.exec.views` runs a view's
iterator over new base rows, :mod:`~mediatable.exec.query` plans and runs queries (SQL where it can,
the pipeline otherwise), :mod:`~mediatable.exec.rows` reads and writes a table's rows in SQL and
:mod:`~mediatable.exec.status` reports what an operation did.
"""
