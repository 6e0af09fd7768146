"""The app graph is one-way, and `make importlint` would notice if it stopped being so.

The contracts (pyproject.toml, [tool.importlinter]) run on a copy of the project's packages:
as they are, they pass; with one import planted that goes up a layer, they fail and name it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = [
    "mpesa_project",
    "core",
    "daraja",
    "events",
    "payments",
    "callbacks",
    "reconciliation",
    "webhooks",
    "simulator",
    "testsupport",
]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            root / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.html", "*.css", "*.js"),
        )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _plant(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: make install-dev installs import-linter")
    return _copy(tmp_path)


def test_the_project_keeps_its_contracts(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_payments_importing_the_inbox_breaks_the_layers(tree: Path) -> None:
    _plant(tree / "payments" / "models.py", "from callbacks.models import InboundCallback  # noqa")
    result = _lint(tree)
    assert result.returncode != 0
    assert "payments is not allowed to import callbacks" in result.stdout


def test_the_inbox_and_reconciliation_stay_independent(tree: Path) -> None:
    _plant(tree / "callbacks" / "selectors.py", "import reconciliation.models  # noqa")
    result = _lint(tree)
    assert result.returncode != 0
    assert "callbacks is not allowed to import reconciliation" in result.stdout


def test_an_import_inside_a_function_counts_too(tree: Path) -> None:
    _plant(
        tree / "core" / "ops.py",
        "def _up() -> None:\n    from payments.models import Payment  # noqa",
    )
    result = _lint(tree)
    assert result.returncode != 0
    assert "core is not allowed to import payments" in result.stdout


def test_the_simulator_imports_no_app(tree: Path) -> None:
    _plant(tree / "simulator" / "engine.py", "import core.logging  # noqa")
    result = _lint(tree)
    assert result.returncode != 0
    assert "simulator is not allowed to import core" in result.stdout


def test_production_code_never_imports_test_support(tree: Path) -> None:
    _plant(
        tree / "payments" / "selectors.py",
        "from testsupport.factories import PaymentFactory  # noqa",
    )
    result = _lint(tree)
    assert result.returncode != 0
    assert "payments is not allowed to import testsupport" in result.stdout
