"""What a statement may cost to read (:class:`ParseLimits`), the errors that refuse a file,
and the bounded row iterator every format is read through (:class:`LimitedRows`)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings


class StatementFormatError(ValueError):
    """The file as a whole cannot be read (unknown format, no header row, broken file)."""


class StatementLimitError(StatementFormatError):
    """The file is over one of the reading limits (:class:`ParseLimits`): refused, whatever
    it declares about itself."""


# How far down the file the header row may be (the G2 preamble is 6 rows).
HEADER_SEARCH_ROWS = 60
MAX_ROW_CELLS = 200

# --- Limits ------------------------------------------------------------------------------------

# A number written with an exponent beyond this (1E+100000000) is not expanded into its
# digits: ``format(value, "f")`` would write a hundred million of them.
MAX_DECIMAL_EXPONENT = 64
# Members of a ZIP (XLSX) under this size are not checked for their compression ratio: small
# XML parts compress far better than a sheet.
RATIO_CHECK_MIN_BYTES = 1024 * 1024
# An XLSX's shared strings are read into memory at once: they may use this fraction of
# RECONCILIATION_MAX_DECOMPRESSED_BYTES (a sheet is read as a stream).
SHARED_STRINGS_SHARE = 8
# The rows' progress is reported every this many rows.
PROGRESS_EVERY_ROWS = 1000


@dataclass(frozen=True)
class ParseLimits:
    """What a statement may cost to read; a file over any limit is refused, naming it. The
    defaults are the settings' (README, Security)."""

    max_rows: int = 2_000_000
    max_columns: int = 256
    max_cell_chars: int = 32_767
    max_decompressed_bytes: int = 512 * 1024 * 1024
    max_compression_ratio: int = 100
    time_limit_seconds: float = 600.0
    reject_max_chars: int = 2000

    @classmethod
    def from_settings(cls) -> ParseLimits:
        return cls(
            max_rows=settings.RECONCILIATION_MAX_ROWS,
            max_columns=settings.RECONCILIATION_MAX_COLUMNS,
            max_cell_chars=settings.RECONCILIATION_MAX_CELL_CHARS,
            max_decompressed_bytes=settings.RECONCILIATION_MAX_DECOMPRESSED_BYTES,
            max_compression_ratio=settings.RECONCILIATION_MAX_COMPRESSION_RATIO,
            time_limit_seconds=settings.RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS,
            reject_max_chars=settings.RECONCILIATION_REJECT_MAX_CHARS,
        )

    def over_time(self) -> StatementLimitError:
        return StatementLimitError(
            f"reading the statement took over {self.time_limit_seconds:g} seconds "
            "(RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS)"
        )


class Deadline:
    """The time limit, checked as rows are read (and by :func:`time_limit` between them)."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.at = time.monotonic() + limits.time_limit_seconds

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise self.limits.over_time()


@contextmanager
def time_limit(limits: ParseLimits) -> Iterator[None]:
    """Interrupts whatever runs longer than the time limit, even one call into a library
    that reads a whole sheet at once (xlrd, openpyxl's shared strings): a SIGALRM timer in
    the main thread (a Celery prefork worker's, the command's). Elsewhere, or when a timer is
    already running, the rows' own checks are the limit."""
    usable = (
        threading.current_thread() is threading.main_thread()
        and hasattr(signal, "setitimer")
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise limits.over_time()

    previous = signal.signal(signal.SIGALRM, expired)
    # Then again every 0.1 s: an exception raised where Python cannot pass it on (in a
    # finaliser run by the garbage collector) is lost, and one timer would be spent.
    signal.setitimer(signal.ITIMER_REAL, max(limits.time_limit_seconds, 0.001), 0.1)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cut_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} characters cut]"


def reject_record(reason: str, cells: list[str], limit: int) -> tuple[str, list[str]]:
    """What a reject keeps: its reason, and its first cells up to ``limit`` characters in
    all, what is cut marked as cut (one huge cell must not be stored twice, whole)."""
    kept: list[str] = []
    left = limit
    for index, cell in enumerate(cells):
        if left <= 0 or index >= MAX_ROW_CELLS:
            kept.append(f"… [{len(cells) - index} more cells cut]")
            break
        kept.append(cut_text(cell, left))
        left -= len(cell)
    return cut_text(reason, limit), kept


class LimitedRows:
    """A file's rows, stopped at the limits: the row number (a spreadsheet's own, which may
    jump), the time, and for spreadsheets and JSON, whose cells can be far larger than the
    bytes that declare them, the number of cells and their length. Counts the rows read and
    reports them every :data:`PROGRESS_EVERY_ROWS` rows."""

    def __init__(
        self,
        rows: Iterator[tuple[int, list[str]]],
        limits: ParseLimits,
        deadline: Deadline,
        *,
        check_cells: bool,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.rows = rows
        self.limits = limits
        self.deadline = deadline
        self.check_cells = check_cells
        self.progress = progress
        self.count = 0

    def __iter__(self) -> LimitedRows:
        return self

    def __next__(self) -> tuple[int, list[str]]:
        try:
            number, cells = next(self.rows)
        except StopIteration:
            # A short file read entirely in one library call (a spreadsheet) is checked once
            # at its end, when no timer interrupted it (another one was running).
            self.deadline.check()
            raise
        self.count += 1
        limits = self.limits
        if number > limits.max_rows or self.count > limits.max_rows:
            raise StatementLimitError(
                f"the statement has more than {limits.max_rows} rows "
                f"(RECONCILIATION_MAX_ROWS; row {number} reached): split it"
            )
        if self.check_cells:
            check_row_cells(number, cells, limits)
        if self.count % PROGRESS_EVERY_ROWS == 0:
            self.deadline.check()
            if self.progress is not None:
                self.progress(self.count)
        return number, cells


def check_row_cells(number: int, cells: list[Any], limits: ParseLimits) -> None:
    if len(cells) > limits.max_columns:
        raise StatementLimitError(
            f"row {number} has {len(cells)} columns, over the limit of {limits.max_columns} "
            "(RECONCILIATION_MAX_COLUMNS)"
        )
    for column, cell in enumerate(cells, 1):
        if isinstance(cell, str) and len(cell) > limits.max_cell_chars:
            raise_long_cell(number, column, len(cell), limits)


def raise_long_cell(number: int, column: int, length: int, limits: ParseLimits) -> None:
    raise StatementLimitError(
        f"row {number}, column {column} holds {length} characters, over the limit of "
        f"{limits.max_cell_chars} (RECONCILIATION_MAX_CELL_CHARS)"
    )
