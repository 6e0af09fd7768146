"""Hostile statement files: what each costs to read, the previous code against this one, and
how long callbacks wait while four hostile uploads are being processed.

``files``: for each file (built in memory by ``reconciliation/tests/hostile.py``; a normal
one-row XLSX is the baseline), a fresh process per run reads it as an import does (parse and
read every row, rejects kept as the engine keeps them; with this code's time limit) and the
parent takes its wall time and peak memory (``wait4``'s ``ru_maxrss``). The previous code is a
``git archive`` of ``--before``; its runs are stopped after ``--cap`` seconds.

``callbacks``: gunicorn (gthread, 1 worker × 4 threads, as attacked) + a Celery worker +
PostgreSQL + Redis, per code version; callbacks are posted one after another for
``--duration`` seconds with nothing else running (baseline), then again while four hostile
uploads (the dimension XLSX, each different) are in flight; latencies and failures of both.

    python -m bench.hostile_files files --before 261556a --runs 3
    python -m bench.hostile_files callbacks --before 261556a --duration 20

Uses PostgreSQL databases ``h_statements_bench_before``/``_after`` and Redis DBs 8 and 9
(BENCH_BROKER_DB, BENCH_CACHE_DB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .common import (
    REPO_ROOT,
    database_url,
    log,
    machine_facts,
    pg_drop_database,
    pg_recreate_database,
)

MEMORY_CAP_BYTES = 6 * 1024**3  # a child that wants more is stopped (MemoryError)
BROKER_DB = os.environ.get("BENCH_BROKER_DB", "8")
CACHE_DB = os.environ.get("BENCH_CACHE_DB", "9")


def build(case: str) -> bytes:
    from reconciliation.tests import hostile
    from reconciliation.tests.builders import Preamble, g2_xlsx

    builders = {
        "baseline: a normal one-row XLSX": lambda: g2_xlsx(hostile.ONE_ROW, preamble=Preamble()),
        "XLSX declaring A1:XFD1048576, a cell on row 1048576": hostile.xlsx_declaring_dimension,
        "XLSX shared-strings zip bomb (300 MiB string)": lambda: hostile.xlsx_with_shared_string(
            "BOMB", 300 * 1024 * 1024
        ),
        "XLSX: one 900,000-char shared string on 100 rejected rows": lambda: (
            hostile.xlsx_with_shared_string("HUGE", 900_000, rows=100)
        ),
        'Pull JSON "amount": 1E+100000000': lambda: hostile.pull_with_amount("1E+100000000"),
        'Pull JSON "amount": 1E+999999999999999999': lambda: hostile.pull_with_amount(
            "1E+999999999999999999"
        ),
        "XLS whose merged range spans 65,536 x 256": hostile.xls_with_merged_range,
    }
    return builders[case]()


CASES = [
    "baseline: a normal one-row XLSX",
    "XLSX declaring A1:XFD1048576, a cell on row 1048576",
    "XLSX shared-strings zip bomb (300 MiB string)",
    "XLSX: one 900,000-char shared string on 100 rejected rows",
    'Pull JSON "amount": 1E+100000000',
    'Pull JSON "amount": 1E+999999999999999999',
    "XLS whose merged range spans 65,536 x 256",
]


def settings_env(tree: Path, var_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "mpesa_project.settings",
            "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production",
            "VAR_DIR": str(var_dir),
            "PYTHONPATH": str(tree),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LOG_LEVEL": "warning",
            "MPESA_ENV": "simulator",
        }
    )
    env.update(extra)
    return env


# Run by the child with ``python -c`` in the code tree it measures (so that tree's
# ``reconciliation`` is the one imported): read the file as an import does, print the outcome.
READ_ONE = """
import contextlib, json, sys, time
from pathlib import Path
import django
django.setup()
try:
    from reconciliation.engines.python import read_lines
    from reconciliation.formats import parse_statement
    from reconciliation.formats.limits import ParseLimits, StatementFormatError, time_limit
except ImportError:  # a tree from before the formats and engines packages
    from reconciliation.engine import read_lines
    from reconciliation import parsers
    from reconciliation.parsers import ParseLimits, StatementFormatError, parse_statement
    time_limit = getattr(parsers, "time_limit", lambda limits: contextlib.nullcontext())
data = Path(sys.argv[1]).read_bytes()
started = time.perf_counter()
try:
    with time_limit(ParseLimits.from_settings()):
        lines, rejects, _ = read_lines(parse_statement(data))
    kept = sum(len(reason) + sum(map(len, cells)) for _, reason, cells in rejects)
    outcome = f"read: {len(lines)} lines, {len(rejects)} rejects keeping {kept:,} chars"
except StatementFormatError as exc:
    outcome = f"refused: {str(exc)[:110]}"
except MemoryError:
    outcome = "MemoryError (a 500)"
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - started}))
"""


def run_child(tree: Path, path: Path, var_dir: Path, cap: float) -> dict[str, Any]:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))

    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", READ_ONE, str(path)],
        cwd=tree,
        env=settings_env(tree, var_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit_memory,
        start_new_session=True,
    )
    killed = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > cap and not killed:
            os.killpg(process.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    out = process.stdout.read().decode() if process.stdout else ""
    err = process.stderr.read().decode() if process.stderr else ""
    result: dict[str, Any] = {"wall_seconds": elapsed, "maxrss_mib": usage.ru_maxrss / 1024}
    if killed:
        result["outcome"] = f"stopped after {cap:.0f} s (still reading)"
    elif out.strip():
        result.update(json.loads(out.strip().splitlines()[-1]))
    else:
        result["outcome"] = f"exit {process.returncode}: {err.strip().splitlines()[-1:]}"
    return result


def export_tree(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", ref], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def files(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    before = export_tree(args.before, work / "before")
    trees = {"before": before, "after": REPO_ROOT}
    results: dict[str, Any] = {}
    for case in CASES:
        path = work / f"case-{CASES.index(case)}"
        data = build(case)
        path.write_bytes(data)
        results[case] = {"bytes": len(data)}
        for version, tree in trees.items():
            var_dir = work / f"var-{version}"
            var_dir.mkdir(exist_ok=True)
            runs = []
            for _ in range(args.runs):
                runs.append(run_child(tree, path, var_dir, args.cap))
                log(f"{case} [{version}]: {runs[-1]}")
                if runs[-1]["outcome"].startswith("stopped"):
                    break  # no need to wait that long again
            results[case][version] = {
                "runs": runs,
                "median_seconds": statistics.median(r["wall_seconds"] for r in runs),
                "median_maxrss_mib": statistics.median(r["maxrss_mib"] for r in runs),
                "outcome": runs[-1]["outcome"],
            }
    print(
        "\n| file | bytes | previous code: time, peak memory, outcome | now: time, peak "
        "memory, outcome |\n|---|---|---|---|"
    )
    for case, result in results.items():
        cells = []
        for version in ("before", "after"):
            r = result[version]
            cells.append(
                f"{r['median_seconds']:.2f} s, {r['median_maxrss_mib']:.0f} MiB, {r['outcome']}"
            )
        print(f"| {case} | {result['bytes']:,} | {cells[0]} | {cells[1]} |")
    return results


# --- Callbacks while hostile uploads are processed ------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, float]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (TimeoutError, urllib.error.URLError, ConnectionError):
        status = 0
    return status, time.monotonic() - started


def callback_burst(base: str, duration: float, timeout: float) -> dict[str, Any]:
    body = json.dumps(
        {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": "bench",
                    "CheckoutRequestID": "ws_CO_BENCH",
                    "ResultCode": 1032,
                    "ResultDesc": "Request cancelled by user",
                }
            }
        }
    ).encode()
    headers = {"Content-Type": "application/json", "X-Forwarded-Proto": "https"}
    latencies, failures = [], 0
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        status, took = post(
            f"{base}/payments/callback/{secrets.token_urlsafe(32)}/", body, headers, timeout
        )
        if status == 200:
            latencies.append(took)
        else:
            failures += 1
        time.sleep(0.05)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0

    return {
        "answered": len(latencies),
        "failed_or_timed_out": failures,
        "p50_ms": pct(0.5) * 1000,
        "p90_ms": pct(0.9) * 1000,
        "max_ms": (latencies[-1] if latencies else 0) * 1000,
    }


def upload(base: str, key: str, data: bytes, name: str, timeout: float) -> tuple[int, float]:
    boundary = secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Authorization": f"Bearer {key}",
        "X-Forwarded-Proto": "https",
    }
    return post(f"{base}/reconciliation/statements/", body, headers, timeout)


def one_stack(version: str, tree: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from reconciliation.tests import hostile
    from reconciliation.tests.builders import pay_row

    dbname = f"h_statements_bench_{version}"
    pg_recreate_database(dbname)
    var_dir = work / f"stack-{version}"
    var_dir.mkdir()
    port = free_port()
    env = settings_env(
        tree,
        var_dir,
        DATABASE_URL=database_url(dbname),
        CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{BROKER_DB}",
        CACHE_URL=f"redis://127.0.0.1:6379/{CACHE_DB}",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_PROXY_SSL_HEADER="true",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKER_CLASS="gthread",
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="4",
        GUNICORN_ACCESSLOG="",
        PYTHONUNBUFFERED="1",
    )
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=tree, env=env, check=True
    )
    key = (
        subprocess.run(
            [
                python,
                "manage.py",
                "shell",
                "-c",
                "from core.services import api_client_create as new; print(new(name='b').key)",
            ],
            cwd=tree,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    processes = []
    logs = open(var_dir / "stack.log", "ab")  # noqa: SIM115 - for the processes' lifetime
    try:
        for command in (
            [python, "-m", "gunicorn", "mpesa_project.wsgi", "-c", "gunicorn.conf.py"],
            [
                python,
                "-m",
                "celery",
                "-A",
                "mpesa_project",
                "worker",
                "--concurrency=2",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
            ],
        ):
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=tree,
                    env=env,
                    stdout=logs,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while (
            post(f"{base}/payments/callback/x/", b"{}", {"X-Forwarded-Proto": "https"}, 2)[0] == 0
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.5)
        baseline = callback_burst(base, args.duration, args.timeout)
        log(f"[{version}] baseline: {baseline}")
        answers: list[tuple[int, float]] = []
        threads = []
        for n in range(4):
            rows = [pay_row(f"TK5XB{n:05d}", 5, "05-11-2025 10:00:00")]
            data = hostile.xlsx_declaring_dimension(rows=rows)
            thread = threading.Thread(
                target=lambda d=data, n=n: answers.append(
                    upload(base, key, d, f"hostile-{n}.xlsx", args.duration + 30)
                ),
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        time.sleep(1.0)
        attacked = callback_burst(base, args.duration, args.timeout)
        log(f"[{version}] under attack: {attacked}")
        for thread in threads:
            thread.join(timeout=5)
        return {
            "baseline": baseline,
            "during_4_hostile_uploads": attacked,
            "upload_answers": [
                {"status": status, "seconds": round(took, 3)} for status, took in answers
            ],
        }
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)
        logs.close()
        pg_drop_database(dbname)


def callbacks(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-hostile-stack-"))
    before = export_tree(args.before, work / "before")
    results = {
        "before": one_stack("before", before, args, work),
        "after": one_stack("after", REPO_ROOT, args, work),
    }
    print(
        "\n| code | callbacks | answered | failed or timed out | p50 | p90 | max |\n"
        "|---|---|---|---|---|---|---|"
    )
    for version, result in results.items():
        for phase in ("baseline", "during_4_hostile_uploads"):
            r = result[phase]
            print(
                f"| {version} | {phase} | {r['answered']} | {r['failed_or_timed_out']} | "
                f"{r['p50_ms']:.0f} ms | {r['p90_ms']:.0f} ms | {r['max_ms']:.0f} ms |"
            )
        print(f"| {version} | upload answers | {result['upload_answers']} | | | | |")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("files", "callbacks"):
        command = sub.add_parser(name)
        command.add_argument("--before", required=True, help="git ref of the previous code")
        command.add_argument("--json", type=Path)
    sub.choices["files"].add_argument("--runs", type=int, default=3)
    sub.choices["files"].add_argument("--cap", type=float, default=60.0)
    sub.choices["callbacks"].add_argument("--duration", type=float, default=20.0)
    sub.choices["callbacks"].add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpesa_project.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production")
    import django

    django.setup()
    facts = machine_facts()
    log(f"machine: {facts}")
    results = files(args) if args.command == "files" else callbacks(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": facts, "results": results}, indent=2))


if __name__ == "__main__":
    main()
