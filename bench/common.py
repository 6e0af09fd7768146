"""Shared pieces of the benchmark scripts: a fresh PostgreSQL database, seeded PENDING
payments with their callback tokens, the environment for real processes (gunicorn, celery),
process control, CPU accounting and the machine facts every result is reported with.

Only loopback services are used: PostgreSQL (default 127.0.0.1:5432, user postgres, trust
auth) and Redis (default 127.0.0.1:6379, DB 10 for the broker and the cache).
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("BENCH_PG_ADMIN_DB", "postgres")
REDIS_HOST = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
# One Redis database for the broker and the cache (their keys do not collide), flushed before
# each measurement; other benchmarks may use DB 11 and 12 at the same time.
BROKER_DB = 10
CACHE_DB = 10


# --- Output ----------------------------------------------------------------------------------


def handle_termination() -> None:
    """SIGTERM and SIGINT (also when started in the background, where SIGINT is ignored)
    raise, so that the scripts' cleanup runs: servers and workers stopped, database dropped."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    log(f"results written to {path}")


# --- Tools -----------------------------------------------------------------------------------


def require_tool(name: str, package: str) -> str:
    """The path of ``name``; installed with apt-get when missing and running as root, else a
    clear message and exit."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"{name} not found; installing the Debian package {package} (running as root)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which(name)
        if found:
            return found
    sys.exit(
        f"{name} is required but not installed. Install it with:\n"
        f"    sudo apt-get update && sudo apt-get install -y {package}"
    )


# --- PostgreSQL and Redis ----------------------------------------------------------------------


def database_url(dbname: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def pg_admin_connect() -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, autocommit=True
    )


def pg_recreate_database(dbname: str) -> None:
    """Drop (closing any session still on it) and create ``dbname``."""
    if not dbname.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {dbname!r}")
    with pg_admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')


def pg_drop_database(dbname: str) -> None:
    with pg_admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def pg_facts() -> dict[str, str]:
    with pg_admin_connect() as conn:
        facts = {"version": conn.execute("SELECT version()").fetchone()[0]}
        for name in (
            "server_version",
            "max_connections",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "commit_delay",
        ):
            facts[name] = conn.execute(f"SHOW {name}").fetchone()[0]
    return facts


def redis_client(db: int) -> Any:
    import redis

    if db not in (10, 11, 12):
        raise ValueError("the benchmarks use Redis DB 10-12 only")
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)


def redis_flush(db: int) -> None:
    redis_client(db).flushdb()


def wait_for_services(timeout: float = 120.0) -> None:
    """Wait until PostgreSQL and Redis answer (they may be restarting)."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        try:
            redis_client(BROKER_DB).ping()
            with pg_admin_connect() as conn:
                conn.execute("SELECT 1")
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            if not warned:
                log(f"waiting for PostgreSQL and Redis ({type(exc).__name__}: {exc})")
                warned = True
            time.sleep(1.0)


def services_fingerprint() -> tuple[str, str]:
    """(Redis run id, PostgreSQL start time): a change means a service restarted in between,
    which voids a measurement (queued messages lost, connections dropped)."""
    run_id = str(redis_client(BROKER_DB).info("server").get("run_id", "?"))
    with pg_admin_connect() as conn:
        started = str(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0])
    return run_id, started


def redis_version() -> str:
    return str(redis_client(BROKER_DB).info("server").get("redis_version", "?"))


# --- Environment for Django and real processes -------------------------------------------------


@dataclass
class BenchEnv:
    dbname: str
    var_dir: Path
    extra: dict[str, str]

    def as_dict(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": database_url(self.dbname),
                "DB_CONN_MAX_AGE": "600",
                "CELERY_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
                "CACHE_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{CACHE_DB}",
                "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production",
                "DJANGO_DEBUG": "false",
                # As behind a TLS-terminating proxy: requests carry X-Forwarded-Proto: https
                # (without it, production settings redirect plain HTTP to HTTPS).
                "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
                "DJANGO_SETTINGS_MODULE": "mpesa_project.settings",
                "VAR_DIR": str(self.var_dir),
                "LOG_LEVEL": "warning",
                "MPESA_ENV": "simulator",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        env.update(self.extra)
        return env


def make_env(dbname: str, **extra: str) -> BenchEnv:
    """The environment, with a temporary VAR_DIR (process logs, request files) removed at
    exit unless BENCH_KEEP_VAR is set."""
    var_dir = Path(tempfile.mkdtemp(prefix="bench-mpesa-var-"))
    if not os.environ.get("BENCH_KEEP_VAR"):
        atexit.register(shutil.rmtree, var_dir, True)
    return BenchEnv(dbname=dbname, var_dir=var_dir, extra=dict(extra))


def django_setup(env: BenchEnv) -> None:
    """Configure Django in this process against the benchmark database (once per process)."""
    import django

    for key, value in env.as_dict().items():
        if key not in os.environ or os.environ[key] != value:
            os.environ[key] = value
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    django.setup()


def django_close_connections() -> None:
    from django.db import connections

    connections.close_all()


def migrate(env: BenchEnv) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO_ROOT,
        env=env.as_dict(),
        check=True,
    )


# --- Seeding -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededPayment:
    token: str
    checkout_request_id: str
    merchant_request_id: str
    amount: Decimal
    receipt: str
    phone: str


def seed_pending_payments(count: int, *, via_services: int = 100) -> list[SeededPayment]:
    """``count`` PENDING payments, each with its own callback token, as the STK flow leaves
    them after Daraja accepted the push. The first ``via_services`` go through the real
    services (``payment_create`` + ``payment_transition``); the rest are bulk-inserted with the
    same rows and events, for speed."""
    import secrets

    from django.conf import settings
    from django.db import transaction

    from core.models import hash_secret
    from daraja.client import PAYBILL, TILL
    from payments.models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
    from payments.services import payment_create, payment_transition

    transaction_type = TILL if settings.MPESA_TRANSACTION_TYPE == "till" else PAYBILL
    seeded: list[SeededPayment] = []
    for index in range(count):
        seeded.append(
            SeededPayment(
                token=secrets.token_urlsafe(32),
                checkout_request_id=f"ws_CO_BENCH{index:010d}",
                merchant_request_id=f"bench-{index:010d}",
                amount=Decimal(10 + index % 990),
                receipt=f"BNC{index:07d}",
                phone=f"2547{index % 100000000:08d}",
            )
        )
    for position in range(min(via_services, count)):
        item = seeded[position]
        payment, token = payment_create(
            client=None,
            phone_number=item.phone,
            amount=item.amount,
            account_reference="BENCH",
            description="Benchmark",
        )
        # payment_create makes its own token (only its hash is stored): keep the one returned.
        seeded[position] = item = SeededPayment(
            token=token,
            checkout_request_id=item.checkout_request_id,
            merchant_request_id=item.merchant_request_id,
            amount=item.amount,
            receipt=item.receipt,
            phone=item.phone,
        )
        ids = {
            "merchant_request_id": item.merchant_request_id,
            "checkout_request_id": item.checkout_request_id,
        }
        payment_transition(
            payment=payment,
            to_status=PaymentStatus.PENDING,
            source=EventSource.DARAJA,
            reason="Success. Request accepted for processing",
            evidence=ids,
            fields=ids,
        )
    rest = seeded[via_services:]
    batch = 2000
    for start in range(0, len(rest), batch):
        chunk = rest[start : start + batch]
        payments = [
            Payment(
                amount=item.amount,
                phone_number=item.phone,
                account_reference="BENCH",
                description="Benchmark",
                transaction_type=transaction_type,
                status=PaymentStatus.PENDING,
                merchant_request_id=item.merchant_request_id,
                checkout_request_id=item.checkout_request_id,
                callback_token_hash=hash_secret(item.token),
            )
            for item in chunk
        ]
        events: list[PaymentEvent] = []
        for payment, item in zip(payments, chunk, strict=True):
            events.append(
                PaymentEvent(
                    payment=payment,
                    kind=EventKind.CREATED,
                    to_status=PaymentStatus.INITIATED,
                    source=EventSource.API,
                    evidence={"amount": str(item.amount), "account_reference": "BENCH"},
                )
            )
            events.append(
                PaymentEvent(
                    payment=payment,
                    kind=EventKind.TRANSITION,
                    from_status=PaymentStatus.INITIATED,
                    to_status=PaymentStatus.PENDING,
                    source=EventSource.DARAJA,
                    reason="Success. Request accepted for processing",
                    evidence={
                        "merchant_request_id": item.merchant_request_id,
                        "checkout_request_id": item.checkout_request_id,
                    },
                )
            )
        with transaction.atomic():
            Payment.objects.bulk_create(payments)
            PaymentEvent.objects.bulk_create(events)
    return seeded


def success_body(item: SeededPayment) -> bytes:
    """A real-shaped STK success callback for this payment (amount, receipt, ids match)."""
    from testsupport import stk_success_body

    return stk_success_body(
        checkout_request_id=item.checkout_request_id,
        merchant_request_id=item.merchant_request_id,
        amount=str(item.amount),
        receipt=item.receipt,
        phone=int(item.phone),
    )


def callback_path(item: SeededPayment) -> str:
    return f"/payments/callback/{item.token}/"


def vacuum_analyze(dbname: str) -> None:
    import psycopg

    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True
    ) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


# --- Processes ---------------------------------------------------------------------------------


def start_process(
    args: Sequence[str], *, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start a process in its own session (so it and its children can be stopped together)."""
    handle = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen(
        list(args),
        cwd=REPO_ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 20.0) -> None:
    """SIGTERM the process group we started (by its id), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


# --- CPU accounting ----------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def nproc() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class ProcCpu:
    comm: str
    ppid: int
    own: float  # CPU seconds (user + system) of the process itself
    children: float  # CPU seconds of its children that exited and were reaped
    started: int  # clock ticks after boot: tells a reused pid from the same process


def _stat_fields(pid: int) -> ProcCpu | None:
    """The CPU counters of a live process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcCpu(
        comm=comm,
        ppid=int(fields[1]),
        own=(int(fields[11]) + int(fields[12])) / _CLK_TCK,
        children=(int(fields[13]) + int(fields[14])) / _CLK_TCK,
        started=int(fields[19]),
    )


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _all_cpu() -> dict[int, ProcCpu]:
    snapshot = {}
    for pid in _all_pids():
        info = _stat_fields(pid)
        if info:
            snapshot[pid] = info
    return snapshot


def process_tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, info in _all_cpu().items():
        children.setdefault(info.ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU of these processes and of their children that already exited."""
    total = 0.0
    for pid in pids:
        info = _stat_fields(pid)
        if info:
            total += info.own + info.children
    return total


def pids_named(*names: str) -> set[int]:
    return {pid for pid, info in _all_cpu().items() if info.comm in names}


def _postgres_database(pid: int) -> str | None:
    """The database a PostgreSQL process works for, from its process title
    ("postgres: 15/main: user dbname 127.0.0.1(5555) idle", "...: autovacuum worker dbname");
    None for the server's own processes (postmaster, checkpointer, WAL writer, ...)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    parts = title.strip().split(": ", 2)
    if len(parts) < 3:
        return None
    words = parts[2].split()
    if parts[2].startswith("autovacuum worker") and len(words) >= 3:
        return words[2]
    if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
        return words[1]
    return None


def postgres_pids_for(dbname: str) -> Callable[[], set[int]]:
    """PostgreSQL's processes that work for ``dbname`` or for the whole server; backends of
    other databases (other workloads) are left out, so their CPU shows as "other".
    Backends that exit in the window are counted through the postmaster, whoever they
    served."""

    def resolve() -> set[int]:
        return {pid for pid in pids_named("postgres") if _postgres_database(pid) in (None, dbname)}

    return resolve


def redis_pids() -> set[int]:
    return pids_named("redis-server")


def _proc_stat() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    fields = _proc_stat()
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return float(total - idle), float(total)


_STAT_NAMES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop(), the whole
    machine's utilisation (with its user/system/softirq/steal split) and the top processes.

    A group's CPU includes what its processes' children used and exited with (reaped), so
    that short-lived processes count: a PostgreSQL backend that lives for one connection is
    reaped by the postmaster, which is in the ``postgres`` group. Groups are re-resolved at
    stop(): processes started in between (backends, forked workers) count from zero."""

    def __init__(
        self, groups: dict[str, Callable[[], set[int]]], *, postgres_db: str | None = None
    ) -> None:
        """``postgres_db``: the benchmark's database. The ``postgres`` group then loses the CPU
        of other databases' backends that exited in the window (seen by a sampler every
        0.2 s; the postmaster reaps them with ours), which is counted as other processes'."""
        self.groups = groups
        self.postgres_db = postgres_db
        self.before: dict[int, ProcCpu] = {}
        self.stat_before: list[int] = []
        self.started = 0.0
        self._foreign: dict[int, tuple[int, float, float]] = {}  # pid: (started, first, last)
        self._stop_sampler = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        self.before = _all_cpu()
        self.stat_before = _proc_stat()
        self.started = time.monotonic()
        if self.postgres_db:
            self._foreign = {}
            self._stop_sampler.clear()
            self._sample_foreign()
            self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
            self._sampler.start()

    def _sample_loop(self) -> None:
        while not self._stop_sampler.wait(0.2):
            self._sample_foreign()

    def _sample_foreign(self) -> None:
        for pid in pids_named("postgres"):
            database = _postgres_database(pid)
            if database is None or database == self.postgres_db:
                continue
            info = _stat_fields(pid)
            if info is None:
                continue
            known = self._foreign.get(pid)
            if known is None or known[0] != info.started:
                before = self.before.get(pid)
                first = before.own if before and before.started == info.started else 0.0
                self._foreign[pid] = (info.started, first, info.own)
            else:
                self._foreign[pid] = (known[0], known[1], info.own)

    def _foreign_exited(self, after: dict[int, ProcCpu]) -> float:
        if self._sampler is None:
            return 0.0
        self._stop_sampler.set()
        self._sampler.join()
        self._sampler = None
        return sum(
            last - first
            for pid, (started, first, last) in self._foreign.items()
            if pid not in after or after[pid].started != started
        )

    def _used(self, pid: int, after: dict[int, ProcCpu], *, children: bool) -> float:
        now = after.get(pid)
        if now is None:
            return 0.0
        then = self.before.get(pid)
        # A kernel worker's name changes with its work item: the start time identifies it.
        if then is None or then.started != now.started:
            then = ProcCpu(now.comm, now.ppid, 0.0, 0.0, 0)
        used = now.own - then.own
        if children:
            used += now.children - then.children
        return used

    def stop(self) -> dict[str, Any]:
        after = _all_cpu()
        stat = _proc_stat()
        elapsed = time.monotonic() - self.started
        result: dict[str, Any] = {"elapsed_s": round(elapsed, 3)}
        foreign = self._foreign_exited(after)
        for name, resolve in self.groups.items():
            used = sum(self._used(pid, after, children=True) for pid in resolve())
            if name == "postgres" and self.postgres_db:
                used = max(0.0, used - foreign)
                result["postgres_other_databases_exited_cpu_s"] = round(foreign, 2)
            result[f"{name}_cpu_s"] = round(used, 2)
        delta = [b - a for a, b in zip(self.stat_before, stat, strict=False)][:8]
        total = sum(delta)
        busy = total - delta[3] - delta[4]
        result["machine_busy_pct"] = round(100.0 * busy / total, 1) if total else 0.0
        result["machine_cpu_s"] = round(busy / _CLK_TCK, 2)
        result["machine_split_s"] = {
            name: round(value / _CLK_TCK, 2)
            for name, value in zip(_STAT_NAMES, delta, strict=False)
            if name not in ("idle", "nice")
        }
        # Kernel threads (children of kthreadd, pid 2): writeback, block I/O, RCU. They work
        # for every process (fsync-heavy commits mostly), so they are the kernel's, not
        # another workload's. (Interrupt time is charged to whichever process was running.)
        kernel = sum(
            self._used(pid, after, children=False)
            for pid, info in after.items()
            if pid == 2 or info.ppid == 2
        )
        result["kernel_cpu_s"] = round(kernel, 2)
        by_name: dict[str, float] = {}
        for pid, info in after.items():
            used = self._used(pid, after, children=False)
            reaped = self._used(pid, after, children=True) - used
            if used > 0:
                by_name[info.comm] = by_name.get(info.comm, 0.0) + used
            if reaped > 0:
                key = f"children of {info.comm}"
                by_name[key] = by_name.get(key, 0.0) + reaped
        top = sorted(by_name.items(), key=lambda item: -item[1])[:8]
        result["top_processes_cpu_s"] = {comm: round(used, 2) for comm, used in top}
        return result


def other_cpu(cpu: dict[str, Any], count: int, *, ours: Iterable[str]) -> None:
    """Add ``other_cpu_s`` (machine CPU used neither by the measured groups ``ours`` nor by
    the kernel's threads: other processes on the machine) and ``other_pct``
    (of the machine's capacity in the window) to a CpuMeter result. Another workload running
    tests on the same cores shows up here; a run with a high share is not clean."""
    used = sum(float(cpu.get(f"{name}_cpu_s", 0.0)) for name in (*ours, "kernel"))
    cpu["other_cpu_s"] = round(cpu["machine_cpu_s"] - used, 2)
    capacity = count * float(cpu["elapsed_s"])
    cpu["other_pct"] = round(100.0 * cpu["other_cpu_s"] / capacity, 1) if capacity else 0.0


def busy_pct_over(seconds: float) -> float:
    busy0, total0 = machine_busy()
    time.sleep(seconds)
    busy1, total1 = machine_busy()
    return 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def wait_for_idle(*, threshold_pct: float = 10.0, timeout: float = 180.0) -> float:
    """Wait until the machine is quiet (other workloads distort every number);
    returns the last busy percentage seen, and warns when the wait timed out."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        busy = busy_pct_over(1.0)
        if busy <= threshold_pct:
            return busy
        if time.monotonic() > deadline:
            log(f"WARNING: machine still {busy:.0f}% busy with other work; measuring anyway")
            return busy
        if not warned:
            log(f"machine {busy:.0f}% busy with other work; waiting for it to be idle")
            warned = True


def pg_sessions(dbname: str) -> int:
    """Connections ever opened to ``dbname`` (pg_stat_database.sessions, PostgreSQL 14+)."""
    with pg_admin_connect() as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (dbname,)
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else -1


# --- Machine facts -----------------------------------------------------------------------------


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def machine_facts() -> dict[str, Any]:
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    commit = _git("rev-parse", "--short", "HEAD")
    if commit == "?":
        # A snapshot of the tree (git archive) has no .git: say which commit it was made from.
        commit = os.environ.get("BENCH_SOURCE_COMMIT", "?")
        dirty = ""
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": nproc(),
        "memory_gib": _mem_total_gib(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_facts(),
        "redis": redis_version(),
        "django": _package_version("Django"),
        "gunicorn": _package_version("gunicorn"),
        "celery": _package_version("celery"),
        "psycopg": _package_version("psycopg"),
        "git_commit": commit,
        "git_modified_files": len(dirty.splitlines()) if dirty and dirty != "?" else 0,
    }


def print_facts(facts: dict[str, Any]) -> None:
    pg = facts["postgresql"]
    print(f"date:        {facts['date_utc']}")
    print(f"machine:     nproc={facts['nproc']}, {facts['memory_gib']} GiB, {facts['cpu_model']}")
    print(f"kernel:      {facts['kernel']}; Python {facts['python']}")
    print(
        f"postgresql:  {pg['server_version']} (synchronous_commit={pg['synchronous_commit']}, "
        f"fsync={pg['fsync']}, shared_buffers={pg['shared_buffers']})"
    )
    print(f"redis:       {facts['redis']}")
    print(
        f"versions:    Django {facts['django']}, gunicorn {facts['gunicorn']}, "
        f"Celery {facts['celery']}, psycopg {facts['psycopg']}"
    )
    print(
        f"code:        git {facts['git_commit']}"
        + (
            f" + {facts['git_modified_files']} modified files (uncommitted)"
            if facts["git_modified_files"]
            else ""
        )
    )
