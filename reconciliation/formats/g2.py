"""The M-Pesa org portal (G2) statement as CSV."""

from __future__ import annotations

import csv
import io

from ..models import StatementFormat
from .limits import HEADER_SEARCH_ROWS, MAX_ROW_CELLS
from .parsed import ParsedStatement, StatementMetadata, looks_like_header, no_header
from .rows import Layout


def text_encoding(data: bytes) -> str:
    """UTF-8 with a cp1252 fallback, as ``docs/statements.md`` describes (ASCII checked first: it
    is by far the most common case and the cheapest test)."""
    if data.isascii():
        return "ascii"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def decode_text(data: bytes) -> str:
    data = data.removeprefix(b"\xef\xbb\xbf")
    return data.decode(text_encoding(data), errors="replace")


def parse_csv(data: bytes) -> ParsedStatement:
    stream = io.BytesIO(data)
    if data.startswith(b"\xef\xbb\xbf"):
        stream.seek(3)
    encoding = text_encoding(data[3:] if stream.tell() else data)
    # A streaming decoder, not one big str: csv reads it several times faster.
    text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
    reader = csv.reader(text)
    preamble: list[list[str]] = []
    for number, cells in enumerate(reader, 1):
        if looks_like_header(cells):
            layout = Layout.from_header(cells, pads_short_rows=False)
            metadata = StatementMetadata()
            metadata.read_preamble(preamble)
            return ParsedStatement(
                file_format=StatementFormat.G2_CSV,
                metadata=metadata,
                layout=layout,
                header_row=number,
                rows=enumerate(reader, number + 1),
                plain_text=b"\t" not in data and b"\\" not in data and b"\x00" not in data,
                source=data if reader.line_num == number else None,
                encoding=encoding,
                data_start=_line_end(data, number),
            )
        if number >= HEADER_SEARCH_ROWS:
            break
        preamble.append(cells[:MAX_ROW_CELLS])
    raise no_header()


def _line_end(data: bytes, lines: int) -> int:
    """The offset just after the ``lines``-th line break (0 when there are fewer)."""
    offset = 0
    for _ in range(lines):
        found = data.find(b"\n", offset)
        if found < 0:
            return 0
        offset = found + 1
    return offset
