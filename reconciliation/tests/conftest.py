"""Fixtures for the reconciliation tests."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from core.models import Scope
from core.services import NewApiKey, api_client_create


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def engine(db: Any) -> str:
    """The engine the service picks for the test database."""
    return "postgresql" if is_postgresql() else "python"


@pytest.fixture
def api_key(db: Any) -> NewApiKey:
    """The reconciliation tests' key takes payments and does the books (new keys take payments
    only: the reconciliation scope is granted on purpose)."""
    return api_client_create(name="shop", scopes=[Scope.PAYMENTS, Scope.RECONCILIATION])
