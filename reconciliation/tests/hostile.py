"""Hostile statement files, built small and in memory (no binary files in the repository): each
one is a few kilobytes that once cost minutes of a server thread, gigabytes of memory or of
rejects. Used by the attack tests and by ``bench/hostile_files.py``."""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from collections.abc import Callable

from .builders import Preamble, Row, _sheet_rows, g2_xlsx, pay_row
from .xls import _record, xls_bytes

ONE_ROW = [pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00")]


def rezip(
    data: bytes,
    changes: dict[str, Callable[[bytes], bytes]],
    added: dict[str, bytes] | None = None,
) -> bytes:
    """The ZIP (XLSX) ``data`` with the members named in ``changes`` rewritten and ``added``
    added, deflated at the highest level (a bomb's ratio is the point)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for item in source.infolist():
            content = source.read(item)
            change = changes.get(item.filename)
            if change is not None:
                content = change(content)
            target.writestr(item.filename, content)
        for name, content in (added or {}).items():
            target.writestr(name, content)
    return out.getvalue()


SHARED_STRINGS_TYPE = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
)
SHARED_STRINGS_REL = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"
)


def xlsx_declaring_dimension(
    ref: str = "A1:XFD1048576", last_row: int | None = 1_048_576, rows: list[Row] | None = None
) -> bytes:
    """A small statement whose sheet says it spans ``ref``, with one cell on ``last_row``:
    openpyxl, trusting the dimension, pads each of the million rows in between to the
    declared width (16,384 cells), and a reader then looks at every one of them."""

    def declare(xml: bytes) -> bytes:
        xml = re.sub(rb'<dimension ref="[^"]*"\s*/>', f'<dimension ref="{ref}"/>'.encode(), xml)
        if last_row is not None:
            row = f'<row r="{last_row}"><c r="A{last_row}" t="inlineStr"><is><t>end</t></is></c></row>'
            xml = xml.replace(b"</sheetData>", row.encode() + b"</sheetData>")
        return xml

    book = g2_xlsx(rows if rows is not None else ONE_ROW, preamble=Preamble())
    return rezip(book, {"xl/worksheets/sheet1.xml": declare})


def xlsx_with_shared_string(
    placeholder: str, text_size: int, *, rows: int = 1, repeat_char: str = "A"
) -> bytes:
    """A statement whose Details cells (``placeholder``) all point at one shared string of
    ``text_size`` characters: a zip bomb when large (it compresses about 1,000 to 1), rejects
    that each keep the whole string when repeated on rows that are refused."""
    lines = [
        Row(
            receipt=f"BAD{n:07d}!",
            completed="05-11-2025 10:00:00",
            details=placeholder,
            paid_in="1.00",
        )
        for n in range(rows)
    ]
    book = g2_xlsx(lines, preamble=Preamble())  # openpyxl writes its strings inline
    huge = (repeat_char * text_size).encode()
    shared = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" '
        b'uniqueCount="1"><si><t>' + huge + b"</t></si></sst>"
    )

    def point(xml: bytes) -> bytes:
        return re.sub(
            rb'<c r="([A-Z]+[0-9]+)" t="inlineStr"><is><t>'
            + placeholder.encode()
            + rb"</t></is></c>",
            rb'<c r="\1" t="s"><v>0</v></c>',
            xml,
        )

    def content_types(xml: bytes) -> bytes:
        part = f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SHARED_STRINGS_TYPE}"/>'
        return xml.replace(b"</Types>", part.encode() + b"</Types>")

    def relationships(xml: bytes) -> bytes:
        rel = (
            f'<Relationship Id="rIdShared" Type="{SHARED_STRINGS_REL}" Target="sharedStrings.xml"/>'
        )
        return xml.replace(b"</Relationships>", rel.encode() + b"</Relationships>")

    return rezip(
        book,
        {
            "xl/worksheets/sheet1.xml": point,
            "[Content_Types].xml": content_types,
            "xl/_rels/workbook.xml.rels": relationships,
        },
        added={"xl/sharedStrings.xml": shared},
    )


def xlsx_with_value_in_column(column_letters: str = "XFD") -> bytes:
    """A statement with one value in the sheet's last possible column (16,384)."""

    def add(xml: bytes) -> bytes:
        cell = f'<c r="{column_letters}8" t="inlineStr"><is><t>x</t></is></c>'.encode()
        return re.sub(
            rb'(<row r="8".*?)(</row>)', lambda m: m.group(1) + cell + m.group(2), xml, count=1
        )

    return rezip(g2_xlsx(ONE_ROW, preamble=Preamble()), {"xl/worksheets/sheet1.xml": add})


def xlsx_with_row_number(number: int) -> bytes:
    """A statement with a row numbered ``number`` after its real ones (a million empty rows
    in between)."""

    def add(xml: bytes) -> bytes:
        row = (
            f'<row r="{number}"><c r="A{number}" t="inlineStr"><is><t>TK5XZZZZZZ</t></is></c></row>'
        ).encode()
        return xml.replace(b"</sheetData>", row + b"</sheetData>")

    return rezip(g2_xlsx(ONE_ROW, preamble=Preamble()), {"xl/worksheets/sheet1.xml": add})


def xls_with_merged_range(rows: int = 65536, columns: int = 256) -> bytes:
    """A small XLS whose merged-cells record spans the whole sheet: xlrd pads every row of it
    to the widest (65,536 × 256 cells) unless rows are read ragged."""
    merged = _record(0x00E5, struct.pack("<HHHHH", 1, 0, rows - 1, 0, columns - 1))
    return xls_bytes(_sheet_rows(ONE_ROW, Preamble()), sheet_records=merged)


def pull_with_amount(amount_literal: str) -> bytes:
    """A Pull Transactions response whose amount is the JSON number ``amount_literal``
    written as is (1E+100000000: 219 bytes that expand to a hundred million digits)."""
    body = {
        "ResponseRefID": "b3f6-4d1e-8c4a-attack",
        "ResponseCode": "1000",
        "ResponseMessage": "Success",
        "Response": [
            [
                {
                    "transactionId": "TK5XA1BC2D",
                    "trxDate": "2025-11-05T10:00:00",
                    "msisdn": 722000108,
                    "transactiontype": "c2b-pay-bill-debit",
                    "billreference": "37941535",
                    "amount": "AMOUNT",
                }
            ]
        ],
    }
    return json.dumps(body).replace('"AMOUNT"', amount_literal).encode()


def csv_with_rejected_long_cell(size: int, rows: int = 3) -> bytes:
    """A CSV whose rows are refused (bad receipt) and carry a ``size``-character Details."""
    from .builders import g2_csv

    lines = [
        Row(
            receipt=f"BAD{n:07d}!",
            completed="05-11-2025 10:00:00",
            details="D" * size,
            paid_in="1.00",
        )
        for n in range(rows)
    ]
    return g2_csv(lines, preamble=Preamble())
