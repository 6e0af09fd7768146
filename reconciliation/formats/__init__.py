"""Statement parsers: the M-Pesa org portal (G2) statement as CSV, XLSX or XLS, and Daraja Pull
Transactions responses (JSON), read into rows of text cells with a header map and metadata.

One set of rules (``RowReader``) turns a row's text into canonical values or a reason for
rejecting it; nothing is coerced to 0 or to a default date. Cells are text first: numeric
spreadsheet cells become their exact decimal text, never a float amount. See
``docs/reconciliation.md`` and the statement format notes (``docs/statements.md``) for the
quirks handled.

One module per format (:mod:`.g2` CSV, :mod:`.xlsx`, :mod:`.xls`, :mod:`.pull`), over what
they share: the reading limits (:mod:`.limits`), one cell's value (:mod:`.values`), the
columns and the row rules (:mod:`.rows`) and the parsed statement (:mod:`.parsed`). This
module picks the format from the file's first bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..models import StatementFormat
from .g2 import parse_csv
from .limits import Deadline, LimitedRows, ParseLimits, StatementFormatError, StatementLimitError
from .parsed import ParsedStatement, from_grid
from .pull import parse_pull_transactions
from .xls import xls_rows
from .xlsx import xlsx_rows


def sniff_format(data: bytes) -> str:
    """OLE2 magic → XLS, ``PK`` → XLSX, ``{``/``[`` → Pull Transactions JSON, else CSV."""
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return StatementFormat.G2_XLS
    if data.startswith(b"PK\x03\x04"):
        return StatementFormat.G2_XLSX
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        return StatementFormat.PULL_JSON
    if head.lower().startswith((b"<html", b"<?xml", b"<table", b"<!doctype")):
        raise StatementFormatError(
            "the file is an HTML/XML table (a report saved as .xls?); open it in a "
            "spreadsheet and save it as XLSX or CSV"
        )
    return StatementFormat.G2_CSV


def parse_statement(
    data: bytes,
    *,
    limits: ParseLimits | None = None,
    progress: Callable[[int], None] | None = None,
) -> ParsedStatement:
    """The file's format, metadata and layout, and its rows as an iterator, read within
    ``limits`` (the settings' by default): a file over one is refused with
    :class:`StatementLimitError`. ``progress`` is told the number of rows read so far."""
    limits = limits or ParseLimits.from_settings()
    deadline = Deadline(limits)
    file_format = sniff_format(data)

    def limited(rows: Iterator[tuple[int, list[str]]], check_cells: bool) -> LimitedRows:
        return LimitedRows(rows, limits, deadline, check_cells=check_cells, progress=progress)

    if file_format == StatementFormat.G2_XLS:
        return from_grid(file_format, limited(xls_rows(data, limits), True))
    if file_format == StatementFormat.G2_XLSX:
        return from_grid(file_format, limited(xlsx_rows(data, limits), True))
    if file_format == StatementFormat.PULL_JSON:
        parsed = parse_pull_transactions(data)
        parsed.rows = limited(parsed.rows, True)
        return parsed
    # A CSV's cells are its own bytes (bounded by the upload size), read by the fast paths
    # without this iterator: its line count is checked on the bytes.
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if lines > limits.max_rows:
        raise StatementLimitError(
            f"the statement has {lines} lines, more than {limits.max_rows} rows "
            "(RECONCILIATION_MAX_ROWS): split it"
        )
    parsed = parse_csv(data)
    parsed.rows = limited(parsed.rows, False)
    return parsed
