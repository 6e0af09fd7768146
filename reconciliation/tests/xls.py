"""A minimal legacy Excel (BIFF8 in an OLE2 compound file) writer for test fixtures.

xlwt is not a dependency, and the real portal export is a BIFF8 ``.xls``: this writes one sheet
of text cells (LABEL records), number cells (NUMBER) and date cells (NUMBER with a date and
time format for a ``datetime``, a date-only format for a ``date``), which is what xlrd needs
to read it the way it reads the portal's files. Not a general-purpose writer.
"""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal
from typing import Any

SECTOR = 512
ENDOFCHAIN = 0xFFFFFFFE
FREESECT = 0xFFFFFFFF
FATSECT = 0xFFFFFFFD
NOSTREAM = 0xFFFFFFFF
EXCEL_EPOCH = dt.datetime(1899, 12, 30)


def _record(kind: int, data: bytes) -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def _bof(kind: int) -> bytes:
    return _record(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0x0DBB, 0x07CC, 0, 0x06))


def _xf(format_index: int) -> bytes:
    # font 0, format, cell XF with parent 0, default alignment/borders/fill.
    return _record(
        0x00E0, struct.pack("<HHHBBBBIiH", 0, format_index, 0x0000, 0x20, 0, 0, 0, 0, 0, 0x20C0)
    )


def _unicode(text: str, length_bytes: int) -> bytes:
    raw = text.encode("utf-16-le")
    head = struct.pack("<B" if length_bytes == 1 else "<H", len(text))
    return head + b"\x01" + raw


class ShownAsDate:
    """A date and time in a cell whose number format shows only the date (format 14)."""

    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment


def _cells(rows: list[list[Any]]) -> bytes:
    out = []
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, dt.datetime):
                serial = (value - EXCEL_EPOCH).total_seconds() / 86400
                out.append(_record(0x0203, struct.pack("<HHHd", r, c, 1, serial)))
            elif isinstance(value, dt.date):  # a date alone: format 14, no time shown
                serial = (value - EXCEL_EPOCH.date()).days
                out.append(_record(0x0203, struct.pack("<HHHd", r, c, 2, float(serial))))
            elif isinstance(value, ShownAsDate):
                serial = (value.moment - EXCEL_EPOCH).total_seconds() / 86400
                out.append(_record(0x0203, struct.pack("<HHHd", r, c, 2, serial)))
            elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                out.append(_record(0x0203, struct.pack("<HHHd", r, c, 0, float(value))))
            else:
                out.append(_record(0x0204, struct.pack("<HHH", r, c, 0) + _unicode(str(value), 2)))
    return b"".join(out)


def workbook_stream(
    rows: list[list[Any]], sheet_name: str = "transaction", sheet_records: bytes = b""
) -> bytes:
    """``sheet_records``: raw records to put in the sheet before its cells."""
    globals_head = _bof(0x0005) + _record(0x0042, struct.pack("<H", 1200))
    globals_head += _xf(0) + _xf(22) + _xf(14)
    sheet_name_bytes = _unicode(sheet_name, 1)
    boundsheet_len = 4 + 6 + len(sheet_name_bytes)
    eof = _record(0x000A, b"")
    sheet_offset = len(globals_head) + boundsheet_len + len(eof)
    boundsheet = _record(0x0085, struct.pack("<IBB", sheet_offset, 0, 0) + sheet_name_bytes)
    ncols = max((len(r) for r in rows), default=0)
    sheet = (
        _bof(0x0010)
        + _record(0x0200, struct.pack("<IIHHH", 0, len(rows), 0, ncols, 0))
        + sheet_records
        + _cells(rows)
        + eof
    )
    stream = globals_head + boundsheet + eof + sheet
    # Streams under 4096 bytes would live in the mini stream, which this writer does not do.
    return stream.ljust(max(4096, -(-len(stream) // SECTOR) * SECTOR), b"\x00")


def _directory_entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
    encoded = (name + "\x00").encode("utf-16-le") if name else b""
    return (
        encoded.ljust(64, b"\x00")
        + struct.pack("<HBB", len(encoded), kind, 1 if kind else 0)
        + struct.pack("<III", NOSTREAM, NOSTREAM, child)
        + b"\x00" * 16
        + b"\x00" * 4
        + b"\x00" * 16
        + struct.pack("<II", start, size)
        + b"\x00" * 4
    )


def xls_bytes(
    rows: list[list[Any]], sheet_name: str = "transaction", sheet_records: bytes = b""
) -> bytes:
    stream = workbook_stream(rows, sheet_name, sheet_records)
    stream_sectors = len(stream) // SECTOR
    directory_sector = stream_sectors
    fat_entries = stream_sectors + 1
    fat_sectors = 1
    while fat_entries + fat_sectors > fat_sectors * (SECTOR // 4):
        fat_sectors += 1
    first_fat = directory_sector + 1
    fat = [i + 1 for i in range(stream_sectors - 1)] + [ENDOFCHAIN]
    fat.append(ENDOFCHAIN)  # the directory
    fat.extend([FATSECT] * fat_sectors)
    fat.extend([FREESECT] * (fat_sectors * (SECTOR // 4) - len(fat)))
    difat = [first_fat + i for i in range(fat_sectors)] + [FREESECT] * (109 - fat_sectors)
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + b"\x00" * 16
        + struct.pack("<HHHHH", 0x003E, 0x0003, 0xFFFE, 9, 6)
        + b"\x00" * 6
        + struct.pack(
            "<IIIIIIIII", 0, fat_sectors, directory_sector, 0, 4096, ENDOFCHAIN, 0, ENDOFCHAIN, 0
        )
        + struct.pack("<109I", *difat)
    )
    directory = (
        _directory_entry("Root Entry", 5, 1, ENDOFCHAIN, 0)
        + _directory_entry("Workbook", 2, NOSTREAM, 0, len(stream))
        + _directory_entry("", 0, NOSTREAM, 0, 0) * 2
    )
    return header + stream + directory + struct.pack(f"<{len(fat)}I", *fat)
