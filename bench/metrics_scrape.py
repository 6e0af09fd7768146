"""What a Prometheus scrape of ``/metrics`` costs with millions of payments.

Runs on a database seeded by ``python -m bench.payments_scale --seed-only --db NAME`` (10,000,000
payments by default; the seed is kept), migrated here to this tree. It flags 1,000 payments for
review and stores 5,000 unprocessed callbacks (a backlog), then scrapes ``/metrics`` through
Django's test client in this process: 5 scrapes to warm up, then ``--runs`` measured.

Baseline, in the same run and on the same rows: the queries the previous ``/metrics`` made at
every scrape (payments by status, payments flagged, callbacks by state, flagged callbacks:
whole-table counts), timed one after the other on the same connection; and a bare ``SELECT 1``.

    .venv/bin/python -m bench.payments_scale --seed-only --db bench_metrics
    .venv/bin/python -m bench.metrics_scrape --db bench_metrics [--runs 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import REPO_ROOT, log, machine_facts, make_env, print_facts, write_json

OLD_SCRAPE = (
    "SELECT status, COUNT(id) FROM payments_payment GROUP BY status",
    "SELECT COUNT(*) FROM payments_payment WHERE needs_review",
    "SELECT state, COUNT(id) FROM callbacks_inboundcallback GROUP BY state",
    "SELECT COUNT(*) FROM callbacks_inboundcallback WHERE source_flagged",
)


def _ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="bench_metrics")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
    env = make_env(args.db, PROMETHEUS_MULTIPROC_DIR=metrics_dir, METRICS_TOKEN="bench")
    log(f"migrating {args.db} to this tree")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO_ROOT,
        env=env.as_dict(),
        check=True,
    )
    migrate_s = round(time.perf_counter() - started, 1)
    from .common import django_setup

    django_setup(env)
    from django.db import connection
    from django.test import Client

    from callbacks.models import InboundCallback
    from payments.models import Payment

    payments = Payment.objects.count()
    log(f"{payments:,} payments; flagging 1,000 for review, storing 5,000 waiting callbacks")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_payment SET needs_review = true WHERE id IN "
            "(SELECT id FROM payments_payment ORDER BY created_at LIMIT 1000)"
        )
        cursor.execute("ANALYZE payments_payment")
    InboundCallback.objects.bulk_create(
        InboundCallback(body=b"{}", dedupe_key=f"bench-{n}", token_hash="") for n in range(5000)
    )

    client = Client()
    headers = {"HTTP_AUTHORIZATION": "Bearer bench", "secure": True}
    # A request first, so that the HTTP histogram has samples as in production.
    client.get("/health/live", secure=True)
    for _ in range(5):
        response = client.get("/metrics", **headers)
        assert response.status_code == 200, response.status_code
    text = response.content.decode()
    if "mpesa_payments_needs_review" not in text or "mpesa_inbox_backlog" not in text:
        raise SystemExit("the scrape lacks the gauges it must read")
    gauges = [line for line in text.splitlines() if line.startswith(("mpesa_inbox", "mpesa_pay"))]
    log("gauges read: " + "; ".join(gauges))
    scrapes = []
    for _ in range(args.runs):
        started = time.perf_counter()
        client.get("/metrics", **headers)
        scrapes.append(time.perf_counter() - started)

    old, bare = [], []
    with connection.cursor() as cursor:
        for _ in range(args.baseline_runs):
            started = time.perf_counter()
            for sql in OLD_SCRAPE:
                cursor.execute(sql)
                cursor.fetchall()
            old.append(time.perf_counter() - started)
        for _ in range(args.runs):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            bare.append(time.perf_counter() - started)

    facts = machine_facts()
    print_facts(facts)
    report: dict[str, Any] = {
        "facts": facts,
        "payments": payments,
        "migrate_s": migrate_s,
        "scrape": _ms(scrapes),
        "old_scrape_queries": _ms(old),
        "select_1": _ms(bare),
        "scrape_bytes": len(text),
        "metrics_files": len(os.listdir(metrics_dir)),
    }
    print(f"payments: {payments:,}; migrated to this tree in {migrate_s} s")
    print("| what | median | p90 | max |")
    print("|---|---|---|---|")
    for name, key in (
        (f"/metrics scrape ({args.runs} runs)", "scrape"),
        (f"the previous scrape's 4 queries ({args.baseline_runs} runs)", "old_scrape_queries"),
        ("bare SELECT 1", "select_1"),
    ):
        row = report[key]
        print(f"| {name} | {row['median_ms']} ms | {row['p90_ms']} ms | {row['max_ms']} ms |")
    print(f"goal: scrape under 50 ms: {'met' if report['scrape']['median_ms'] < 50 else 'NOT met'}")
    write_json(args.json, report)


if __name__ == "__main__":
    main()
