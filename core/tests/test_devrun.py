"""`python -m core.devrun Procfile` (what `make run` starts) on small Procfiles of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.testing import REPO_ROOT


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
