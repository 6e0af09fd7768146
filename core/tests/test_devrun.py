"""`python -m core.devrun Procfile` (what `make run` starts) on small Procfiles of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testsupport import REPO_ROOT


def _devrun(procfile: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.devrun", str(procfile)],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_process_exiting_stops_the_others_and_fails(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"crash: {sys.executable} -c 'print(\"bye\"); raise SystemExit(3)'\n"
        f"steady: {sys.executable} -c 'import time; time.sleep(600)'\n"
    )
    result = _devrun(procfile)  # returns only once the steady process was stopped too
    assert result.returncode == 1
    assert "crash exited with 3" in result.stdout
    assert "| bye" in result.stdout  # each line prefixed with the time and the process name
    assert "everything stopped" in result.stdout


def test_an_unset_variable_is_named(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: echo ${NOT_SET_ANYWHERE}\n")
    result = _devrun(procfile)
    assert result.returncode != 0
    assert "NOT_SET_ANYWHERE" in result.stderr


def test_a_program_that_cannot_be_run_is_named_and_the_others_are_stopped(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"steady: {sys.executable} -c 'import time; time.sleep(600)'\n"
        "missing: no-such-program-anywhere --flag\n"
    )
    result = _devrun(procfile)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot start missing (no-such-program-anywhere)" in result.stdout
    assert "everything stopped" in result.stdout


def test_output_without_newlines_is_printed_in_pieces(tmp_path):
    procfile = tmp_path / "Procfile"
    # 1 MiB with no newline, then a pause (the process is still running, so the output is
    # printed as it arrives, not at the end), then a newline and an exit.
    procfile.write_text(
        f'blob: {sys.executable} -c \'import sys, time; sys.stdout.write("x" * 1048576); '
        'sys.stdout.flush(); time.sleep(1); print(); print("end")\'\n'
    )
    result = _devrun(procfile)
    assert "| end" in result.stdout
    blob_lines = [line for line in result.stdout.splitlines() if "| x" in line]
    assert sum(line.count("x") for line in blob_lines) == 1048576
    assert max(len(line) for line in blob_lines) <= 64 * 1024 + 100
