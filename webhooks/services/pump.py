"""The delivery pump: fan new events out, claim due deliveries, send them concurrently, and
record every attempt.

A claim moves a delivery's ``next_attempt_at`` a lease ahead (SKIP LOCKED, so pumps in
several workers never take the same one); the result is recorded when its attempt ends. A
pump that dies mid-flight leaves its deliveries to be claimed again when the lease ends:
every event is delivered at least once (receivers dedupe by ``webhook-id``).

Requests run in a thread pool per worker process, at most WEBHOOK_ENDPOINT_CONCURRENCY at a
time per endpoint, so a slow or dead endpoint ties up only its own share while the others'
deliveries keep flowing; the pump keeps claiming while requests are in flight, for up to
WEBHOOK_PUMP_SECONDS, then returns without waiting for them: the results of a process's
requests are recorded by whichever pump runs next in it.

Retries: after a failed attempt the delivery is due again after the next delay of
:data:`RETRY_DELAYS` (with up to 10 % jitter), about three days in all; then it is FAILED.
An endpoint whose every attempt has failed for WEBHOOK_DISABLE_AFTER_HOURS is disabled.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.db import insert_rows, update_rows
from core.logging import ctx
from core.metrics import WEBHOOK_LAG, observe
from events.models import Event

from ..models import Attempt, Delivery, DeliveryState, Endpoint
from .endpoints import endpoint_disable
from .fanout import webhooks_fanout
from .secrets import signing_secrets
from .sending import AttemptResult, attempt, event_body
from .targets import http_client

logger = logging.getLogger(__name__)

# The wait before each retry; the first attempt is at once. 11 retries, ~3.2 days in all.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=12),
    timedelta(hours=24),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# Kept-alive connections per sending thread (it sends to one endpoint at a time; a few
# spare keep the recent endpoints' connections open).
CONNECTIONS_PER_THREAD = 4
# How long a delivery claimed beyond its endpoint's share waits before it is due again.
RELEASE_PAUSE = timedelta(seconds=1)


def retry_delay(attempts: int) -> timedelta | None:
    """The wait after the ``attempts``-th failed attempt (None: no more attempts)."""
    if attempts >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[attempts - 1]
    return base + base * random.uniform(0, 0.1)


def lease() -> timedelta:
    """How long a claimed delivery is ours: twice its request's timeout (it may wait for a
    slot behind its endpoint's other requests) and a margin; a pump that died is replaced
    by the next claim after it."""
    return timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT + 5)


@dataclass
class PumpResult:
    fanned_out: int = 0
    attempted: int = 0
    delivered: int = 0
    # Stopped by its time, not because nothing was left: another pump should follow.
    more: bool = False


class _Sender:
    """The process's thread pool and HTTP client, kept between pumps, with what is in flight
    (per endpoint) and the results not yet recorded. A pump records every finished result of
    the process, its own and those an earlier pump left in flight when its time was up."""

    def __init__(self) -> None:
        self.made_for: tuple[Any, ...] = ()
        self.pool: ThreadPoolExecutor | None = None
        # One client per sending thread: a client shared by all of them serialises every
        # request's start and end on its connection pool's lock (most of the senders' time
        # under load, profiled). A thread sends one request at a time, so its own pool
        # needs few connections.
        self.local = threading.local()
        self.lock = threading.Lock()
        self.load: Counter[Any] = Counter()
        self.in_flight = 0
        self.finished: queue.SimpleQueue[tuple[_Claimed, AttemptResult]] = queue.SimpleQueue()

    def ready(self) -> None:
        """Make the pool and client (again, when the settings they came from changed)."""
        wanted = (
            settings.WEBHOOK_CONCURRENCY,
            settings.WEBHOOK_ALLOW_PRIVATE_TARGETS,
            settings.WEBHOOK_TIMEOUT,
            settings.WEBHOOK_CONNECT_TIMEOUT,
        )
        with self.lock:
            if self.pool is None or self.made_for != wanted:
                if self.pool is not None:
                    self.pool.shutdown(wait=False)
                size = settings.WEBHOOK_CONCURRENCY
                self.pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="webhook")
                self.local = threading.local()
                self.made_for = wanted

    def _client(self) -> httpx.Client:
        """The calling thread's client (made on its first request)."""
        client: httpx.Client | None = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = http_client(CONNECTIONS_PER_THREAD)
        return client

    def _send(self, **request: Any) -> AttemptResult:
        return attempt(self._client(), **request)

    def busy(self, per_endpoint: int) -> set[Any]:
        with self.lock:
            return {endpoint for endpoint, count in self.load.items() if count >= per_endpoint}

    def room(self, per_endpoint: int, endpoint_id: Any) -> bool:
        with self.lock:
            return self.load[endpoint_id] < per_endpoint

    def submit(self, item: _Claimed, **request: Any) -> None:
        assert self.pool is not None
        with self.lock:
            self.load[item.endpoint_id] += 1
            self.in_flight += 1
        future = self.pool.submit(self._send, **request)
        future.add_done_callback(lambda done: self._done(item, done))

    def _done(self, item: _Claimed, future: Future[AttemptResult]) -> None:
        self.finished.put((item, future.result()))
        with self.lock:
            self.load[item.endpoint_id] -= 1
            if self.load[item.endpoint_id] <= 0:
                del self.load[item.endpoint_id]
            self.in_flight -= 1

    def take_finished(self, limit: int = 500) -> list[tuple[_Claimed, AttemptResult]]:
        taken: list[tuple[_Claimed, AttemptResult]] = []
        while len(taken) < limit:
            try:
                taken.append(self.finished.get_nowait())
            except queue.Empty:
                break
        return taken


_SENDER = _Sender()


@dataclass(frozen=True)
class _Claimed:
    id: int
    endpoint_id: Any
    event_id: str
    attempts: int
    event_at: datetime


def _claim(limit: int, busy: set[Any]) -> list[_Claimed]:
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(
                state=DeliveryState.PENDING, next_attempt_at__lte=now, endpoint__enabled=True
            )
            .exclude(endpoint_id__in=busy)
            .order_by("next_attempt_at", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", "endpoint_id", "event_id", "attempts", "event__created_at")[:limit]
        )
        if rows:
            Delivery.objects.filter(id__in=[row[0] for row in rows]).update(
                next_attempt_at=now + lease()
            )
    return [_Claimed(*row) for row in rows]


def _release(items: list[_Claimed], *, after: timedelta = timedelta(0)) -> None:
    """Give back claimed deliveries that were not started: due again ``after`` from now."""
    if items:
        Delivery.objects.filter(id__in=[item.id for item in items]).update(
            next_attempt_at=timezone.now() + after
        )


def webhooks_pump(*, seconds: float | None = None) -> PumpResult:
    """Fan out, claim and send what is due, and record what finished, until nothing is due
    and nothing is in flight, or for ``seconds`` (WEBHOOK_PUMP_SECONDS). Requests still in
    flight then are not waited for: the next pump in this process records them (and if the
    process dies, their leases end and they are sent again)."""
    deadline = time.monotonic() + (settings.WEBHOOK_PUMP_SECONDS if seconds is None else seconds)
    sender = _SENDER
    sender.ready()
    result = PumpResult()
    per_endpoint = settings.WEBHOOK_ENDPOINT_CONCURRENCY
    room = settings.WEBHOOK_CONCURRENCY
    while True:
        if time.monotonic() >= deadline:
            result.more = True
            break
        result.fanned_out += webhooks_fanout(limit=settings.WEBHOOK_BATCH_SIZE)
        free = room - sender.in_flight
        claimed: list[_Claimed] = []
        if free > 0:
            claimed = _claim(min(free, settings.WEBHOOK_BATCH_SIZE), sender.busy(per_endpoint))
        if claimed:
            # Claimed beyond an endpoint's share: given back for a moment, so that one
            # endpoint's backlog (a slow one's, growing) never takes the others' turn.
            _release(_start(sender, claimed, per_endpoint), after=RELEASE_PAUSE)
        finished = sender.take_finished()
        if finished:
            _record(finished, result)
        elif not claimed and sender.in_flight == 0:
            break  # nothing due, nothing in flight, everything recorded
        else:
            time.sleep(0.01)
    return result


def _start(sender: _Sender, claimed: list[_Claimed], per_endpoint: int) -> list[_Claimed]:
    """Send what the endpoints have room for; returns the rest."""
    ready = [item for item in claimed if sender.room(per_endpoint, item.endpoint_id)]
    if not ready:
        return claimed
    events = {
        event.id: event
        for event in Event.objects.filter(id__in={item.event_id for item in ready}).only(
            "id", "type", "created_at", "api_version", "data"
        )
    }
    endpoints = dict(
        Endpoint.objects.filter(id__in={item.endpoint_id for item in ready}).values_list(
            "id", "url"
        )
    )
    secrets = signing_secrets(list(endpoints))
    bodies: dict[str, bytes] = {}
    left: list[_Claimed] = []
    for item in claimed:
        if not sender.room(per_endpoint, item.endpoint_id):
            left.append(item)
            continue
        body = bodies.get(item.event_id)
        if body is None:
            body = bodies[item.event_id] = event_body(events[item.event_id])
        sender.submit(
            item,
            delivery_id=item.id,
            endpoint_id=item.endpoint_id,
            url=endpoints[item.endpoint_id],
            event_id=item.event_id,
            body=body,
            secrets=secrets.get(item.endpoint_id, []),
        )
    return left


def _record(done: list[tuple[_Claimed, AttemptResult]], result: PumpResult) -> None:
    """Write the attempts and move the deliveries on, in one transaction: one INSERT for the
    attempts, one UPDATE for the deliveries (only those still pending: a late result never
    overwrites a delivery another pump delivered after this one's lease ended)."""
    now = timezone.now()
    rows: list[list[Any]] = []
    healthy: set[Any] = set()
    failing: set[Any] = set()
    lags: list[float] = []
    for item, outcome in done:
        attempts = item.attempts + 1
        if outcome.delivered:
            state, due, delivered_at = DeliveryState.DELIVERED, now, now
            healthy.add(item.endpoint_id)
            lags.append((now - item.event_at).total_seconds())
        else:
            failing.add(item.endpoint_id)
            delay = retry_delay(attempts)
            state = DeliveryState.PENDING if delay is not None else DeliveryState.FAILED
            due = outcome.started_at + delay if delay is not None else now
            delivered_at = None
        rows.append(
            [
                item.id,
                DeliveryState.PENDING,
                state,
                attempts,
                due,
                outcome.status_code,
                outcome.error,
                delivered_at,
            ]
        )
    with transaction.atomic():
        insert_rows(
            Attempt,
            fields=(
                "delivery",
                "started_at",
                "status_code",
                "error",
                "latency_ms",
                "response_body",
            ),
            rows=[
                (
                    outcome.delivery_id,
                    outcome.started_at,
                    outcome.status_code,
                    outcome.error,
                    outcome.latency_ms,
                    outcome.response_body,
                )
                for _, outcome in done
            ],
        )
        update_rows(
            Delivery,
            set_fields=[
                "state",
                "attempts",
                "next_attempt_at",
                "last_status_code",
                "last_error",
                "delivered_at",
            ],
            match_fields=["state"],
            rows=rows,
        )
        if healthy:
            Endpoint.objects.filter(id__in=healthy, failing_since__isnull=False).update(
                failing_since=None
            )
        failing -= healthy
        if failing:
            Endpoint.objects.filter(id__in=failing, failing_since__isnull=True).update(
                failing_since=now
            )
            _disable_long_failing(failing, now)
    for lag in lags:
        observe(WEBHOOK_LAG, lag)
    result.attempted += len(done)
    result.delivered += sum(outcome.delivered for _, outcome in done)
    failed = [outcome for _, outcome in done if not outcome.delivered]
    if failed:
        logger.info(
            "webhook attempts failed",
            extra=ctx(count=len(failed), first_error=failed[0].error[:100]),
        )


def _disable_long_failing(endpoint_ids: set[Any], now: datetime) -> None:
    limit = now - timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS)
    for endpoint in Endpoint.objects.filter(
        id__in=endpoint_ids, enabled=True, failing_since__lte=limit
    ):
        hours = settings.WEBHOOK_DISABLE_AFTER_HOURS
        endpoint_disable(
            endpoint,
            reason=f"every attempt failed for {hours:g} hours (since "
            f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC)",
            by_system=True,
        )
