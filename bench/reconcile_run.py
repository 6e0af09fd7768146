"""Reconciliation benchmark: a statement of N lines against N payments, end to end.

For each size: generate the statement (G2 CSV) and the payments with planted breaks
(``bench/reconcile_generate.py``), load the payments into a template PostgreSQL database, then
for each run clone it and, in a fresh process, time

* the floor: COPY of the statement's rows (PostgreSQL's own CSV parser, into an UNLOGGED
  table) plus one hash join of them with the payments on the receipt, and
* the import: ``statement_import`` from reading the file's bytes to the commit of the lines,
  matches, breaks and summary (then the automatic resolutions, timed apart),

and check that the engine found exactly the planted breaks. SQLite (the Python engine) is
measured with ``--sqlite``. The machine must be otherwise idle: each run waits for it.

    python -m bench.reconcile_run --lines 100000 1000000 --runs 3 --json var/bench/recon.json
    python -m bench.reconcile_run --sqlite --lines 10000 100000 --runs 3

BENCH_SETTINGS names the Django settings module (default mpesa_project.settings).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import (
    REPO_ROOT,
    database_url,
    log,
    machine_facts,
    median,
    pg_admin_connect,
    pg_drop_database,
    pg_recreate_database,
    print_facts,
    wait_for_idle,
    write_json,
)
from .reconcile_generate import PAYMENT_COLUMNS, generate, payments_copy_text, statement_csv

SETTINGS = os.environ.get("BENCH_SETTINGS", "mpesa_project.settings")
PLANTED_BENCH_RATES = {"not_success_exact": 0.00005}  # a realistic few automatic resolutions


def child_env(dbname: str | None, var_dir: str, sqlite: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production",
            "DJANGO_DEBUG": "false",
            "VAR_DIR": var_dir,
            "LOG_LEVEL": "warning",
            "MPESA_ENV": "simulator",
            "CELERY_BROKER_URL": "memory://",
            "CACHE_URL": "locmem://",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    if sqlite:
        env["DATABASE_URL"] = f"sqlite:///{sqlite}"
    elif dbname:
        env["DATABASE_URL"] = database_url(dbname)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
    )


def prepare_template(dbname: str, payments_text: str, var_dir: str) -> None:
    import psycopg

    pg_recreate_database(dbname)
    migrate(child_env(dbname, var_dir))
    with psycopg.connect(database_url(dbname), autocommit=True) as conn:
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY payments_payment ({PAYMENT_COLUMNS}) FROM STDIN") as copy,
        ):
            copy.write(payments_text)
        conn.execute("VACUUM ANALYZE payments_payment")
        conn.execute("CHECKPOINT")


def clone(template: str, dbname: str) -> None:
    with pg_admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
        conn.execute("CHECKPOINT")


def run_child(env: dict[str, str], path: Path, *, floor: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.reconcile_run", "--child", str(path)]
    if floor:
        command.append("--floor")
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- In the child process ------------------------------------------------------------------------


def measure_floor(data: bytes) -> dict[str, float]:
    """COPY the data rows (PostgreSQL parses the CSV) into an UNLOGGED table, then one hash
    join of them with the payments on the receipt."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    header = data.index(b"\nReceipt No.,")
    start = data.index(b"\n", header + 1) + 1
    columns = ", ".join(f"c{i} text" for i in range(14))
    view = memoryview(data)
    with raw.transaction():
        raw.execute(f"CREATE UNLOGGED TABLE bench_floor ({columns})")
    began = time.perf_counter()
    with (
        raw.transaction(),
        raw.cursor() as cursor,
        cursor.copy("COPY bench_floor FROM STDIN (FORMAT csv)") as copy,
    ):
        for offset in range(start, len(data), 1 << 20):
            copy.write(view[offset : offset + (1 << 20)])
    copied = time.perf_counter()
    with raw.transaction():
        raw.execute("SET LOCAL work_mem = '256MB'")
        raw.execute("SET LOCAL jit = off")
        raw.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        (joined,) = raw.execute(
            "SELECT count(p.id) FROM bench_floor f "
            "JOIN payments_payment p ON p.mpesa_receipt_number = f.c0"
        ).fetchone()
    finished = time.perf_counter()
    with raw.transaction():
        raw.execute("DROP TABLE bench_floor")
    return {
        "floor_copy_s": round(copied - began, 3),
        "floor_join_s": round(finished - copied, 3),
        "floor_s": round(finished - began, 3),
        "floor_joined_rows": int(joined),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _python_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child(path: Path, floor: bool) -> None:
    import django

    django.setup()
    from django.db import connection

    from reconciliation.imports import statement_import
    from reconciliation.models import Break
    from reconciliation.services import run_auto_resolve

    result: dict[str, Any] = {}
    if floor:
        result.update(measure_floor(path.read_bytes()))
    backend = 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (backend,) = cursor.fetchone()
    python_before = _python_cpu()
    backend_before = _cpu_seconds(backend) if backend else 0.0
    began = time.perf_counter()
    data = path.read_bytes()
    imported = statement_import(data=data, file_name=path.name, auto_resolve=False)
    ended = time.perf_counter()
    result["python_cpu_s"] = round(_python_cpu() - python_before, 2)
    if backend:
        result["postgres_cpu_s"] = round(_cpu_seconds(backend) - backend_before, 2)
    resolved = run_auto_resolve(run=imported.run)
    resolved_at = time.perf_counter()
    summary = imported.run.summary
    counts = {name: totals["count"] for name, totals in summary["classes"].items()}
    counts["auto_resolvable"] = Break.objects.filter(run=imported.run, auto_resolvable=True).count()
    result.update(
        {
            "end_to_end_s": round(ended - began, 3),
            "auto_resolve_s": round(resolved_at - ended, 3),
            "auto_resolved": resolved,
            "engine": imported.run.engine,
            "engine_ms": imported.run.duration_ms,
            "phases_ms": imported.run.timings,
            "counts": counts,
            "residual": summary["bridge"]["residual"],
            "lines": summary["lines"],
        }
    )
    print(json.dumps(result))


# --- Orchestration -------------------------------------------------------------------------------


def bench_size(lines: int, runs: int, *, sqlite: bool, keep: bool) -> dict[str, Any]:
    log(f"generating {lines:,} lines")
    generated = generate(lines, seed=1, rates=PLANTED_BENCH_RATES)
    expected = dict(generated.expected)
    work = Path(tempfile.mkdtemp(prefix="bench-recon-"))
    path = work / f"ORG_4125223_UtilityAccount_All_{lines}.csv"
    path.write_bytes(statement_csv(generated))
    payments_text = payments_copy_text(generated.payments)
    size_mb = round(path.stat().st_size / 1e6, 1)
    log(f"statement {path.name}: {size_mb} MB, {len(generated.payments):,} payments")
    var_dir = str(work / "var")
    Path(var_dir).mkdir()
    results: list[dict[str, Any]] = []
    template = f"bench_recon_tpl_{lines}"
    if not sqlite:
        log("loading the payments into a template database")
        prepare_template(template, payments_text, var_dir)
    for number in range(1, runs + 1):
        if sqlite:
            db_file = str(work / f"run{number}.sqlite3")
            env = child_env(None, var_dir, sqlite=db_file)
            migrate(env)
            _load_sqlite(db_file, generated.payments)
        else:
            dbname = "bench_recon_run"
            clone(template, dbname)
            env = child_env(dbname, var_dir)
        wait_for_idle()
        log(f"run {number}/{runs}")
        outcome = run_child(env, path, floor=not sqlite)
        outcome["matches_planted"] = all(
            outcome["counts"].get(name, 0) == count for name, count in expected.items()
        )
        results.append(outcome)
        log(
            f"  end to end {outcome['end_to_end_s']} s"
            + (f", floor {outcome['floor_s']} s" if "floor_s" in outcome else "")
            + f", planted breaks found: {outcome['matches_planted']}"
        )
    if not sqlite and not keep:
        pg_drop_database("bench_recon_run")
        pg_drop_database(template)
    summary = {
        "lines": lines,
        "payments": len(generated.payments),
        "file_mb": size_mb,
        "database": "sqlite" if sqlite else "postgresql",
        "runs": results,
        "expected": expected,
        "median_end_to_end_s": median([r["end_to_end_s"] for r in results]),
        "median_auto_resolve_s": median([r["auto_resolve_s"] for r in results]),
    }
    if not sqlite:
        summary["median_floor_s"] = median([r["floor_s"] for r in results])
        summary["median_floor_copy_s"] = median([r["floor_copy_s"] for r in results])
        summary["median_floor_join_s"] = median([r["floor_join_s"] for r in results])
        phases = results[0]["phases_ms"].keys()
        summary["median_phases_ms"] = {
            name: median([r["phases_ms"][name] for r in results]) for name in phases
        }
    return summary


def _load_sqlite(db_file: str, payments: list[dict[str, Any]]) -> None:
    import sqlite3

    text = payments_copy_text(payments)
    rows = [
        tuple(None if value == r"\N" else value for value in line.split("\t"))
        for line in text.splitlines()
    ]
    with sqlite3.connect(db_file) as conn:
        placeholders = ", ".join("?" * len(rows[0]))
        conn.executemany(
            f"INSERT INTO payments_payment ({PAYMENT_COLUMNS}) VALUES ({placeholders})",
            [
                (
                    r[0].replace("-", ""),
                    *r[1:16],
                    r[16] == "t",
                    *r[17:21],
                    r[21],
                    r[22] == "t",
                    r[23] == "t",
                    *r[24:],
                )
                for r in rows
            ],
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.floor)
        return 0
    facts = machine_facts()
    print_facts(facts)
    sizes = [bench_size(n, args.runs, sqlite=args.sqlite, keep=args.keep) for n in args.lines]
    for size in sizes:
        line = (
            f"{size['lines']:>9,} lines ({size['file_mb']} MB, {size['database']}): "
            f"end to end {size['median_end_to_end_s']:.2f} s (median of {len(size['runs'])})"
        )
        if "median_floor_s" in size:
            line += (
                f"; floor COPY {size['median_floor_copy_s']:.2f} s + hash join "
                f"{size['median_floor_join_s']:.2f} s = {size['median_floor_s']:.2f} s"
            )
        print(line)
    write_json(args.json, {"machine": facts, "sizes": sizes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
