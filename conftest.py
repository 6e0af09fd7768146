"""Fixtures shared by the whole suite.

Tests marked ``services`` need PostgreSQL and Redis. They are skipped with a visible reason
when the configured database/broker is not PostgreSQL/Redis or not reachable, and fail
instead when REQUIRE_SERVICES=1 (CI sets it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import respx
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from core.services import NewApiKey, api_client_create
from mpesa_project.celery import app as celery_app

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"

# The suite speaks plain HTTP to its own servers; production settings redirect to HTTPS.
settings.SECURE_SSL_REDIRECT = False


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def _services_problem() -> str | None:
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return "DATABASE_URL is not PostgreSQL"
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        return "CELERY_BROKER_URL is not Redis"
    db = settings.DATABASES["default"]
    if not _reachable(f"pg://{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}", 5432):
        return "PostgreSQL is not reachable"
    if not _reachable(settings.CELERY_BROKER_URL, 6379):
        return "Redis is not reachable"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = _services_problem()
    if problem is None:
        return
    for item in items:
        if "services" in item.keywords:
            if REQUIRE_SERVICES:
                item.add_marker(pytest.mark.usefixtures("_fail_missing_services"))
            else:
                item.add_marker(pytest.mark.skip(reason=f"needs PostgreSQL and Redis: {problem}"))


@pytest.fixture
def _fail_missing_services() -> None:
    pytest.fail(f"REQUIRE_SERVICES=1 but {_services_problem()}")


@pytest.fixture(autouse=True)
def _celery_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    """Unit tests run tasks eagerly; tests with real workers (marked worker) publish for real."""
    real = request.node.get_closest_marker("worker") is not None
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = not real
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _wake_every_time(settings: Any) -> None:
    """Each test's callbacks wake the drain at once (the production rate limit would let one
    test's wake-up swallow the next test's)."""
    settings.CALLBACK_WAKEUP_INTERVAL = 0


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    try:
        cache.clear()
    except Exception:  # the DB cache table needs DB access; tests without it don't use it
        pass
    yield


@pytest.fixture
def api_key(db: None) -> NewApiKey:
    return api_client_create(name="shop")


@pytest.fixture
def api(api_key: NewApiKey) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.key}")
    return client


@pytest.fixture
def daraja() -> Iterator[respx.MockRouter]:
    """Daraja mocked at the HTTP layer, with a working OAuth endpoint."""
    with respx.mock(base_url=settings.MPESA_BASE_URL, assert_all_called=False) as router:
        router.get("/oauth/v1/generate").respond(
            200, json={"access_token": "test-token", "expires_in": "3599"}
        )
        yield router
