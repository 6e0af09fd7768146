"""The G2 statement as XLSX: the ZIP checked against the limits, the sheet read as a
stream, numeric cells as their exact decimal text."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from .limits import (
    RATIO_CHECK_MIN_BYTES,
    SHARED_STRINGS_SHARE,
    ParseLimits,
    StatementFormatError,
    StatementLimitError,
    raise_long_cell,
)
from .values import cell_text


def check_zip(data: bytes, limits: ParseLimits) -> None:
    """An XLSX is a ZIP: refused when its members declare more than the decompressed limit,
    when one is compressed more than the ratio limit (a zip bomb: 293 KB of shared strings
    that inflate to gigabytes), or when a member inflates to more than it declared or than the
    limit (each is inflated once, as a stream, and counted, before anything reads it)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise StatementFormatError(f"the XLSX file cannot be opened: {exc}") from None
    limit = limits.max_decompressed_bytes
    declared = sum(member.file_size for member in members)
    if declared > limit:
        raise StatementLimitError(
            f"the XLSX file declares {declared} bytes uncompressed, over the limit of {limit} "
            "(RECONCILIATION_MAX_DECOMPRESSED_BYTES)"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_CHECK_MIN_BYTES and ratio > limits.max_compression_ratio:
            raise StatementLimitError(
                f"the XLSX part {member.filename[:100]!r} is compressed {ratio:.0f} to 1, over "
                f"the limit of {limits.max_compression_ratio} "
                "(RECONCILIATION_MAX_COMPRESSION_RATIO): a zip bomb?"
            )
        if member.filename.lower().endswith("sharedstrings.xml") and (
            member.file_size > limit // SHARED_STRINGS_SHARE
        ):
            raise StatementLimitError(
                f"the XLSX file's shared strings are {member.file_size} bytes, over "
                f"{limit // SHARED_STRINGS_SHARE} (1/{SHARED_STRINGS_SHARE} of "
                "RECONCILIATION_MAX_DECOMPRESSED_BYTES)"
            )
    total = 0
    try:
        for member in members:
            size = 0
            with archive.open(member) as stream:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    total += len(chunk)
                    if size > member.file_size or total > limit:
                        raise StatementLimitError(
                            f"the XLSX part {member.filename[:100]!r} inflates to more than "
                            f"it declares or than the limit of {limit} bytes "
                            "(RECONCILIATION_MAX_DECOMPRESSED_BYTES)"
                        )
    except StatementLimitError:
        raise
    except Exception as exc:  # zipfile raises many types for a broken member
        raise StatementFormatError(f"the XLSX file is damaged: {exc}") from None


def xlsx_rows(data: bytes, limits: ParseLimits) -> Iterator[tuple[int, list[str]]]:
    import openpyxl

    check_zip(data, limits)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except StatementLimitError:
        raise
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise StatementFormatError(f"the XLSX file cannot be opened: {exc}") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        expected = 1
        try:
            names = book.sheetnames
            sheet = book["transaction"] if "transaction" in names else book[names[0]]
            # The sheet's <dimension> is what the file says of itself (A1:XFD1048576 made
            # openpyxl pad a million rows to 16,384 cells each): only the cells are read.
            sheet.reset_dimensions()
            for row in sheet.iter_rows():
                if not row:
                    # A row the file does not have (openpyxl fills the gaps between the rows
                    # it has): nothing to read, and a million of them cost seconds.
                    expected += 1
                    continue
                number = next((c.row for c in row if getattr(c, "row", None)), expected)
                expected = number + 1
                if len(row) > limits.max_columns:
                    row = _xlsx_narrowed(number, row, limits)
                yield number, [_xlsx_cell_text(c, number, limits) for c in row]
        except StatementLimitError:
            raise
        except Exception as exc:  # a damaged sheet is found only while it is read
            raise StatementFormatError(
                f"the XLSX file is damaged (after row {expected - 1}): {exc}"
            ) from None
        finally:
            book.close()

    return rows()


def _xlsx_narrowed(number: int, row: tuple[Any, ...], limits: ParseLimits) -> tuple[Any, ...]:
    """A row whose cells past the column limit are all empty (formatting), without them; a
    value past the limit is refused."""
    for column, cell in enumerate(row[limits.max_columns :], limits.max_columns + 1):
        if getattr(cell, "value", None) not in (None, ""):
            raise StatementLimitError(
                f"row {number} has a value in column {column}, over the limit of "
                f"{limits.max_columns} columns (RECONCILIATION_MAX_COLUMNS)"
            )
    return row[: limits.max_columns]


TIME_CODES = re.compile(r"[hs]|am/pm", re.IGNORECASE)


def without_literals(number_format: str) -> str:
    """A number format without its quoted text, escaped characters and [colour]/[locale]
    parts, which are not codes."""
    return re.sub(r'"[^"]*"|\\.|\[[^]]*\]', "", number_format)


def _xlsx_cell_text(cell: Any, number: int, limits: ParseLimits) -> str:
    """A date cell whose format shows no time and whose value has none is a date alone
    (``YYYY-MM-DD``), not midnight: as a completion time it is then refused. Text over the
    cell limit is refused before anything is made of it."""
    value = cell.value
    if isinstance(value, str) and len(value) > limits.max_cell_chars:
        raise_long_cell(number, getattr(cell, "column", 0) or 0, len(value), limits)
    if (
        isinstance(value, dt.datetime)
        and getattr(cell, "is_date", False)
        and value.time() == dt.time()
        and not TIME_CODES.search(without_literals(str(cell.number_format or "")))
    ):
        return value.strftime("%Y-%m-%d")
    return cell_text(value)
