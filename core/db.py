"""Database helpers."""

from django.db import connection


def in_transaction() -> bool:
    """True inside an ``atomic`` block opened by the code (a test case's wrapping transaction,
    which stands in for autocommit, does not count)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)
