"""A statement's own partitions of the line and match tables, named after its id."""

from __future__ import annotations

from django.db import connection

LINE_TABLE = "reconciliation_statementline"
MATCH_TABLE = "reconciliation_linematch"


def partition_names(statement_id: int) -> tuple[str, str]:
    sid = int(statement_id)
    return f"{LINE_TABLE}_p{sid}", f"{MATCH_TABLE}_p{sid}"


def partitions_create_attached(statement_id: int) -> None:
    """Empty, attached partitions for ``statement_id``, for inserts through the ORM (the
    Python engine on PostgreSQL)."""
    lines, matches = partition_names(statement_id)
    with connection.cursor() as cursor:
        for table, parent in ((lines, LINE_TABLE), (matches, MATCH_TABLE)):
            cursor.execute(
                f"CREATE TABLE {table} PARTITION OF {parent} FOR VALUES IN ({int(statement_id)})"
            )
