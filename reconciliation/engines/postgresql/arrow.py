"""Reading a UTF-8 CSV with Arrow's multi-threaded reader, a block at a time, into COPY text."""

from __future__ import annotations

import csv
from typing import Any

from ...formats.parsed import ParsedStatement
from ...formats.rows import AMOUNT_FIELDS, TEXT_FIELDS
from .writer import LINE_FIELDS, LineWriter

ARROW_BLOCK_BYTES = 4 * 1024 * 1024
# The fast path's rules (FastKey's shapes, LineWriter.write's checks) as RE2 patterns.
ARROW_RECEIPT = r"^[A-Z0-9]{6,20}$"
ARROW_TIME = r"^\d\d-\d\d-\d{4} (?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d)?$"
ARROW_AMOUNT = r"^(?:-?(?:\d{1,3}(?:,\d{3}){1,3}|\d{1,12})(?:\.\d{1,2})?)?$"


class ArrowUnsuitable(Exception):
    """This CSV is read by Python's csv module instead: Arrow's reader might not split it
    into the same rows (line breaks inside cells, blank lines, rows of other widths) or
    decode it the same way."""


def arrow_suitable(parsed: ParsedStatement) -> bool:
    """Worth trying: a UTF-8 (or ASCII) CSV without tabs, backslashes or NULs, whose carriage
    returns all end lines."""
    data = parsed.source
    if data is None or parsed.data_start <= 0 or not parsed.plain_text:
        return False
    if parsed.encoding not in ("ascii", "utf-8"):
        return False
    start = parsed.data_start
    return data.count(b"\r", start) == data.count(b"\r\n", start)


def copy_arrow(copy: Any, parsed: ParsedStatement, writer: LineWriter) -> None:
    """Read the CSV's rows with Arrow's multi-threaded reader and send them to COPY.

    Each block of rows is checked by the fast path's rules at once; the rows that pass are
    written as COPY text by Arrow, the others go through ``writer`` row by row (canonicalised,
    rejected or skipped exactly as in the other reads). Raises :class:`ArrowUnsuitable` when
    the file cannot be read this way; whatever was sent must then be rolled back."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    assert parsed.source is not None
    data, start = parsed.source, parsed.data_start
    layout = writer.layout
    width = layout.width
    end = data.find(b"\n", start)
    first_line = data[start : end if end >= 0 else len(data)].decode(parsed.encoding)
    count = len(next(csv.reader([first_line]), []))
    if count != width:
        # Rows wider than the header (empty cells past the table) are canonicalised, and
        # narrower ones rejected, by the row-by-row read.
        raise ArrowUnsuitable
    names = [f"c{index}" for index in range(count)]
    try:
        reader = pa_csv.open_csv(
            pa.BufferReader(pa.py_buffer(memoryview(data)[start:])),
            read_options=pa_csv.ReadOptions(
                column_names=names, block_size=ARROW_BLOCK_BYTES, encoding="utf8"
            ),
            # Quoted line breaks are followed when Arrow cuts the file into blocks: without
            # this, a line break in a quoted cell just after a block's end started a new row
            # (text shaped like a row after it read as one). Such a record then makes fewer
            # rows than lines, and the file goes to the row-by-row read.
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ArrowUnsuitable from exc
    columns = layout.columns
    fast_key = writer.fast_key
    write_options = pa_csv.WriteOptions(include_header=False, quoting_style="none", delimiter="\t")
    number = parsed.header_row + 1
    paid_receipts: list[Any] = []
    paid_numbers: list[Any] = []
    null = pa.scalar("\\N")
    counting = pa.array([], pa.int64())

    def amount_text(values: Any) -> Any:
        plain = pc.replace_substring(values, ",", "")
        return pc.if_else(pc.equal(plain, ""), null, plain)

    def copy_text(batch: Any, numbers: Any, ok: Any) -> tuple[Any, Any, Any] | None:
        """The rows ``ok`` selects, their numbers and their COPY text; None if a cell
        cannot be written unquoted."""
        fast = batch.filter(ok)
        rows = fast.num_rows
        out = []
        for name in LINE_FIELDS:
            if name not in columns:
                pad = "\\N" if name in AMOUNT_FIELDS else ""
                out.append(pa.nulls(rows, pa.string()).fill_null(pad))
            elif name in AMOUNT_FIELDS:
                out.append(amount_text(fast.column(columns[name])))
            elif name == "account":
                out.append(pc.utf8_trim(fast.column(columns[name]), " "))
            else:
                out.append(fast.column(columns[name]))
        fast_numbers = pc.filter(numbers, ok)
        table = pa.RecordBatch.from_arrays(
            [pc.add(fast_numbers, writer.base), fast_numbers, *out],
            names=["id", "line_no", *LINE_FIELDS],
        )
        sink = pa.BufferOutputStream()
        try:
            pa_csv.write_csv(table, sink, write_options=write_options)
        except pa.ArrowInvalid:
            return None
        return fast, fast_numbers, sink.getvalue()

    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise ArrowUnsuitable from exc
        rows = batch.num_rows
        if len(counting) < rows:
            counting = pa.array(range(2 * rows), pa.int64())
        numbers = pc.add(counting.slice(0, rows), number)
        number += rows
        receipt = batch.column(columns["receipt"])
        moment = batch.column(columns["completed"])
        ok = pc.and_(
            pc.match_substring_regex(receipt, ARROW_RECEIPT), pc.not_equal(receipt, "TOTALS")
        )
        ok = pc.and_(ok, pc.match_substring_regex(moment, ARROW_TIME))
        dates = pc.utf8_slice_codeunits(moment, 0, 10)
        valid = [
            day
            for day in pc.unique(pc.filter(dates, ok)).to_pylist()
            if fast_key.dates.get(day) or fast_key.date_ok(day)
        ]
        ok = pc.and_(ok, pc.is_in(dates, value_set=pa.array(valid, pa.string())))
        amounts = {}
        for name in AMOUNT_FIELDS:
            if name in columns:
                amounts[name] = batch.column(columns[name])
                ok = pc.and_(ok, pc.match_substring_regex(amounts[name], ARROW_AMOUNT))
        paid_set = pc.not_equal(amounts["paid_in"], "") if "paid_in" in amounts else False
        withdrawn_set = pc.not_equal(amounts["withdrawn"], "") if "withdrawn" in amounts else False
        # Exactly one of Paid In / Withdrawn filled in.
        ok = pc.and_(ok, pc.xor(paid_set, withdrawn_set))
        written = copy_text(batch, numbers, ok)
        if written is None:
            # A text cell holds a quote, which unquoted CSV cannot carry: those rows go the
            # slow way (checked only then: most blocks have none).
            for name in TEXT_FIELDS:
                if name in columns:
                    quoted = pc.match_substring(batch.column(columns[name]), '"')
                    ok = pc.and_(ok, pc.invert(quoted))
            written = copy_text(batch, numbers, ok)
            if written is None:
                raise ArrowUnsuitable
        fast, fast_numbers, text = written
        if fast.num_rows:
            copy.write(memoryview(text))
            if "paid_in" in amounts:
                paid = pc.filter(paid_set, ok)
                paid_receipts.append(pc.filter(fast.column(columns["receipt"]), paid))
                paid_numbers.append(pc.filter(fast_numbers, paid))
        if fast.num_rows < rows:
            rest = batch.filter(pc.invert(ok))
            cells = [column.to_pylist() for column in rest.columns]
            rest_rows = map(list, zip(*cells, strict=True))
            rest_numbers = pc.filter(numbers, pc.invert(ok)).to_pylist()
            writer.write(copy, zip(rest_numbers, rest_rows, strict=True), check_every_row=False)
    body = len(data) - start
    lines = data.count(b"\n", start) + (0 if data.endswith(b"\n") or not body else 1)
    if number - (parsed.header_row + 1) != lines:
        raise ArrowUnsuitable
    # Paid-in rows whose receipt repeats, across the rows Arrow wrote and the others.
    paid_receipts.append(pa.array(list(writer.first_seen), pa.string()))
    paid_numbers.append(pa.array(list(writer.first_seen.values()), pa.int64()))
    receipts = pa.chunked_array(paid_receipts, pa.string())
    counts = pc.value_counts(receipts)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated):
        numbers_all = pa.chunked_array(paid_numbers, pa.int64())
        writer.repeats.extend(
            pc.filter(numbers_all, pc.is_in(receipts, value_set=repeated)).to_pylist()
        )
