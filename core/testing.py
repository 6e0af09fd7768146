"""Test helpers shared by every app's tests: payload builders and real worker processes.

Not imported by production code.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real Daraja payloads captured in the wild, kept outside the repository (the project's shared
# folder beside it, or DARAJA_PAYLOADS_DIR); tests over them skip when they are absent.
REAL_PAYLOADS = Path(
    os.environ.get("DARAJA_PAYLOADS_DIR", REPO_ROOT.parent / "shared" / "daraja" / "payloads")
)


def real_payloads(pattern: str) -> list[Path]:
    """The captured payloads whose names match ``pattern`` (none when the folder is absent)."""
    return sorted(REAL_PAYLOADS.glob(pattern)) if REAL_PAYLOADS.is_dir() else []


def stk_success_body(
    *,
    checkout_request_id: str,
    amount: str | int = 10,
    receipt: str = "UKR1ABCDEF",
    merchant_request_id: str = "f0ab-49c2-ab1d-1f9d840b305512458",
    phone: int | str = 254712345678,
    transaction_date: int | str = 20261127103045,
    balance: str = "no_value",
    envelope: bool = True,
) -> bytes:
    """A success callback in the real shape. ``amount`` as a string is written raw, so
    ``"1.00"`` becomes the JSON number 1.00, as Daraja sends it."""
    items = [
        '{"Name": "Amount", "Value": %s}' % amount,
        '{"Name": "MpesaReceiptNumber", "Value": %s}' % json.dumps(receipt),
    ]
    if balance == "no_value":
        items.append('{"Name": "Balance"}')
    elif balance == "zero":
        items.append('{"Name": "Balance", "Value": 0}')
    items.append('{"Name": "TransactionDate", "Value": %s}' % json.dumps(transaction_date))
    items.append('{"Name": "PhoneNumber", "Value": %s}' % json.dumps(phone))
    inner = (
        '{"MerchantRequestID": %s, "CheckoutRequestID": %s, "ResultCode": 0, '
        '"ResultDesc": "The service request is processed successfully.", '
        '"CallbackMetadata": {"Item": [%s]}}'
        % (json.dumps(merchant_request_id), json.dumps(checkout_request_id), ", ".join(items))
    )
    text = '{"Body": {"stkCallback": %s}}' % inner if envelope else inner
    return text.encode()


def stk_accepted(checkout_request_id: str = "ws_CO_27112026103000123712345678") -> dict[str, str]:
    """Daraja's answer to an accepted STK Push."""
    return {
        "MerchantRequestID": "b18f-4a07-9aff-d6e1fb096b51174446",
        "CheckoutRequestID": checkout_request_id,
        "ResponseCode": "0",
        "ResponseDescription": "Success. Request accepted for processing",
        "CustomerMessage": "Success. Request accepted for processing",
    }


def stk_failure_body(
    *,
    checkout_request_id: str,
    result_code: int | str = 1032,
    result_desc: str = "Request Cancelled by user.",
    merchant_request_id: str = "f0ab-49c2-ab1d-1f9d840b305512889",
) -> bytes:
    return json.dumps(
        {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": merchant_request_id,
                    "CheckoutRequestID": checkout_request_id,
                    "ResultCode": result_code,
                    "ResultDesc": result_desc,
                }
            }
        }
    ).encode()


def database_url_for_subprocess() -> str:
    """A DATABASE_URL pointing other processes at the database this test process uses."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for_subprocess()
    env.setdefault("DJANGO_SECRET_KEY", settings.SECRET_KEY)
    env["VAR_DIR"] = str(settings.VAR_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@contextmanager
def celery_worker(
    *, concurrency: int = 2, log_path: Path | None = None, supervised: bool = False, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery worker` process against the test database and the configured broker
    (``supervised``: under core.supervise, restarted if it exits, as in `make run`)."""
    log_path = log_path or Path(settings.VAR_DIR) / "test-worker.log"
    purge = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "mpesa_project", "purge", "-f"],
        env=subprocess_env(**env),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
    )
    if purge.returncode != 0:
        raise RuntimeError(f"celery purge failed: {purge.stderr.decode()[-2000:]}")
    with open(log_path, "wb") as log:
        supervisor = [sys.executable, "-m", "core.supervise", "--"] if supervised else []
        process = subprocess.Popen(
            [
                *supervisor,
                sys.executable,
                "-m",
                "celery",
                "-A",
                "mpesa_project",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=subprocess_env(**env),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until ``condition()`` is truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)
        value = condition()
    return value


@contextmanager
def celery_beat(*, log_path: Path | None = None, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery beat` process (the sweepers), with its own schedule file."""
    log_path = log_path or Path(settings.VAR_DIR) / "test-beat.log"
    schedule = Path(settings.VAR_DIR) / f"test-beat-schedule-{os.getpid()}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "mpesa_project",
                "beat",
                "--loglevel=INFO",
                f"--schedule={schedule}",
            ],
            env=subprocess_env(**env),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_process(process)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class WebServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextmanager
def web_server(
    *, port: int | None = None, log_path: Path | None = None, **env: str
) -> Iterator[WebServer]:
    """A real web process (``manage.py runserver --noreload``, production settings: DEBUG
    off) on a free port, against the test database. ``env`` adds to or overrides the
    environment. ``port``: one from :func:`free_port` when the caller needs the URL first."""
    port = port or free_port()
    log_path = log_path or Path(settings.VAR_DIR) / f"test-web-{port}.log"
    environment = subprocess_env(
        DJANGO_DEBUG="false",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        **env,
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            env=environment,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_for(
                lambda: process.poll() is not None or _answers(f"{base_url}/health/"),
                timeout=60,
                interval=0.2,
            )
            if process.poll() is not None:
                raise RuntimeError(f"web server exited: {log_path.read_text()[-3000:]}")
            yield WebServer(url=base_url, process=process, log_path=log_path)
        finally:
            stop_process(process)


class PrivateRedis:
    """A redis-server of the test's own on a free port (never the shared one): stopped and
    started again on the same port to make an outage."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.up, timeout=20)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL)
            self.process = None
        wait_for(lambda: not self.up(), timeout=20)


@contextmanager
def private_redis(workdir: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(workdir)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


# --- Service faults (used by the fault-injection tests on a machine whose services they own) ---

REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def redis_up() -> bool:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True, timeout=10
    )
    return result.returncode == 0 and b"PONG" in result.stdout


def stop_redis() -> None:
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"],
        capture_output=True,
        timeout=20,
    )
    wait_for(lambda: not redis_up(), timeout=20)


def start_redis() -> None:
    if redis_up():
        return
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
    subprocess.run(REDIS_START, check=True, capture_output=True, timeout=30)
    wait_for(redis_up, timeout=30)


def postgres_up() -> bool:
    return (
        subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], capture_output=True, timeout=10
        ).returncode
        == 0
    )


def restart_postgres() -> None:
    """Restart the local cluster (fast shutdown: open connections are cut, as in a crash)."""
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    wait_for(postgres_up, timeout=60)
