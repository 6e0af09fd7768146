"""The G2 statement as XLS (BIFF, read with xlrd)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

from .limits import ParseLimits, StatementFormatError, StatementLimitError, raise_long_cell
from .values import cell_text
from .xlsx import TIME_CODES, without_literals


def xls_rows(data: bytes, limits: ParseLimits) -> Iterator[tuple[int, list[str]]]:
    import xlrd

    def open_book(formatting_info: bool) -> Any:
        # xlrd's warnings about a damaged file go to its log, not to our output. Ragged
        # rows: a row is as long as its cells, not padded to the widest (or to a merged
        # range a damaged file declares).
        return xlrd.open_workbook(
            file_contents=data,
            on_demand=True,
            logfile=io.StringIO(),
            formatting_info=formatting_info,
            ragged_rows=True,
        )

    def pick_sheet(book: Any) -> Any:
        # With on_demand, this is where the sheet is parsed.
        names = book.sheet_names()
        return (
            book.sheet_by_name("transaction") if "transaction" in names else book.sheet_by_index(0)
        )

    try:
        # With the cells' number formats, to tell a date alone from a date and time. Reading
        # them runs more of xlrd on the file: if that fails, the file is read without them.
        book = open_book(True)
        sheet = pick_sheet(book)
    except StatementLimitError:
        raise
    except Exception:  # xlrd raises many types for a broken file or sheet
        try:
            book = open_book(False)
        except StatementLimitError:
            raise
        except Exception as exc:
            raise StatementFormatError(f"the XLS file cannot be opened: {exc}") from None
        try:
            sheet = pick_sheet(book)
        except StatementLimitError:
            raise
        except Exception as exc:
            raise StatementFormatError(f"the XLS file is damaged: {exc!r}") from None
    if sheet.nrows > limits.max_rows:
        raise StatementLimitError(
            f"the statement has {sheet.nrows} rows, more than {limits.max_rows} "
            "(RECONCILIATION_MAX_ROWS): split it"
        )

    def date_alone(cell: Any) -> bool:
        """The cell's number format shows no time (known only with formatting info)."""
        try:
            shown = book.format_map[book.xf_list[cell.xf_index].format_key].format_str
        except (AttributeError, IndexError, KeyError, TypeError):
            return False
        return not TIME_CODES.search(without_literals(shown))

    def text(cell: Any) -> str:
        if cell.ctype == xlrd.XL_CELL_DATE:
            try:
                moment = xlrd.xldate.xldate_as_datetime(cell.value, book.datemode)
            except (ValueError, OverflowError, xlrd.xldate.XLDateError):
                return cell_text(cell.value)
            # A date alone (midnight, shown without a time) is not midnight: as a completion
            # time it is then refused. A time of day hidden by the format is still a time.
            if moment.time() == dt.time() and date_alone(cell):
                return moment.strftime("%Y-%m-%d")
            return cell_text(moment)
        if cell.ctype == xlrd.XL_CELL_BOOLEAN:
            return "true" if cell.value else "false"
        if cell.ctype == xlrd.XL_CELL_ERROR:
            return "#ERROR"
        return cell_text(cell.value)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for index in range(sheet.nrows):
            if not sheet.row_len(index):
                continue  # no cells (a damaged file's merged range may declare 65,536 rows)
            try:
                row = sheet.row(index)
                if len(row) > limits.max_columns:
                    raise StatementLimitError(
                        f"row {index + 1} has {len(row)} columns, over the limit of "
                        f"{limits.max_columns} (RECONCILIATION_MAX_COLUMNS)"
                    )
                for column, cell in enumerate(row, 1):
                    if isinstance(cell.value, str) and len(cell.value) > limits.max_cell_chars:
                        raise_long_cell(index + 1, column, len(cell.value), limits)
                cells = [text(c) for c in row]
            except StatementLimitError:
                raise
            except Exception as exc:
                raise StatementFormatError(
                    f"the XLS file is damaged (row {index + 1}): {exc!r}"
                ) from None
            yield index + 1, cells

    return rows()
