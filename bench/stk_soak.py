"""STK Push soak with faults: merchant requests keep coming while Redis goes away and a web
worker is killed. The attack this answers: with the Redis that serves as cache and broker
stopped, every API request answered 500 (the throttle and the Daraja token cache).

A fresh PostgreSQL database; a private redis-server on a free port as the cache and the broker
(never the shared one: the script stops and starts its own); gunicorn (2 workers x 2 threads,
production settings), a Celery worker (under core.supervise) and beat; the Daraja simulator
in this process, each payer a different number that succeeds. Senders POST
/payments/stk-push/ at --rate per second, each with its own Idempotency-Key, for --duration
seconds. Every --period seconds Redis is
stopped for --outage seconds (first at --outage-at), and a gunicorn worker is SIGKILLed
(first at --kill-at). Measured: the answers (2xx, 5xx, connections cut by the kill), the 5xx
that fell in the outage windows, and after the load whether every accepted payment became
SUCCESS (the callbacks stored during an outage are drained once Redis is back).

    .venv/bin/python -m bench.stk_soak [--duration 150] [--rate 5] [--runs 3]
        [--code DIR]   # run the server processes from another tree (a `git archive` of a
                       # baseline commit, with BENCH_SOURCE_COMMIT naming it)

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust; creates and drops bench_stk_soak)
and redis-server on the PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    REPO_ROOT,
    database_url,
    handle_termination,
    log,
    machine_facts,
    median,
    pg_admin_connect,
    pg_drop_database,
    pg_recreate_database,
    print_facts,
    process_tree,
    stop_process,
    write_json,
)

DB = "bench_stk_soak"
VENV_BIN = Path(sys.executable).parent


@dataclass
class Answer:
    at: float  # seconds since the load started
    status: int  # 0: the connection was cut (the worker was killed under it)
    latency: float
    payment_id: str | None


@dataclass
class Windows:
    outages: list[tuple[float, float]] = field(default_factory=list)
    kills: list[float] = field(default_factory=list)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_once(options: argparse.Namespace, code: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO_ROOT))
    from simulator import SimulatorConfig, start_in_thread
    from testsupport import PrivateRedis

    var = Path(tempfile.mkdtemp(prefix="bench-stk-soak-"))
    redis = PrivateRedis(var / "redis")
    redis.start()
    port = free_port()
    simulator, simulator_url = start_in_thread(
        port=0, config=SimulatorConfig(callback_delay=1.0, seed=20261204, log_requests=False)
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url(DB),
        "DB_CONN_MAX_AGE": "60",
        "CELERY_BROKER_URL": redis.url(0),
        "CACHE_URL": redis.url(1),
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "mpesa_project.settings",
        "VAR_DIR": str(var),
        "LOG_LEVEL": "warning",
        "MPESA_ENV": "simulator",
        "MPESA_BASE_URL": simulator_url,
        "MPESA_CALLBACK_URL": f"http://127.0.0.1:{port}/payments/callback/",
        "API_RATE_LIMIT": "1000000/min",
        "API_STK_PUSH_RATE_LIMIT": "1000000/min",
        "GUNICORN_ACCESSLOG": "",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    pg_recreate_database(DB)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=code,
        env=env,
        check=True,
    )
    created = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "soak"],
        cwd=code,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = created.stdout.strip().splitlines()[-1]

    # The server processes run the --code tree (bench.common.start_process runs this one).
    def in_code(args: list[str], name: str) -> subprocess.Popen[bytes]:
        handle = open(var / f"{name}.log", "ab")  # noqa: SIM115 - the child's log
        return subprocess.Popen(
            args,
            cwd=code,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    web = in_code(
        [
            str(VENV_BIN / "gunicorn"),
            "mpesa_project.wsgi",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "2",
        ],
        "web",
    )
    worker = in_code(
        [
            sys.executable,
            "-m",
            "core.supervise",
            "--",
            sys.executable,
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
        "worker",
    )
    beat = in_code(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mpesa_project",
            "beat",
            "-l",
            "WARNING",
            f"--schedule={var}/beat",
        ],
        "beat",
    )
    processes = [web, worker, beat]
    answers: list[Answer] = []
    windows = Windows()
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base) as probe:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if probe.get("/health/").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"gunicorn did not start: see {var}/web.log")
                time.sleep(0.2)
        start = time.monotonic()
        count = int(options.rate * options.duration)
        stop = threading.Event()

        def sender(offset: int, step: int) -> None:
            headers = {"Authorization": f"Bearer {api_key}"}
            with httpx.Client(base_url=base, timeout=60, headers=headers) as client:
                for n in range(offset, count, step):
                    pause = start + n / options.rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    sent = time.monotonic()
                    body = {
                        # Any number outside the simulator's table succeeds; one payer per
                        # push (a payer with a push in flight is refused, as by Daraja).
                        "phone_number": f"2547{20000000 + n:08d}",
                        "amount": 10,
                        "account_reference": f"S{n}",
                        "description": "soak",
                    }
                    try:
                        response = client.post(
                            "/payments/stk-push/",
                            json=body,
                            headers={"Idempotency-Key": uuid.uuid4().hex},
                        )
                        status = response.status_code
                        payment_id = response.json().get("id") if status < 300 else None
                    except httpx.HTTPError:
                        status, payment_id = 0, None
                    answers.append(
                        Answer(sent - start, status, time.monotonic() - sent, payment_id)
                    )

        def chaos() -> None:
            events: list[tuple[float, str]] = []
            moment = options.outage_at
            while moment < options.duration:
                events.append((moment, "outage"))
                moment += options.period
            moment = options.kill_at
            while moment < options.duration:
                events.append((moment, "kill"))
                moment += options.period
            for at, kind in sorted(events):
                pause = start + at - time.monotonic()
                if stop.wait(max(pause, 0)):
                    return
                if kind == "kill":
                    workers = sorted(process_tree(web.pid) - {web.pid})
                    if workers:
                        os.kill(workers[0], signal.SIGKILL)
                        windows.kills.append(time.monotonic() - start)
                        log(f"t={at:.0f}s: SIGKILL gunicorn worker {workers[0]}")
                else:
                    down = time.monotonic() - start
                    redis.stop()
                    log(f"t={at:.0f}s: Redis stopped for {options.outage:g}s")
                    stop.wait(options.outage)
                    redis.start()
                    windows.outages.append((down, time.monotonic() - start))

        threads = [threading.Thread(target=sender, args=(i, 8)) for i in range(8)]
        chaos_thread = threading.Thread(target=chaos)
        for thread in [*threads, chaos_thread]:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        chaos_thread.join()
        if not redis.up():
            redis.start()
        load_end = time.monotonic()
        accepted = {a.payment_id for a in answers if a.payment_id}
        final_after = None
        while time.monotonic() - load_end < options.settle:
            statuses = payment_statuses(accepted)
            if statuses.get("SUCCESS", 0) == len(accepted):
                final_after = time.monotonic() - load_end
                break
            time.sleep(1)
        statuses = payment_statuses(accepted)
    finally:
        for process in processes:
            stop_process(process)
        simulator.shutdown()
        redis.stop()
        pg_drop_database(DB)

    def in_outage(answer: Answer) -> bool:
        return any(down <= answer.at <= up for down, up in windows.outages)

    codes: dict[str, int] = {}
    for answer in answers:
        codes[str(answer.status)] = codes.get(str(answer.status), 0) + 1
    sent_in_outages = [a for a in answers if in_outage(a)]
    return {
        "pushes": len(answers),
        "answers": dict(sorted(codes.items())),
        "answered_5xx": sum(1 for a in answers if a.status >= 500),
        "sent_during_outages": len(sent_in_outages),
        "5xx_during_outages": sum(1 for a in sent_in_outages if a.status >= 500),
        "connections_cut_by_kills": codes.get("0", 0),
        "outages": [[round(a, 1), round(b, 1)] for a, b in windows.outages],
        "kills": [round(k, 1) for k in windows.kills],
        "accepted_payments": len({a.payment_id for a in answers if a.payment_id}),
        "accepted_payment_statuses": statuses,
        "all_accepted_success_after_load_seconds": (
            round(final_after, 1) if final_after is not None else None
        ),
        "latency_p50_ms": round(median([a.latency for a in answers]) * 1000, 1),
    }


def payment_statuses(ids: set[str]) -> dict[str, int]:
    import psycopg

    if not ids:
        return {}
    with psycopg.connect(database_url(DB)) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM payments_payment WHERE id = ANY(%s::uuid[]) "
            "GROUP BY status",
            (list(ids),),
        ).fetchall()
    return {status: count for status, count in rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=5.0, help="STK pushes per second")
    parser.add_argument("--period", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds Redis is down")
    parser.add_argument("--outage-at", type=float, default=20.0, help="first outage (s)")
    parser.add_argument("--kill-at", type=float, default=45.0, help="first worker SIGKILL (s)")
    parser.add_argument("--settle", type=float, default=180.0, help="wait for SUCCESS (s)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--code", type=Path, default=REPO_ROOT, help="tree the servers run")
    parser.add_argument("--json", type=Path, help="write the results here")
    options = parser.parse_args()
    handle_termination()
    with pg_admin_connect():
        pass  # PostgreSQL is reachable
    facts = machine_facts()
    print_facts(facts)
    code = options.code.resolve()
    commit = os.environ.get("BENCH_SOURCE_COMMIT", "") if code != REPO_ROOT else ""
    print(f"server code: {code}" + (f" (commit {commit})" if commit else ""))
    results = []
    for run in range(1, options.runs + 1):
        log(f"run {run} of {options.runs}")
        result = run_once(options, code)
        print(json.dumps(result), flush=True)
        results.append(result)
    summary = {
        "median_5xx": median([r["answered_5xx"] for r in results]),
        "median_5xx_during_outages": median([r["5xx_during_outages"] for r in results]),
        "median_sent_during_outages": median([r["sent_during_outages"] for r in results]),
    }
    print(json.dumps(summary))
    write_json(
        options.json,
        {"facts": facts, "options": vars(options), "results": results, "summary": summary},
    )


if __name__ == "__main__":
    main()
