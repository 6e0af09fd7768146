"""`python -m core.supervise` (the worker's restart loop under `make run`): a stop is a stop,
whenever it arrives."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from testsupport import REPO_ROOT, wait_for

# Exits with 3 on its first run (a crash, so the supervisor backs off and restarts it); on any
# later run it sleeps a minute: a worker that keeps running until it is told to stop.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    runs = Path(sys.argv[1])
    count = len(runs.read_text().splitlines()) + 1 if runs.exists() else 1
    with runs.open("a") as f:
        f.write("run\\n")
    if count == 1:
        sys.exit(3)
    time.sleep(60)
    """
)


def _supervise(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    runs = tmp_path / "runs"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    process = subprocess.Popen(
        [sys.executable, "-m", "core.supervise", "--", sys.executable, str(script), str(runs)],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, runs


def _runs(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_a_stop_during_the_restart_back_off_starts_nothing_more(tmp_path):
    process, runs = _supervise(tmp_path)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # written when the back-off (2 s) begins
        assert "restarting in 2s" in line
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert _runs(runs) == 1  # the crashed run only: no new child after the stop
    finally:
        process.kill()
        process.wait()


def test_a_stop_reaches_the_running_child(tmp_path):
    process, runs = _supervise(tmp_path)
    try:
        wait_for(lambda: _runs(runs) == 2, timeout=30)  # the restarted child is running
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 128 + signal.SIGTERM  # the child got SIGTERM, not SIGINT
        assert _runs(runs) == 2
    finally:
        process.kill()
        process.wait()
