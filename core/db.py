"""Database helpers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db import connection, models


def in_transaction() -> bool:
    """True inside an ``atomic`` block opened by the code (a test case's wrapping transaction,
    which stands in for autocommit, does not count)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def update_rows(
    model: type[models.Model],
    *,
    set_fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    match_fields: Sequence[str] = (),
) -> int:
    """Give each row its own values: ``rows`` are ``(pk, *match values, *set values)``.

    A row is changed only where its primary key and the current value of every field in
    ``match_fields`` equal the row's (a conditional update, as ``filter(...).update()``).
    PostgreSQL gets one ``UPDATE ... FROM (VALUES ...)`` statement for all rows; other
    databases one statement per row. Returns the number of rows changed. Django's
    ``bulk_update`` builds a ``CASE`` per field and row, which costs more than the update itself
    at a few hundred rows, and cannot be made conditional.
    """
    if not rows:
        return 0
    meta = model._meta
    fields: list[Any] = [meta.pk, *(meta.get_field(name) for name in (*match_fields, *set_fields))]
    if not all(isinstance(field, models.Field) and field.column for field in fields):
        raise ValueError("update_rows sets concrete fields only")
    width = len(fields)
    if any(len(row) != width for row in rows):
        raise ValueError(f"each row needs {width} values: pk, match fields, set fields")
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = [quote(field.column) for field in fields]
    keys = 1 + len(match_fields)  # the pk and the match fields: the WHERE side of a row
    prepared = [
        [
            field.get_db_prep_save(value, connection)
            for field, value in zip(fields, row, strict=True)
        ]
        for row in rows
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            casts = ", ".join(f"%s::{_cast_type(field)}" for field in fields)
            values = ", ".join([f"({casts})"] * len(rows))
            names = [f"v{index}" for index in range(width)]
            assignments = ", ".join(
                f"{column} = v.{name}"
                for column, name in zip(columns[keys:], names[keys:], strict=True)
            )
            conditions = " AND ".join(
                f"t.{column} = v.{name}"
                for column, name in zip(columns[:keys], names[:keys], strict=True)
            )
            # Identifiers come from the model's meta (quoted); every value is a parameter.
            cursor.execute(
                f"UPDATE {table} AS t SET {assignments} "  # noqa: S608
                f"FROM (VALUES {values}) AS v({', '.join(names)}) WHERE {conditions}",
                [value for row in prepared for value in row],
            )
            return cursor.rowcount
        assignments = ", ".join(f"{column} = %s" for column in columns[keys:])
        conditions = " AND ".join(f"{column} = %s" for column in columns[:keys])
        cursor.executemany(
            f"UPDATE {table} SET {assignments} WHERE {conditions}",  # noqa: S608
            [[*row[keys:], *row[:keys]] for row in prepared],
        )
        return cursor.rowcount


def insert_rows(
    model: type[models.Model], *, fields: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """Insert ``rows`` (values in the order of ``fields``) without making model instances:
    neither ``save`` nor signals run, and every NOT NULL column must be among ``fields``.

    PostgreSQL gets one ``INSERT ... SELECT FROM unnest(...)`` with one array parameter per
    column, whatever the number of rows (a multi-row VALUES would meet the 65,535-parameter
    limit at a few thousand rows); other databases one statement per row. At thousands of
    rows, ``bulk_create`` spends more on making and reading the instances than the
    database spends on the insert. Returns the number of rows inserted.
    """
    if not rows:
        return 0
    meta = model._meta
    columns: list[Any] = [meta.get_field(name) for name in fields]
    if not all(isinstance(field, models.Field) and field.column for field in columns):
        raise ValueError("insert_rows sets concrete fields only")
    width = len(columns)
    if any(len(row) != width for row in rows):
        raise ValueError(f"each row needs {width} values, one a field")
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = ", ".join(quote(field.column) for field in columns)
    prepared = [
        [
            field.get_db_prep_save(value, connection)
            for field, value in zip(columns, row, strict=True)
        ]
        for row in rows
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{_cast_type(field)}[]" for field in columns)
            # Identifiers come from the model's meta (quoted); every value is a parameter.
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})",  # noqa: S608
                [list(column) for column in zip(*prepared, strict=True)],
            )
            return cursor.rowcount
        marks = ", ".join(["%s"] * width)
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
            prepared,
        )
        return len(prepared)


def _cast_type(field: Any) -> str:
    """The type a VALUES column is cast to: the column's, but ``varchar`` without its length,
    because an explicit cast to ``varchar(n)`` truncates where an assignment raises an error."""
    return re.sub(r"^varchar\(\d+\)$", "varchar", field.db_type(connection))
