"""One zone for every log: the application's lines, Celery's, gunicorn's and runserver's all start
with the time in East Africa Time, seconds and offset written out (2026-11-27T13:30:45.123+03:00),
whatever the machine's own zone."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from testsupport import REPO_ROOT, celery_beat, stop_process, subprocess_env, wait_for

EAT_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+03:00 [a-z]+ \S+ request_id=")

# The machine's zone must not matter: run the processes in a zone far from Nairobi.
FAR_ZONE = "America/Los_Angeles"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_lines(text: str) -> list[str]:
    """The lines a logger wrote (a traceback's lines belong to the line before them)."""
    return [line for line in text.splitlines() if re.match(r"^\S*\d{4}-\d{2}-\d{2}[T ]", line)]


def test_application_log_lines_are_in_east_africa_time():
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('payments').warning('hello from 0712345678')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="mpesa_project.settings", TZ=FAR_ZONE),
        capture_output=True,
        text=True,
        timeout=60,
    )
    (line,) = [line for line in result.stderr.splitlines() if "hello" in line]
    assert EAT_LINE.match(line), line
    assert "0712345678" not in line  # still masked


@pytest.mark.django_db(transaction=True)
def test_celery_log_lines_are_in_east_africa_time(tmp_path: Path):
    log = tmp_path / "beat.log"
    with celery_beat(log_path=log, TZ=FAR_ZONE):
        wait_for(lambda: "beat: Starting" in log.read_text(), timeout=60)
    lines = _log_lines(log.read_text())
    assert lines and all(EAT_LINE.match(line) for line in lines), lines


def _serve(command: list[str], tmp_path: Path, **env: str) -> str:
    """Start a web server, make one request, stop it; return everything it printed."""
    port = _free_port()
    out = tmp_path / "server.log"
    with open(out, "wb") as f:
        process = subprocess.Popen(
            [arg.replace("{port}", str(port)) for arg in command],
            cwd=REPO_ROOT,
            env=subprocess_env(TZ=FAR_ZONE, GUNICORN_BIND=f"127.0.0.1:{port}", **env),
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def answered() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health/", timeout=5).status_code > 0
            except httpx.TransportError:
                return False

        wait_for(answered, timeout=60)
        wait_for(lambda: "/health/" in out.read_text(), timeout=30)
    finally:
        stop_process(process)  # type: ignore[arg-type]
    return out.read_text()


@pytest.mark.django_db(transaction=True)
def test_gunicorn_log_lines_are_in_east_africa_time(tmp_path: Path):
    text = _serve(
        [sys.executable, "-m", "gunicorn", "mpesa_project.wsgi", "--workers", "1"],
        tmp_path,
        DJANGO_DEBUG="false",
    )
    lines = _log_lines(text)
    assert any("Listening at" in line for line in lines), text  # gunicorn's own lines
    assert any("/health/" in line for line in lines), text  # and its access lines
    assert all(EAT_LINE.match(line) for line in lines), text


@pytest.mark.django_db(transaction=True)
def test_runserver_log_lines_are_in_east_africa_time(tmp_path: Path):
    text = _serve(
        [sys.executable, "manage.py", "runserver", "127.0.0.1:{port}", "--noreload"],
        tmp_path,
        DJANGO_DEBUG="true",
    )
    (line,) = [line for line in text.splitlines() if "/health/" in line]
    assert EAT_LINE.match(line), text
