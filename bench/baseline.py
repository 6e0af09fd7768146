"""The database's own commit ceiling: bare single-row INSERT + COMMIT transactions against the
same PostgreSQL, with a given number of concurrent clients.

pgbench (C, one connection per client) with a custom script when it is installed; otherwise a
psycopg loop in one process per client (Python's own overhead then counts, and is said so).
Each transaction inserts one row shaped like a stored callback (bigserial id, timestamp,
a body of the same size) and commits, in autocommit mode.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import PG_HOST, PG_PORT, PG_USER, CpuMeter, log, nproc, other_cpu, postgres_pids_for

TABLE = "bench_baseline_insert"


def prepare(dbname: str) -> None:
    import psycopg

    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True
    ) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, "
            "received_at timestamptz NOT NULL DEFAULT now(), body bytea NOT NULL)"
        )


def run(
    dbname: str, *, clients: int, seconds: float, body: bytes, threads: int = 2
) -> dict[str, Any]:
    """Insert-and-commit for ``seconds`` with ``clients`` connections; commits per second,
    with the CPU used by PostgreSQL, the client and anything else in the window."""
    prepare(dbname)
    meter = CpuMeter(
        {"postgres": postgres_pids_for(dbname), "bench": lambda: {os.getpid()}},
        postgres_db=dbname,
    )
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    meter.start()
    if shutil.which("pgbench"):
        result = _run_pgbench(dbname, clients=clients, seconds=seconds, body=body, threads=threads)
    else:
        log("pgbench not found (Debian: apt-get install postgresql-15); using a psycopg loop")
        result = _run_psycopg(dbname, clients=clients, seconds=seconds, body=body)
    # Let the benchmark's backends exit and be reaped by the postmaster, so that their CPU
    # is counted in this window and not in the next one.
    time.sleep(1.0)
    cpu = meter.stop()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu["client_cpu_s"] = round(
        (children_after.ru_utime - children_before.ru_utime)
        + (children_after.ru_stime - children_before.ru_stime),
        2,
    )
    # "bench" is this process and the children it reaped in the window: pgbench.
    other_cpu(cpu, nproc(), ours=("postgres", "bench"))
    result["cpu"] = cpu
    return result


def _run_pgbench(
    dbname: str, *, clients: int, seconds: float, body: bytes, threads: int
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(f"INSERT INTO {TABLE} (body) VALUES ('\\x{body.hex()}'::bytea);\n")
    try:
        completed = subprocess.run(
            [
                "pgbench",
                "-h",
                PG_HOST,
                "-p",
                str(PG_PORT),
                "-U",
                PG_USER,
                "-n",  # no vacuum of pgbench's own tables
                "-M",
                "extended",
                "-c",
                str(clients),
                "-j",
                str(min(threads, clients)),
                "-T",
                str(max(1, round(seconds))),
                "-f",
                script.name,
                dbname,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    output = completed.stdout
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    latency = re.search(r"latency average = ([\d.]+) ms", output)
    done = re.search(r"number of transactions actually processed: (\d+)", output)
    if not tps:
        raise RuntimeError(f"cannot read pgbench output:\n{output}\n{completed.stderr}")
    return {
        "tool": "pgbench",
        "clients": clients,
        "seconds": seconds,
        "commits_per_s": round(float(tps.group(1)), 1),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "transactions": int(done.group(1)) if done else None,
    }


def _psycopg_client(dbname: str, seconds: float, body: bytes, start_at: float) -> int:
    import psycopg

    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True
    ) as conn:
        statement = f"INSERT INTO {TABLE} (body) VALUES (%s)"
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        count = 0
        while time.time() < deadline:
            conn.execute(statement, (body,))
            count += 1
    return count


def _run_psycopg(dbname: str, *, clients: int, seconds: float, body: bytes) -> dict[str, Any]:
    start_at = time.time() + 1.0
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        counts = pool.starmap(_psycopg_client, [(dbname, seconds, body, start_at)] * clients)
    total = sum(counts)
    return {
        "tool": "psycopg loop (Python: includes client CPU on the same cores)",
        "clients": clients,
        "seconds": seconds,
        "commits_per_s": round(total / seconds, 1),
        "latency_avg_ms": round(1000.0 * seconds * clients / total, 3) if total else None,
        "transactions": total,
    }
