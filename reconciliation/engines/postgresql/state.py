"""One PostgreSQL run's state: the statement's table names, the query parameters and the
report the steps fill in, with the SQL conditions they share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from ...formats.parsed import ParsedStatement
from ...models import LINE_ID_FACTOR, ReconciliationRun, Statement
from ...report import ZERO, EngineReport, Timer
from ..partitions import partition_names
from .fragments import CREATION_SLACK
from .writer import LineWriter


class PostgresRun:
    """One statement's run, shared by its steps (:mod:`.load`, :mod:`.match`, :mod:`.breaks`,
    in the order :func:`.run.run_postgresql` calls them): table names and parameters."""

    def __init__(
        self,
        *,
        statement: Statement,
        run: ReconciliationRun,
        parsed: ParsedStatement,
        window_seconds: int,
        timer: Timer,
        reparse: Callable[[], ParsedStatement] | None,
    ) -> None:
        self.statement = statement
        self.parsed = parsed
        self.layout = parsed.layout
        self.timer = timer
        self.reparse = reparse
        sid = int(statement.pk)
        self.lines, self.matches = partition_names(sid)
        self.exc = f"reconciliation_exc_{sid}"
        self.cand = f"reconciliation_cand_{sid}"
        self.repeats = f"reconciliation_repeats_{sid}"
        self.unclaimed = f"reconciliation_unclaimed_{sid}"
        self.claimed_out = ZERO
        self.scope = "AND p.client_id = %(client)s" if statement.client_id is not None else ""
        self.params: dict[str, Any] = {
            "sid": sid,
            "run": run.pk,
            "window": dt.timedelta(seconds=window_seconds),
            "slack": CREATION_SLACK,
        }
        if statement.client_id is not None:
            self.params["client"] = statement.client_id
        self.writer = LineWriter(
            parsed.layout, base=sid * LINE_ID_FACTOR, plain_text=parsed.plain_text
        )
        self.report = EngineReport()

    def execute(self, cursor: Any, sql: str, params: dict[str, Any] | None = None) -> None:
        cursor.execute(sql, params)

    def created_around(self) -> str:
        """SQL: payment ``p`` was created around the period (:meth:`Period.around`), so that
        the join hashes a month of payments, not their whole history."""
        if self.report.period is None:
            return ""
        return "AND p.created_at >= %(start)s - %(slack)s AND p.created_at < %(end)s + %(slack)s"

    def in_period(self, alias: str = "p") -> str:
        """SQL: payment ``alias``'s time is in the statement period (false without one)."""
        if self.report.period is None:
            return "false"
        time = f"coalesce({alias}.transaction_date, {alias}.created_at)"
        return f"({time} >= %(start)s AND {time} < %(end)s)"
