"""The reconciliation engines by name, the name a run records (``ReconciliationRun.engine``):
``postgresql``, set-based in the database, and ``python``, the reference it is held equal to,
which runs on any database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..report import EngineReport
from .postgresql.run import run_postgresql
from .python import run_python


@dataclass(frozen=True)
class Engine:
    # Called inside the import's transaction with the statement, its run, the parsed file, the
    # time window, the phase timer, ``reparse`` (the file read again) and ``read`` (the rows
    # read ahead, for an engine that reads first).
    reconcile: Callable[..., EngineReport]
    # The database vendors it runs on; None: any.
    databases: frozenset[str] | None
    # Reads the rows before the import's transaction: on SQLite that transaction takes the
    # database's write lock, which every callback needs to be stored.
    reads_first: bool


ENGINES: dict[str, Engine] = {
    "postgresql": Engine(
        reconcile=run_postgresql, databases=frozenset({"postgresql"}), reads_first=False
    ),
    "python": Engine(reconcile=run_python, databases=None, reads_first=True),
}


def engine_default(vendor: str) -> str:
    """The engine a run uses on ``vendor`` when none is asked for."""
    return "postgresql" if vendor == "postgresql" else "python"


def engine_available(name: str, vendor: str) -> bool:
    engine = ENGINES.get(name)
    return engine is not None and (engine.databases is None or vendor in engine.databases)
