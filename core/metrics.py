"""Prometheus metrics (prometheus_client), in its multiprocess mode: every gunicorn worker,
Celery worker and pool process of a host writes its counters and histograms to files in
PROMETHEUS_MULTIPROC_DIR (the settings set it, default ``VAR_DIR/metrics``), and ``/metrics``
adds them up. What is counted where it happens:

* ``mpesa_http_request_duration_seconds{route,method,status}``: every request, by its URL
  pattern (never the URL itself, which may carry a token);
* ``mpesa_callbacks_received_total{route,outcome}``: Daraja's requests (STK callbacks, C2B
  validation and confirmation) stored, refused, journaled or lost;
* ``mpesa_callback_processing_delay_seconds{kind,state}``: from receipt to a final state;
* ``mpesa_daraja_request_duration_seconds{endpoint,outcome}``: each call to Daraja, by path
  and HTTP status (or ``timeout``, ``unreachable``, ``error``);
* ``mpesa_daraja_errors_total{endpoint,error_code}``: Daraja's error answers by its code;
* ``mpesa_payment_outcomes_total{channel,status,result_code}``: payments reaching SUCCESS or
  FAILED, with M-Pesa's result code;
* ``mpesa_webhook_delivery_lag_seconds``: from an event to its successful delivery.

Gauges that describe the database (inbox backlog, the oldest waiting callback, heartbeat
ages, payments flagged for review) are read at scrape time by bounded, indexed queries
(:func:`register_gauges`): a scrape never counts a whole table. With the database down, a
scrape still answers with everything counted, without those gauges.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

# prometheus_client picks its storage when first imported: the folder must be known first.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.PROMETHEUS_MULTIPROC_DIR))

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from .degraded import degraded, degraded_counts

CONTENT_TYPE = CONTENT_TYPE_LATEST

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)

HTTP_REQUESTS = Histogram(
    "mpesa_http_request_duration_seconds",
    "HTTP requests served, by URL pattern, method and status code.",
    ["route", "method", "status"],
    buckets=_FAST,
)
CALLBACKS_RECEIVED = Counter(
    "mpesa_callbacks_received",
    "Daraja's requests received (STK callbacks, C2B validation and confirmation), by route "
    "and what became of them: stored, refused, journaled (database down), lost.",
    ["route", "outcome"],
)
CALLBACK_PROCESSING_DELAY = Histogram(
    "mpesa_callback_processing_delay_seconds",
    "Time from a callback's receipt to its final state.",
    ["kind", "state"],
    buckets=_SLOW,
)
DARAJA_REQUESTS = Histogram(
    "mpesa_daraja_request_duration_seconds",
    "Calls to Daraja, by path and outcome (HTTP status, timeout, unreachable, error).",
    ["endpoint", "outcome"],
    buckets=_FAST,
)
DARAJA_ERRORS = Counter(
    "mpesa_daraja_errors",
    "Daraja's error answers, by path and Daraja's errorCode (none: an error without Daraja's "
    "envelope). STK Query's 500.001.1001 means the payment is still being processed.",
    ["endpoint", "error_code"],
)
PAYMENT_OUTCOMES = Counter(
    "mpesa_payment_outcomes",
    "Payments reaching SUCCESS or FAILED, by channel and M-Pesa's result code.",
    ["channel", "status", "result_code"],
)
WEBHOOK_LAG = Histogram(
    "mpesa_webhook_delivery_lag_seconds",
    "Time from an event to its successful delivery to an endpoint.",
    buckets=_SLOW,
)


def count(metric: Counter, /, **labels: str) -> None:
    """Add to a counter; a metric that cannot be written (its folder gone, a full disk) is
    logged and counted as degraded, never an error for the payment that was counted."""
    try:
        (metric.labels(**labels) if labels else metric).inc()
    except Exception as exc:
        degraded("metrics", exc, "metric not recorded")


def observe(metric: Histogram, value: float, /, **labels: str) -> None:
    """Add an observation to a histogram (as :func:`count`, never an error)."""
    try:
        (metric.labels(**labels) if labels else metric).observe(value)
    except Exception as exc:
        degraded("metrics", exc, "metric not recorded")


# A label made of outside data (a result code) stays within a small set of values.
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def code_label(code: str) -> str:
    return code if _CODE.fullmatch(code or "") else ("none" if not code else "other")


# Gauges an app reads at scrape time: name -> a function yielding metric families.
_gauge_sources: dict[str, Callable[[], Iterable[Any]]] = {}


def register_gauges(name: str, source: Callable[[], Iterable[Any]]) -> None:
    """An app's scrape-time gauges (each query bounded and indexed)."""
    _gauge_sources[name] = source


class _ScrapeGauges(Collector):
    def collect(self) -> Iterable[Any]:
        # The core's last: its degraded counter then includes this scrape's own failures.
        for source in (*_gauge_sources.values(), _core_gauges):
            try:
                families = list(source())
            except Exception as exc:  # the database is down: the counters still answer
                degraded("metrics", exc, "scrape-time gauges not read")
                continue
            yield from families


def _core_gauges() -> Iterable[Any]:
    from .health import BEAT, WORKER, heartbeat_age

    ages = GaugeMetricFamily(
        "mpesa_heartbeat_age_seconds",
        "Seconds since beat ticked, and since a worker ran beat's heartbeat task (-1: never).",
        labels=["process"],
    )
    for name in (BEAT, WORKER):
        age = heartbeat_age(name)
        ages.add_metric([name], -1.0 if age is None else age)
    yield ages
    went_on = CounterMetricFamily(
        "mpesa_degraded",
        "Requests that went on without an unreachable shared service (throttle: failed open; "
        "daraja_token: fetched by the process; metrics: not recorded), counted by the process "
        "that answered this scrape.",
        labels=["what"],
    )
    for what, number in sorted(degraded_counts().items()):
        went_on.add_metric([what], number)
    yield went_on


def bounded_count(queryset: Any, limit: int = 10_000) -> int:
    """How many rows ``queryset`` has, counting at most ``limit + 1`` (which means "more"):
    ``SELECT COUNT(*) FROM (… LIMIT n)``, so a huge backlog never turns into a long scan."""
    return int(queryset.order_by()[: limit + 1].count())


def waiting_gauges(
    *, queryset: Any, since: str, count: tuple[str, str], age: tuple[str, str]
) -> Iterable[GaugeMetricFamily]:
    """Two gauges of a queue: how many rows wait (bounded_count) and how long the oldest has
    waited since its ``since`` field (0: none), read through the field's index. ``count`` and
    ``age``: each gauge's name and help."""
    from django.utils import timezone

    waiting = GaugeMetricFamily(*count)
    waiting.add_metric([], bounded_count(queryset))
    yield waiting
    oldest = queryset.order_by(since).values_list(since, flat=True).first()
    late = GaugeMetricFamily(*age)
    late.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
    yield late


def exposition() -> bytes:
    """The text a scrape gets: every process's counters and histograms on this host (or this
    process's alone, without a multiprocess folder), then the scrape-time gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in list(REGISTRY._collector_to_names):
            registry.register(collector)
    registry.register(_ScrapeGauges())
    return generate_latest(registry)
