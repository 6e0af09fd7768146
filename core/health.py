"""Health for load balancers and orchestrators (django-health-check).

* ``/health/live``: the process answers. No database, cache or broker is touched, so a
  liveness probe never restarts a web process because PostgreSQL is down.
* ``/health/ready``: this instance can do its work: the database, the shared cache, the
  Celery broker, a worker that ran a task recently and a beat that ticked recently. Any of
  them failing answers 500 with what failed (JSON for ``Accept: application/json``).

Heartbeats are rows of :class:`core.models.Heartbeat`. The beat's is written by its scheduler
(:class:`core.beat.HeartbeatScheduler`) as it ticks; a worker's, by the ``core.tasks.heartbeat``
task beat sends every HEARTBEAT_INTERVAL. A dead beat therefore leaves both stale, the beat's
first; a dead worker leaves only the worker's.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import ClassVar

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

BEAT = "beat"
WORKER = "worker"


def heartbeat(name: str) -> None:
    """Record that ``name`` (BEAT or WORKER) is alive now."""
    from .models import Heartbeat

    Heartbeat.objects.update_or_create(name=name, defaults={"at": timezone.now()})


def heartbeat_age(name: str) -> float | None:
    """Seconds since ``name`` last recorded it was alive; None if it never did."""
    from .models import Heartbeat

    at = Heartbeat.objects.filter(name=name).values_list("at", flat=True).first()
    return None if at is None else (timezone.now() - at).total_seconds()


def live(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests (nothing else is checked)."""
    return JsonResponse({"status": "ok"})


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker takes a connection (Redis, RabbitMQ or the embedded one)."""

    timeout = datetime.timedelta(seconds=3)

    def run(self) -> None:
        from celery import current_app

        try:
            with current_app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            raise ServiceUnavailable(f"broker unreachable ({type(exc).__name__})") from None


@dataclasses.dataclass
class _Heartbeat(HealthCheck):
    name: ClassVar[str]
    what: ClassVar[str]

    def max_age(self) -> float:
        raise NotImplementedError

    def run(self) -> None:
        # Runs on an executor thread: its connection is closed after each probe, so a database
        # restart is never reported through a broken connection kept on that thread.
        try:
            age = heartbeat_age(self.name)
        except DatabaseError as exc:
            raise ServiceUnavailable(f"database unreachable ({type(exc).__name__})") from None
        finally:
            connections.close_all()
        limit = self.max_age()
        if age is None:
            raise ServiceUnavailable(f"{self.what} never reported")
        if age > limit:
            raise ServiceUnavailable(f"{self.what} silent for {age:.0f} s (limit {limit:g} s)")


@dataclasses.dataclass
class Beat(_Heartbeat):
    """Celery beat ticked within HEALTH_BEAT_MAX_AGE seconds."""

    name: ClassVar[str] = BEAT
    what: ClassVar[str] = "celery beat"

    def max_age(self) -> float:
        return float(settings.HEALTH_BEAT_MAX_AGE)


@dataclasses.dataclass
class Worker(_Heartbeat):
    """A Celery worker ran beat's heartbeat task within HEALTH_WORKER_MAX_AGE seconds."""

    name: ClassVar[str] = WORKER
    what: ClassVar[str] = "celery worker (heartbeat task)"

    def max_age(self) -> float:
        return float(settings.HEALTH_WORKER_MAX_AGE)


READY_CHECKS = [
    "health_check.checks.Database",
    "health_check.checks.Cache",
    "core.health.Broker",
    "core.health.Worker",
    "core.health.Beat",
]
