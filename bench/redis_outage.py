"""Recovery after a Redis outage: callbacks keep arriving while Redis is down for 60 s.

A fresh PostgreSQL database, N PENDING payments, gunicorn + one Celery worker (prefork, 2) +
Celery beat against Redis. A sender POSTs one success callback per payment at a steady rate
for the whole run; Redis is stopped at OUTAGE_START and started again 60 s later. Measured:
how many callbacks were answered 200 and stored while Redis was down (all of them should be),
their answer latency, and the time from Redis coming back until every stored callback is final
and every payment SUCCESS, compared with the re-drive interval (the goal: within one).

    .venv/bin/python -m bench.redis_outage [--rate 100] [--outage 60] [--redrive 30]

Stops and starts the local Redis (127.0.0.1:6379): run it on a machine whose Redis you own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
DB = "bench_outage"
PORT = 8310


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="callbacks per second")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds Redis is down")
    parser.add_argument("--before", type=float, default=10.0, help="seconds before the outage")
    parser.add_argument("--after", type=float, default=20.0, help="seconds of traffic after it")
    parser.add_argument(
        "--redrive", type=float, default=30.0, help="CALLBACK_REDRIVE_INTERVAL and _AFTER"
    )
    options = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "bench-secret-key-" + "x" * 40,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
        "DB_CONN_MAX_AGE": "60",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/11",
        "CACHE_URL": "redis://127.0.0.1:6379/12",
        "VAR_DIR": str(var),
        "LOG_LEVEL": "warning",
        "CALLBACK_REDRIVE_INTERVAL": str(options.redrive),
        "CALLBACK_REDRIVE_AFTER": str(options.redrive),
        "API_RATE_LIMIT": "1000000/min",
        "GUNICORN_ACCESSLOG": "",
    }
    os.environ.update(env)
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB], check=True)
    sh("createdb", "-h", "127.0.0.1", "-U", "postgres", DB)
    sh(PY, "manage.py", "migrate", "--no-input", "-v0")

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpesa_project.settings")
    import django

    django.setup()
    from callbacks.models import CallbackState, InboundCallback
    from core.models import hash_secret
    from payments.models import EventKind, Payment, PaymentEvent, PaymentStatus
    from testsupport import REDIS_START, redis_up, stk_success_body, stop_redis

    total_seconds = options.before + options.outage + options.after
    count = int(options.rate * total_seconds)
    tokens, payments, events = [], [], []
    for n in range(count):
        token = uuid.uuid4().hex + uuid.uuid4().hex
        tokens.append(token)
        payments.append(
            Payment(
                amount=10,
                phone_number="254712345678",
                account_reference=f"O{n}",
                description="outage",
                transaction_type="CustomerPayBillOnline",
                status=PaymentStatus.PENDING,
                checkout_request_id=f"ws_CO_OUTAGE_{n:08d}",
                callback_token_hash=hash_secret(token),
            )
        )
    Payment.objects.bulk_create(payments, batch_size=2000)
    for payment in payments:
        events.append(
            PaymentEvent(
                payment=payment, kind=EventKind.CREATED, to_status="INITIATED", source="api"
            )
        )
        events.append(
            PaymentEvent(
                payment=payment,
                kind=EventKind.TRANSITION,
                from_status="INITIATED",
                to_status="PENDING",
                source="daraja",
            )
        )
    PaymentEvent.objects.bulk_create(events, batch_size=4000)
    bodies = [
        stk_success_body(
            checkout_request_id=f"ws_CO_OUTAGE_{n:08d}", amount=10, receipt=f"UO{n:08d}"
        )
        for n in range(count)
    ]

    logs = {name: open(var / f"{name}.log", "wb") for name in ("web", "worker", "beat")}  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [
                str(REPO / ".venv/bin/gunicorn"),
                "mpesa_project.wsgi",
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{PORT}",
                "--workers",
                "2",
                "--threads",
                "4",
            ],
            cwd=REPO,
            env=env,
            stdout=logs["web"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                PY,
                "-m",
                "core.supervise",
                "--",
                PY,
                "-m",
                "celery",
                "-A",
                "mpesa_project",
                "worker",
                "-l",
                "WARNING",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=REPO,
            env=env,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                PY,
                "-m",
                "celery",
                "-A",
                "mpesa_project",
                "beat",
                "-l",
                "WARNING",
                f"--schedule={var}/beat",
            ],
            cwd=REPO,
            env=env,
            stdout=logs["beat"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    ]
    results: list[tuple[float, int, float]] = []  # (sent at, status, latency)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if client.get("/health/").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        start = time.monotonic()

        def sender(offset: int, step: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=30) as client:
                for n in range(offset, count, step):
                    due = start + n / options.rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    sent = time.monotonic()
                    try:
                        status = client.post(
                            f"/payments/callback/{tokens[n]}/",
                            content=bodies[n],
                            headers={"Content-Type": "application/json"},
                        ).status_code
                    except httpx.HTTPError:
                        status = 0
                    results.append((sent - start, status, time.monotonic() - sent))

        threads = [threading.Thread(target=sender, args=(i, 4)) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, start + options.before - time.monotonic()))
        stop_redis()
        down_at = time.monotonic() - start
        time.sleep(max(0.0, start + options.before + options.outage - time.monotonic()))
        subprocess.run(REDIS_START, check=True, capture_output=True)
        while not redis_up():
            time.sleep(0.1)
        back = time.monotonic()
        back_at = back - start
        for thread in threads:
            thread.join()
        last_sent = time.monotonic()
        while True:
            waiting = InboundCallback.objects.filter(state=CallbackState.RECEIVED).count()
            accepted = sum(1 for _, status, _ in results if status == 200)
            if waiting == 0 and InboundCallback.objects.count() >= accepted:
                break
            if time.monotonic() - back > 10 * options.redrive + 120:
                raise SystemExit(f"not recovered: {waiting} callbacks still waiting")
            time.sleep(0.2)
        recovered = time.monotonic()
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.wait(timeout=30)
        if not redis_up():
            subprocess.run(REDIS_START, check=False, capture_output=True)

    statuses = [status for _, status, _ in results]
    during = [latency for at, _, latency in results if down_at <= at < back_at]
    outage_statuses = [status for at, status, _ in results if down_at <= at < back_at]
    report = {
        "callbacks": count,
        "rate_per_second": options.rate,
        "outage_seconds": round(back_at - down_at, 1),
        "redrive_interval_seconds": options.redrive,
        "answered_200": statuses.count(200),
        "answers": {str(code): statuses.count(code) for code in sorted(set(statuses))},
        "answered_200_during_outage": outage_statuses.count(200),
        "sent_during_outage": len(outage_statuses),
        "stored": InboundCallback.objects.count(),
        "success_payments": Payment.objects.filter(status=PaymentStatus.SUCCESS).count(),
        "latency_during_outage_ms": {
            "p50": round(statistics.median(during) * 1000, 1),
            "p99": round(sorted(during)[int(len(during) * 0.99) - 1] * 1000, 1),
            "max": round(max(during) * 1000, 1),
        },
        "all_final_after_redis_back_seconds": round(recovered - back, 1),
        "all_final_after_last_callback_seconds": round(recovered - last_sent, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
