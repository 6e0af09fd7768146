"""Outbound webhooks: deliveries per second, time from commit to delivery, and the healthy
endpoints' latency while 10 % of endpoints time out.

Each run: a fresh PostgreSQL database (migrated), Redis DB 10 as broker and cache, one real
``celery -A mpesa_project worker`` (prefork, concurrency 2) and beat, and a receiver in its own
process (``bench.webhook_receiver``, HTTP/1.1 keep-alive, 200 at once; ``/slow/`` answers
after 10.5 s). Phases:

  floor       a bare loop of POSTs to the same receiver from WEBHOOK_CONCURRENCY threads
              (httpx, keep-alive), sharing one client, then each with its own (as the
              pump's senders): what the receiver and the machine can take
  throughput  2,000 events for 10 endpoints (20,000 deliveries) written with no worker
              running, then the worker started: deliveries per second from the first attempt
              to the last delivery
  latency     200 events per second for 20 s, each in its own committed transaction (the
              outbox write and its after-commit wake-up, as a payment change does), one
              endpoint: time from the commit to the receiver's arrival, p50/p99
  slow        the same rate over 10 merchants' endpoints, one of which times out after 10 s
              (WEBHOOK_TIMEOUT=10): the other nine endpoints' p50/p99

    .venv/bin/python -m bench.webhooks            # 3 runs, medians; --help
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import (
    BROKER_DB,
    VENV_BIN,
    django_close_connections,
    django_setup,
    handle_termination,
    log,
    machine_facts,
    make_env,
    median,
    migrate,
    pg_drop_database,
    pg_recreate_database,
    print_facts,
    redis_flush,
    start_process,
    stop_process,
    wait_until,
    write_json,
)

DBNAME = "bench_webhooks"
CONCURRENCY = 32
PAYMENT_DATA: dict[str, Any] = {
    "id": "",
    "status": "SUCCESS",
    "amount": "1500.00",
    "currency": "KES",
    "phone_number": "254712345678",
    "account_reference": "INV-2026-0042",
    "description": "Order 42",
    "transaction_type": "CustomerPayBillOnline",
    "merchant_request_id": "f0ab-49c2-ab1d-1f9d840b305512458",
    "checkout_request_id": "ws_CO_05122026100000123712345678",
    "mpesa_receipt_number": "UL5ABCDEFG",
    "result_code": "0",
    "result_desc": "The service request is processed successfully.",
    "transaction_date": "2026-12-05T10:00:10+03:00",
    "paid_amount": "1500.00",
    "needs_review": False,
    "created_at": "2026-12-05T10:00:00.123456+03:00",
    "updated_at": "2026-12-05T10:00:11.654321+03:00",
    "completed_at": "2026-12-05T10:00:11.654321+03:00",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Receiver:
    def __init__(self, env: Any, out: Path) -> None:
        self.port = free_port()
        self.out = out
        self.process = start_process(
            [
                sys.executable,
                "-m",
                "bench.webhook_receiver",
                "--port",
                str(self.port),
                "--out",
                str(out),
            ],
            env=env.as_dict(),
            log_path=out.with_suffix(".log"),
        )
        wait_until(self._up, timeout=30)

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1):
                return True
        except OSError:
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def arrivals(self) -> list[tuple[str, str, float]]:
        stop_process(self.process)
        rows = []
        for line in self.out.read_text().splitlines():
            event_id, path, at = line.split(" ")
            rows.append((event_id, path, float(at)))
        return rows


def floor(receiver: Receiver, count: int = 6000, *, per_thread: bool = False) -> float:
    """POSTs per second from CONCURRENCY threads: sharing one client (``per_thread`` False),
    or each with its own, as the pump's senders are."""
    import httpx

    body = b'{"type": "bench"}' + b" " * 600
    local = threading.local()
    clients: list[httpx.Client] = []
    shared = httpx.Client(limits=httpx.Limits(max_connections=CONCURRENCY))
    clients.append(shared)

    def client() -> httpx.Client:
        if not per_thread:
            return shared
        if not hasattr(local, "client"):
            local.client = httpx.Client()
            clients.append(local.client)
        return local.client

    def post(n: int) -> int:
        return client().post(receiver.url("/floor/"), content=body).status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        statuses = list(pool.map(post, range(count)))
    elapsed = time.perf_counter() - start
    for made in clients:
        made.close()
    assert set(statuses) == {200}
    return count / elapsed


def merchants(count: int) -> list[Any]:
    from core.services import api_client_create

    return [api_client_create(name=f"bench-{n}", scopes=["webhooks"]).client for n in range(count)]


def emit(client_id: Any, count: int = 1) -> list[str]:
    from django.db import transaction

    from events.services import NewEvent, events_emit

    with transaction.atomic():
        made = events_emit(
            [
                NewEvent("payment.succeeded", {**PAYMENT_DATA, "id": str(uuid.uuid4())}, client_id)
                for _ in range(count)
            ]
        )
    return [event.id for event in made]


def emit_at_rate(
    client_ids: list[Any], rate: float, seconds: float
) -> dict[str, tuple[float, Any]]:
    """One event per transaction, ``rate`` a second, round-robin over the merchants; each
    event's commit time."""
    committed: dict[str, tuple[float, Any]] = {}
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = start + n * interval
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        client_id = client_ids[n % len(client_ids)]
        (event_id,) = emit(client_id)
        committed[event_id] = (time.time(), client_id)
        n += 1
    log(f"  emitted {n} events in {elapsed:.1f} s ({n / elapsed:.0f}/s)")
    return committed


def all_delivered(expected: int) -> bool:
    from webhooks.models import Delivery, DeliveryState

    return Delivery.objects.filter(state=DeliveryState.DELIVERED).count() >= expected


def start_workers(env: Any, var: Path, extra: dict[str, str]) -> list[Any]:
    worker_env = {**env.as_dict(), **extra}
    worker = start_process(
        [
            str(VENV_BIN / "celery"),
            "-A",
            "mpesa_project",
            "worker",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=worker_env,
        log_path=var / "worker.log",
    )
    beat = start_process(
        [
            str(VENV_BIN / "celery"),
            "-A",
            "mpesa_project",
            "beat",
            "--loglevel=WARNING",
            f"--schedule={var / 'beat-schedule'}",
        ],
        env=worker_env,
        log_path=var / "beat.log",
    )
    return [worker, beat]


PHASES = ("floor", "throughput", "latency", "slow")


def one_run(number: int, phases: tuple[str, ...] = PHASES) -> dict[str, Any]:
    pg_recreate_database(DBNAME)
    redis_flush(BROKER_DB)
    settings_env = {
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "WEBHOOK_CONCURRENCY": str(CONCURRENCY),
        "WEBHOOK_TIMEOUT": "10",
    }
    env = make_env(DBNAME, **settings_env)
    migrate(env)
    django_setup(env)

    var = env.var_dir
    result: dict[str, Any] = {"run": number}

    # Floor (always: the throughput is read against it).
    receiver = Receiver(env, var / "floor.txt")
    result["floor_per_s"] = floor(receiver)
    result["floor_per_thread_per_s"] = floor(receiver, per_thread=True)
    receiver.arrivals()
    log(
        f"run {number}: floor {result['floor_per_s']:.0f} POST/s (one client), "
        f"{result['floor_per_thread_per_s']:.0f} POST/s (a client per thread)"
    )

    if "throughput" in phases:
        throughput(env, var, settings_env, result)
    latencies(env, var, settings_env, result, phases)
    django_close_connections()
    return result


def throughput(env: Any, var: Path, settings_env: dict[str, str], result: dict[str, Any]) -> None:
    """2,000 events x 10 endpoints, written before the worker starts."""
    from webhooks.models import Attempt, Delivery, Endpoint
    from webhooks.services import endpoint_create

    number = result["run"]
    receiver = Receiver(env, var / "throughput.txt")
    (merchant,) = merchants(1)
    for n in range(10):
        endpoint_create(client=merchant, url=receiver.url(f"/ok/{n}/"))
    for _ in range(20):
        emit(merchant.pk, 100)
    processes = start_workers(env, var, settings_env)
    try:
        wait_until(lambda: all_delivered(20_000), timeout=600, interval=0.5)
    finally:
        for process in processes:
            stop_process(process)
    first = Attempt.objects.order_by("started_at").values_list("started_at", flat=True).first()
    last = Delivery.objects.order_by("-delivered_at").values_list("delivered_at", flat=True).first()
    assert first is not None and last is not None
    result["throughput_per_s"] = 20_000 / (last - first).total_seconds()
    arrivals = receiver.arrivals()
    result["throughput_duplicates"] = len(arrivals) - len({(i, p) for i, p, _ in arrivals})
    log(f"run {number}: throughput {result['throughput_per_s']:.0f} deliveries/s")
    Delivery.objects.all().delete()
    Endpoint.objects.all().delete()


def latencies(
    env: Any,
    var: Path,
    settings_env: dict[str, str],
    result: dict[str, Any],
    phases: tuple[str, ...],
) -> None:
    """Latency at 200 events/s, one endpoint; then the same with one slow endpoint in ten."""
    from webhooks.models import Delivery, Endpoint
    from webhooks.services import endpoint_create

    number = result["run"]
    for phase, slow in (("latency", False), ("slow", True)):
        if phase not in phases:
            continue
        receiver = Receiver(env, var / f"{phase}.txt")
        owners = merchants(10) if slow else merchants(1)
        healthy = set()
        for n, owner in enumerate(owners):
            path = "/slow/" if (slow and n == 0) else f"/ok/{phase}/{n}/"
            endpoint_create(client=owner, url=receiver.url(path))
            if path != "/slow/":
                healthy.add(owner.pk)
        processes = start_workers(env, var, settings_env)
        try:
            time.sleep(3)  # the worker is up and has pumped once
            committed = emit_at_rate([owner.pk for owner in owners], 200, 20)
            wanted = sum(1 for _, owner in committed.values() if owner in healthy)
            done = Delivery.objects.filter(state="delivered", endpoint__client_id__in=healthy)
            wait_until(lambda: done.count() >= wanted, timeout=300, interval=0.5)  # noqa: B023
        finally:
            for process in processes:
                stop_process(process)
        latencies = []
        seen = set()
        for event_id, path, at in receiver.arrivals():
            if path.startswith("/slow/") or event_id not in committed or event_id in seen:
                continue
            seen.add(event_id)
            latencies.append(at - committed[event_id][0])
        result[f"{phase}_p50_ms"] = percentile(latencies, 0.50) * 1000
        result[f"{phase}_p99_ms"] = percentile(latencies, 0.99) * 1000
        result[f"{phase}_max_ms"] = max(latencies) * 1000
        result[f"{phase}_delivered"] = len(latencies)
        log(
            f"run {number}: {phase} p50 {result[f'{phase}_p50_ms']:.0f} ms, "
            f"p99 {result[f'{phase}_p99_ms']:.0f} ms ({len(latencies)} deliveries)"
        )
        Delivery.objects.all().delete()
        Endpoint.objects.all().delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="comma-separated phases to run besides the floor (default: all)",
    )
    args = parser.parse_args()
    phases = tuple(args.phases.split(","))
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}; known: {', '.join(PHASES)}")
    handle_termination()
    facts = machine_facts()
    print_facts(facts)
    runs = [one_run(n + 1, phases) for n in range(args.runs)]
    pg_drop_database(DBNAME)
    keys = [key for key in runs[0] if key != "run"]
    summary = {key: median([run[key] for run in runs]) for key in keys}
    print("\nmedians of", len(runs), "runs:")
    for key in keys:
        values = ", ".join(f"{run[key]:.0f}" for run in runs)
        print(f"  {key:24} {summary[key]:10.1f}   ({values})")
    write_json(args.json, {"facts": facts, "runs": runs, "medians": summary})


if __name__ == "__main__":
    main()
