"""Fixtures for the reconciliation tests."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def engine(db: Any) -> str:
    """The engine the service picks for the test database."""
    return "postgresql" if is_postgresql() else "python"
