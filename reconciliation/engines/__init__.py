"""The reconciliation engines by name, the name a run records (``ReconciliationRun.engine``):
``postgresql``, set-based in the database, and ``python``, the reference it is held equal to,
which runs on any database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..formats.parsed import ParsedStatement
from ..report import EngineReport
from .postgresql.run import run_postgresql
from .python import read_lines, run_python


@dataclass(frozen=True)
class Engine:
    # Called inside the import's transaction with the statement, its run, the parsed file, the
    # time window, the phase timer, ``reparse`` (the file read again) and ``read`` (the rows
    # read ahead, for an engine that reads first).
    reconcile: Callable[..., EngineReport]
    # The database vendors it runs on; None: any.
    databases: frozenset[str] | None
    # Reads the rows before the import's transaction (its result is ``read``): on SQLite that
    # transaction takes the database's write lock, which every callback needs to be stored.
    read_ahead: Callable[[ParsedStatement], Any] | None


ENGINES: dict[str, Engine] = {
    "postgresql": Engine(
        reconcile=run_postgresql, databases=frozenset({"postgresql"}), read_ahead=None
    ),
    "python": Engine(reconcile=run_python, databases=None, read_ahead=read_lines),
}


def engine_default(vendor: str) -> str:
    """The engine a run uses on ``vendor`` when none is asked for."""
    return "postgresql" if vendor == "postgresql" else "python"


def engine_available(name: str, vendor: str) -> bool:
    engine = ENGINES.get(name)
    return engine is not None and (engine.databases is None or vendor in engine.databases)
