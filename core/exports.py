"""Exports for accountants: rows as CSV (streamed) or XLSX (written to a temporary file, then
streamed), with memory flat however many rows.

What an accountant's spreadsheet needs, whatever the rows:

* **Formula-injection safe**: a text cell that starts (after any spaces) with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return is prefixed with ``'``, so a spreadsheet shows it
  as text and never runs it (a payer's name or an account number is typed by a customer).
* **Amounts as numbers**: ``1234.50``, no thousands separator and no currency sign in the
  cell (the column's name says KES); in XLSX a number cell with two decimals.
* **Times in East Africa Time**: ``2026-12-05 14:30:15``, the zone in the column's name.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.http import FileResponse, HttpRequest, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from .api import ApiError, errors

EAT = ZoneInfo("Africa/Nairobi")
# Rows fetched from the database at a time (a server-side cursor on PostgreSQL).
CHUNK_ROWS = 2000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    """One column: its heading, and how a row's value becomes its cell (``kind``: "text",
    "amount", "time" or "int")."""

    heading: str
    kind: str = "text"
    value: Callable[[Sequence[Any]], Any] | None = None


# First characters worth a closer look (a formula character, or spaces before one).
_RISKY_FIRST = frozenset("=+-@\t\r ")


def safe_text(value: Any) -> str:
    """Text a spreadsheet shows as text: a leading formula character (after any spaces) is
    quoted."""
    text = "" if value is None else value if type(value) is str else str(value)
    if text and text[0] in _RISKY_FIRST and text.lstrip(" ").startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def eat(moment: datetime | None) -> datetime | None:
    """The moment in East Africa Time, without its zone (spreadsheets keep no zones)."""
    return moment.astimezone(EAT).replace(tzinfo=None) if moment is not None else None


# East Africa Time has been UTC+3 since 1960 (Africa/Nairobi): a fixed offset is exact for
# any payment, and a CSV of a million rows formats two times a row.
_EAT_OFFSET = timedelta(hours=3)
_EAT_FIXED_SINCE = datetime(1960, 1, 1, tzinfo=UTC)


def _csv_time(value: datetime | None) -> str:
    if value is None:
        return ""
    if value >= _EAT_FIXED_SINCE:
        return (value.astimezone(UTC) + _EAT_OFFSET).isoformat(" ", "seconds")[:19]
    return eat(value).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[union-attr]


def _csv_amount(value: Any) -> str:
    return "" if value is None else f"{value:.2f}"


def _csv_int(value: Any) -> Any:
    return "" if value is None else int(value)


_CSV_CELL: dict[str, Callable[[Any], Any]] = {
    "text": safe_text,
    "amount": _csv_amount,
    "time": _csv_time,
    "int": _csv_int,
}


def _cells(columns: Sequence[Column], row: Sequence[Any]) -> list[Any]:
    return [
        column.value(row) if column.value is not None else row[index]
        for index, column in enumerate(columns)
    ]


def csv_rows(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """The CSV text, in pieces of CHUNK_ROWS rows: a UTF-8 BOM (Excel then reads the file as
    UTF-8), the headings, then each row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([column.heading for column in columns])
    yield ("\ufeff" + buffer.getvalue()).encode()
    buffer.seek(0)
    buffer.truncate()
    # One function per column, chosen once: (where the value comes from, how it is written).
    plan = [
        (column.value or itemgetter(index), _CSV_CELL[column.kind])
        for index, column in enumerate(columns)
    ]
    pending = 0
    for row in rows:
        writer.writerow([write(read(row)) for read, write in plan])
        pending += 1
        if pending == CHUNK_ROWS:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue().encode()


def csv_response(
    columns: Sequence[Column], rows: Iterable[Sequence[Any]], filename: str
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_rows(columns, rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class TooManyRows(Exception):
    """An XLSX export asked for more rows than EXPORT_XLSX_MAX_ROWS."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"An XLSX export holds at most {limit:,} rows (EXPORT_XLSX_MAX_ROWS): it is built "
            "whole before it is sent. Narrow the filters (created_after, created_before), or "
            "ask for CSV, which is streamed whatever its size."
        )
        self.limit = limit


def xlsx_check_size(queryset: Any) -> None:
    """Raise TooManyRows when ``queryset`` holds more rows than an XLSX export may (counted
    up to the limit + 1, never the whole table)."""
    from django.conf import settings

    limit = int(settings.EXPORT_XLSX_MAX_ROWS)
    if queryset.order_by()[: limit + 1].count() > limit:
        raise TooManyRows(limit)


def xlsx_response(
    columns: Sequence[Column], rows: Iterable[Sequence[Any]], filename: str, title: str
) -> FileResponse:
    """The rows as an XLSX workbook (openpyxl's write-only mode, written to a temporary file
    that is streamed, then deleted): amounts as number cells with two decimals, times as
    date-time cells in East Africa Time."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31])
    sheet.append([column.heading for column in columns])
    kinds = [column.kind for column in columns]
    for row in rows:
        cells: list[Any] = []
        for kind, value in zip(kinds, _cells(columns, row), strict=True):
            if value is None:
                cells.append(None)
            elif kind == "amount":
                cell = WriteOnlyCell(sheet, value=Decimal(value))
                cell.number_format = "#,##0.00"
                cells.append(cell)
            elif kind == "time":
                cell = WriteOnlyCell(sheet, value=eat(value))
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
                cells.append(cell)
            elif kind == "int":
                cells.append(int(value))
            else:
                cells.append(safe_text(value))
        sheet.append(cells)
    # Deleted when closed, and FileResponse closes it once sent.
    spool = tempfile.TemporaryFile()  # noqa: SIM115
    workbook.save(spool)
    spool.seek(0)
    response = FileResponse(
        spool,
        as_attachment=True,
        filename=filename,
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    response["Cache-Control"] = "no-store"
    return response


@dataclass(frozen=True)
class Export:
    """One kind of export: its columns, how a queryset becomes its rows, and its names."""

    name: str  # the file's name before its time stamp: "payments"
    title: str  # the XLSX sheet's title
    columns: Sequence[Column]
    rows: Callable[[Any], Iterable[Sequence[Any]]]

    def response(self, queryset: Any, file_format: str) -> HttpResponseBase:
        """The file of ``queryset``'s rows; TooManyRows for an XLSX over the limit."""
        stamp = datetime.now(EAT).strftime("%Y%m%d-%H%M%S")
        filename = f"{self.name}-{stamp}.{file_format}"
        if file_format == "xlsx":
            xlsx_check_size(queryset)
            return xlsx_response(self.columns, self.rows(queryset), filename, self.title)
        return csv_response(self.columns, self.rows(queryset), filename)


class ExportView(APIView):
    """``GET …/export.csv`` or ``.xlsx``: subclasses give ``export`` and the rows' queryset
    (the list's, with its filters checked); see :func:`export_views`."""

    export: Export
    file_format = "csv"

    def export_queryset(self, request: Request) -> Any:
        raise NotImplementedError

    def get(self, request: Request) -> HttpResponseBase:
        try:
            return self.export.response(self.export_queryset(request), self.file_format)
        except TooManyRows as exc:
            raise ApiError(code="too_many_rows", message=str(exc), http_status=400) from None


_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def export_views(
    base: type[ExportView], *, operation_id: str, what: str
) -> tuple[type[ExportView], type[ExportView]]:
    """The CSV and the XLSX view of ``base``, each with its own operation in the schema."""
    failures = errors(
        e400="A filter's value is not valid, or an XLSX export over EXPORT_XLSX_MAX_ROWS rows "
        "(too_many_rows)"
    )
    views = []
    for file_format, media_type, how in (("csv", "text/csv", ", streamed"), ("xlsx", _XLSX, "")):

        @extend_schema(
            operation_id=f"{operation_id}_{file_format}",
            summary=f"{what} as {file_format.upper()}{how}",
            responses={(200, media_type): OpenApiResponse(OpenApiTypes.BINARY), **failures},
        )
        def get(self: ExportView, request: Request) -> HttpResponseBase:
            return ExportView.get(self, request)

        name = f"{base.__name__}{file_format.capitalize()}"
        views.append(type(name, (base,), {"file_format": file_format, "get": get}))
    return views[0], views[1]


class ExportActions:
    """Admin actions "export_csv" and "export_xlsx" of the selected rows (with "select all":
    the whole filtered list); the ModelAdmin gives ``export`` and lists the actions."""

    export: Export

    @admin.action(description="Export the selected rows as CSV (for accountants)")
    def export_csv(self, request: HttpRequest, queryset: Any) -> HttpResponseBase:
        return self.export.response(queryset, "csv")

    @admin.action(description="Export the selected rows as XLSX (for accountants)")
    def export_xlsx(self, request: HttpRequest, queryset: Any) -> HttpResponseBase | None:
        try:
            return self.export.response(queryset, "xlsx")
        except TooManyRows as exc:
            messages.error(request, str(exc))
            return None
