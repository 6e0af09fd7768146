"""Real processes for tests: Celery workers and beat, the web server, a private Redis, and
the shared PostgreSQL and Redis stopped and started for fault tests."""

from __future__ import annotations

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

from .daraja import REPO_ROOT


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


def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, "-m", "fast"]
        if action != "start"
        else ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def stop_postgres() -> None:
    """Stop the local cluster (fast shutdown: open connections are cut)."""
    _pg_ctl("stop")


def start_postgres() -> None:
    _pg_ctl("start")
    wait_for(postgres_up, timeout=60)


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
