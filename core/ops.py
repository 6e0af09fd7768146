"""Operational checks that every app contributes to: the invariants of the books and the
``/metrics`` counts.

``core`` sits below every app, so it cannot ask the apps for their numbers; each app registers
its own check and its own metric lines here when it starts (its ``AppConfig.ready``), and the
command and the view read whatever was registered. No app imports one above it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse

from .degraded import degraded_counts


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


# An app's invariant check: every violation it finds; ``settled`` as in find_violations.
InvariantCheck = Callable[[bool], list[Violation]]
# An app's metrics: lines of the Prometheus text format (HELP, TYPE and samples).
MetricsCollector = Callable[[], list[str]]

_checks: dict[str, InvariantCheck] = {}
_collectors: dict[str, MetricsCollector] = {}


def register_invariant_check(name: str, check: InvariantCheck) -> None:
    """Add an app's check (registering the same name again replaces it)."""
    _checks[name] = check


def register_metrics(name: str, collector: MetricsCollector) -> None:
    """Add an app's metric lines to ``/metrics`` (the same name again replaces them)."""
    _collectors[name] = collector


def find_violations(*, settled: bool = False) -> list[Violation]:
    """Every broken invariant, from every app's check, in the order the apps registered.
    ``settled=True`` also counts what may only wait while the system is busy (a callback
    still waiting, a credit resting on a statement line alone): use it once the system is
    known to be quiet and the books are meant to be closed."""
    found: list[Violation] = []
    for check in _checks.values():
        found += check(settled)
    return found


def _authorised(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return bool(settings.DEBUG)
    header = request.headers.get("Authorization", "")
    return hmac.compare_digest(header, f"Bearer {token}")


def metrics(request: HttpRequest) -> HttpResponse:
    """`/metrics`: counts in the Prometheus text format, for alerting (a rising number of
    rejected or flagged callbacks is an attack or a misconfiguration; PENDING piling up is an
    outage). Served with ``Authorization: Bearer <METRICS_TOKEN>``; without METRICS_TOKEN
    only in debug."""
    if not _authorised(request):
        raise Http404
    lines: list[str] = []
    for collector in _collectors.values():
        lines += collector()
    lines += [
        "# HELP mpesa_degraded_total Requests that went on without an unreachable shared "
        "service (throttle: failed open; daraja_token: fetched by the process), counted by "
        "this process.",
        "# TYPE mpesa_degraded_total counter",
        *(f'mpesa_degraded_total{{what="{w}"}} {n}' for w, n in sorted(degraded_counts().items())),
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
