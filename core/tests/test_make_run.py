"""`make run` stops completely however it is stopped: Ctrl-C in its terminal, or a terminal closing
or a service manager (SIGTERM to its process group, SIGKILL two seconds later), or its launcher
dying alone. Nothing it started may be left running: a worker left behind keeps consuming the
next run's tasks with old code.

Each run gets free ports and its own VAR_DIR (its database, broker folder and schedule); a process
belongs to the run when that VAR_DIR is in its environment, which every process of the run
inherits, whatever its parent became.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from testsupport import REPO_ROOT, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("make") is None, reason="needs make"),
    pytest.mark.skipif(
        not (REPO_ROOT / ".venv" / ".installed-run").exists(),
        reason="make run needs the project's .venv (make install)",
    ),
]

READY = (
    "celery@",
    " ready.",
    "beat: Starting",
    "Starting development server",
    "Daraja simulator",
    "demo webhook receiver on",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_processes(var_dir: Path) -> list[int]:
    """Every living process whose environment carries this run's VAR_DIR."""
    marker = b"\0VAR_DIR=" + str(var_dir).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = b"\0" + Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ:
            found.append(int(entry))
    return found


def _describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "?"
        out.append(f"{pid}: {cmd}")
    return out


@dataclass
class Run:
    make: subprocess.Popen[bytes]
    log: Path
    var_dir: Path
    port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("make-run") / "var"


@pytest.fixture
def run(var_dir: Path, tmp_path: Path) -> Iterator[Run]:
    env = {
        key: value
        for key, value in os.environ.items()
        # The run uses its own embedded database and broker, never the suite's services.
        if not key.startswith(("DATABASE_URL", "CELERY_", "CACHE_URL", "MPESA_", "DEMO_"))
    }
    env.update(VAR_DIR=str(var_dir), DJANGO_DEBUG="true", PYTHONUNBUFFERED="1")
    log = tmp_path / "make-run.log"
    port = _free_port()
    with open(log, "wb") as out:
        make = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "-C",
                str(REPO_ROOT),
                "run",
                "HOST=127.0.0.1",
                f"PORT={port}",
                f"SIMULATOR_PORT={_free_port()}",
                f"RECEIVER_PORT={_free_port()}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, as a terminal gives a command
        )
    started = Run(make, log, var_dir, port)
    try:
        wait_for(lambda: all(m in started.output() for m in READY) or make.poll(), timeout=120)
        assert make.poll() is None, started.output()
        yield started
    finally:
        for pid in run_processes(var_dir):  # leave nothing behind, even when a test failed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        make.wait(timeout=30)


def _nothing_left(run: Run, timeout: float) -> None:
    try:
        wait_for(lambda: not run_processes(run.var_dir), timeout=timeout)
    except AssertionError:
        left = _describe(run_processes(run.var_dir))
        raise AssertionError(f"still running: {left}\n{run.output()}") from None


def test_ctrl_c_stops_everything_cleanly(run):
    os.killpg(run.make.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
    run.make.wait(timeout=60)
    _nothing_left(run, timeout=30)
    output = run.output()
    assert "everything stopped" in output, output
    for problem in ("ERROR", "Traceback", "make: ***", "killing"):
        assert problem not in output, output
    assert not re.search(r" (error|critical) \S+ request_id=", output), output  # logged errors
    # make itself dies of the SIGINT it was sent, with no error of its own: the recipe exited 0.
    assert run.make.returncode in (0, -signal.SIGINT)


def test_sigterm_to_the_group_then_sigkill_leaves_nothing(run):
    # A terminal closing or a service manager: SIGTERM to the group, SIGKILL two seconds later
    # (the scenario's own timing: what is still alive then is killed).
    os.killpg(run.make.pid, signal.SIGTERM)
    time.sleep(2)
    try:
        os.killpg(run.make.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # everything had already stopped
    run.make.wait(timeout=30)
    _nothing_left(run, timeout=10)


def test_the_processes_stop_when_the_launcher_is_killed_alone(run):
    launcher = [
        pid
        for pid in run_processes(run.var_dir)
        if b"core.devrun" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(launcher) == 1
    os.kill(launcher[0], signal.SIGKILL)  # the out-of-memory killer, a `kill -9` of the pid
    run.make.wait(timeout=30)
    _nothing_left(run, timeout=30)


def test_a_payment_reaches_the_demo_receiver_signed_and_verified(run):
    # What a newcomer sees: pay with the printed key through the simulator, and the demo
    # receiver gets payment.succeeded and verifies its signature with standardwebhooks.
    key = re.search(r"API key:\s+(\S+)", run.output()).group(1)
    response = httpx.post(
        f"http://127.0.0.1:{run.port}/payments/stk-push/",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "phone_number": "0712345678",
            "amount": 10,
            "account_reference": "E2E",
            "description": "Demo",
        },
        timeout=30,
    )
    assert response.status_code == 201, response.text
    payment_id = response.json()["id"]
    received = run.var_dir / "demo-webhooks.jsonl"

    def succeeded() -> dict | None:
        if not received.exists():
            return None
        for line in received.read_text().splitlines():
            record = json.loads(line)
            if record["object_id"] == payment_id and record["type"] == "payment.succeeded":
                return record
        return None

    record = wait_for(succeeded, timeout=90, interval=0.5)
    assert record["verified"] is True, record
    os.killpg(run.make.pid, signal.SIGINT)
    run.make.wait(timeout=60)
    _nothing_left(run, timeout=30)
