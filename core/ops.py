"""Operational checks that every app contributes to: the invariants of the books, and the
``/metrics`` view (its metrics: core.metrics).

``core`` sits below every app, so it cannot ask the apps for their numbers; each app registers
its own check here (and its gauges in core.metrics) when it starts (its ``AppConfig.ready``),
and the command and the view read whatever was registered. No app imports one above it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


# An app's invariant check: every violation it finds; ``settled`` as in find_violations.
InvariantCheck = Callable[[bool], list[Violation]]

_checks: dict[str, InvariantCheck] = {}


def register_invariant_check(name: str, check: InvariantCheck) -> None:
    """Add an app's check (registering the same name again replaces it)."""
    _checks[name] = check


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
    """`/metrics`, in the Prometheus text format (core.metrics): what every process of this
    host counted, and gauges read by bounded queries. Served with ``Authorization: Bearer
    <METRICS_TOKEN>``; without METRICS_TOKEN only in debug."""
    from .metrics import CONTENT_TYPE, exposition

    if not _authorised(request):
        raise Http404
    return HttpResponse(exposition(), content_type=CONTENT_TYPE)
