"""How much one client posting junk to the callback URL grows the database, and what a genuine
callback costs meanwhile.

The attack: N POSTs of random 64 KB bodies (CALLBACK_MAX_BODY_BYTES) to a guessed token, one
after another from one address, through gunicorn. Measured per run, for two configurations
in the same run:

* ``unlimited``: refused callbacks stored whole and without a limit, as the intake did before
  (CALLBACK_REFUSED_BODY_PREFIX_BYTES=65536, CALLBACK_REFUSED_RATE_LIMIT=1000000000/min);
* ``default``: the shipped defaults (a 1 KB prefix and the hash, 30 per minute per source).

For each: the callbacks table's growth (``pg_total_relation_size``, table + TOAST + indexes)
over the flood, the rows stored, the flood's duration, and, after the flood, the median time
to answer M genuine callbacks (each to its own PENDING payment's URL, from the same address)
and whether each was stored whole. A fresh database per configuration and run.

    .venv/bin/python -m bench.callbacks_flood            # 3 runs; see --help
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from .common import (
    REDIS_HOST,
    REDIS_PORT,
    VENV_BIN,
    callback_path,
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
    seed_pending_payments,
    start_process,
    stop_process,
    success_body,
    wait_until,
    write_json,
)

DBNAME = "bench_callbacks_flood"
CONFIGS = {
    "unlimited": {
        "CALLBACK_REFUSED_BODY_PREFIX_BYTES": "65536",
        "CALLBACK_REFUSED_RATE_LIMIT": "1000000000/min",
    },
    # Spelled out: the environment this process sets up for one configuration must not leak
    # into the next.
    "default": {
        "CALLBACK_REFUSED_BODY_PREFIX_BYTES": "1024",
        "CALLBACK_REFUSED_RATE_LIMIT": "30/min",
    },
}
DEFAULT_WINDOW_S = 60  # the default limit's window


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def table_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('callbacks_inboundcallback')")
        return int(cursor.fetchone()[0])


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    conn.request(
        "POST",
        path,
        body=body,
        headers={"Content-Type": "application/json", "X-Forwarded-Proto": "https"},
    )
    response = conn.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def one_run(args: argparse.Namespace, config: str, run: int) -> dict[str, Any]:
    env = make_env(
        DBNAME,
        CELERY_BROKER_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{args.broker_db}",
        CACHE_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{args.cache_db}",
        CALLBACK_MAX_BODY_BYTES=str(args.body_bytes),
        **CONFIGS[config],
    )
    pg_recreate_database(DBNAME)
    migrate(env)
    django_setup(env)
    seeded = seed_pending_payments(args.genuine, via_services=min(args.genuine, 20))
    from django.core.cache import cache

    cache.clear()  # no count left from the previous run (our own cache database)
    before = table_bytes()
    django_close_connections()

    port = free_port()
    server = start_process(
        [
            str(VENV_BIN / "gunicorn"),
            "mpesa_project.wsgi",
            "--config",
            str(Path(__file__).resolve().parent / "gunicorn_conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "2",
        ],
        env=env.as_dict(),
        log_path=env.var_dir / f"gunicorn-{config}-{run}.log",
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def up() -> bool:
            try:
                conn.request("GET", "/health/", headers={"X-Forwarded-Proto": "https"})
                response = conn.getresponse()
                response.read()
                return response.status == 200
            except OSError:
                conn.close()
                return False

        wait_until(up, timeout=30)
        guess = f"/payments/callback/{secrets.token_urlsafe(32)}/"
        statuses: dict[int, int] = {}
        started = time.perf_counter()
        for _ in range(args.requests):
            status, _elapsed = post(conn, guess, os.urandom(args.body_bytes))
            statuses[status] = statuses.get(status, 0) + 1
        flood_s = time.perf_counter() - started
        django_setup(env)
        after_flood = table_bytes()
        genuine_ms = []
        for item in seeded:
            status, elapsed = post(conn, callback_path(item), success_body(item))
            assert status == 200, status
            genuine_ms.append(elapsed * 1000)
        conn.close()
    finally:
        stop_process(server)

    from callbacks.models import InboundCallback

    refused = InboundCallback.objects.filter(state="rejected")
    genuine = InboundCallback.objects.filter(state="received")
    whole = sum(
        1
        for item, row in zip(
            seeded,
            genuine.order_by("id").values_list("body", flat=True),
            strict=False,
        )
        if bytes(row) == success_body(item)
    )
    result = {
        "config": config,
        "run": run,
        "requests": args.requests,
        "statuses": statuses,
        "flood_s": round(flood_s, 2),
        "rows_stored": refused.count(),
        "unstored_counted": sum(refused.values_list("refused_unstored", flat=True)),
        "growth_bytes": after_flood - before,
        "genuine_sent": len(seeded),
        "genuine_stored_whole": whole,
        "genuine_median_ms": round(median(genuine_ms), 2),
    }
    django_close_connections()
    log(f"{config} run {run}: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="junk posts per flood")
    parser.add_argument("--body-bytes", type=int, default=65536)
    parser.add_argument("--genuine", type=int, default=100, help="genuine callbacks after it")
    parser.add_argument("--broker-db", type=int, default=12, help="Redis DB for the broker")
    parser.add_argument("--cache-db", type=int, default=13, help="Redis DB for the cache")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    handle_termination()
    facts = machine_facts()
    results = []
    try:
        for run in range(1, args.runs + 1):
            for config in CONFIGS:  # interleaved: both see the same machine
                results.append(one_run(args, config, run))
    finally:
        pg_drop_database(DBNAME)
    print_facts(facts)
    print()
    print(
        "| configuration | flood (s) | rows stored | counted, not stored | table growth | "
        "growth per day at this rate | genuine stored whole | genuine median (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for config in CONFIGS:
        mine = [r for r in results if r["config"] == config]
        growth = median([r["growth_bytes"] for r in mine])
        flood = median([r["flood_s"] for r in mine])
        rows = median([r["rows_stored"] for r in mine])
        print(
            f"| {config} | {flood:.1f} | {rows:.0f} | "
            f"{median([r['unstored_counted'] for r in mine]):.0f} | {growth / 2**20:.2f} MiB | "
            f"{per_day(config, growth, flood) / 2**30:.3f} GiB | "
            f"{min(r['genuine_stored_whole'] for r in mine)}/{mine[0]['genuine_sent']} | "
            f"{median([r['genuine_median_ms'] for r in mine]):.2f} |"
        )
    write_json(args.json, {"facts": facts, "results": results})


def per_day(config: str, growth: float, flood_s: float) -> float:
    """Growth per day from one client keeping this pace: without a limit, the measured rate;
    with one, the flood's growth once per window (the flood fits in one window, or straddles
    two and then stored up to twice the limit: this over-estimates)."""
    if config == "unlimited":
        return growth / flood_s * 86400
    return growth * (86400 / DEFAULT_WINDOW_S)


if __name__ == "__main__":
    main()
