"""Parser tests, one per format quirk of docs/statements.md."""

import datetime as dt
import io
import json
import random
import re
import struct
import zipfile
from decimal import Decimal

import openpyxl
import pytest

from reconciliation.engines.python import read_lines
from reconciliation.formats import parse_statement
from reconciliation.formats.limits import StatementFormatError
from reconciliation.formats.rows import RowReader
from reconciliation.formats.values import (
    ValueProblem,
    cell_text,
    parse_amount,
    parse_statement_time,
)
from reconciliation.models import StatementFormat
from testsupport import REAL_PAYLOADS, real_payloads

from .builders import (
    G2_HEADER,
    Preamble,
    Row,
    charge_row,
    g2_csv,
    g2_xls,
    g2_xlsx,
    pay_row,
    pull_json,
    pull_transaction,
)

UTC = dt.UTC


def read(data: bytes):
    parsed = parse_statement(data)
    lines, rejects, skipped = read_lines(parsed)
    return parsed, lines, rejects, skipped


# --- The preamble -----------------------------------------------------------------------------


def test_the_preamble_is_read_as_metadata_with_the_period_in_utc_and_negative_withdrawn():
    preamble = Preamble(
        opening=Decimal("4040"),
        closing=Decimal("82459"),
        total_paid_in=Decimal("172055"),
        total_withdrawn=Decimal("-89636"),
    )
    data = g2_csv([pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13")], preamble=preamble)

    parsed = parse_statement(data)

    meta = parsed.metadata
    assert meta.account_holder == "ACME SCHOOLS LTD"
    assert meta.short_code == "4125223"
    assert meta.account_name == "Utility Account"
    assert meta.period_start == dt.datetime(2025, 10, 31, 21, 0, tzinfo=UTC)
    assert meta.period_end == dt.datetime(2025, 11, 30, 20, 59, 59, tzinfo=UTC)
    assert meta.report_time == dt.datetime(2025, 11, 30, 20, 59, 59, tzinfo=UTC)
    assert meta.opening_balance == Decimal("4040.00")
    assert meta.closing_balance == Decimal("82459.00")
    assert meta.available_balance is None
    assert meta.total_paid_in == Decimal("172055.00")
    assert meta.total_withdrawn == Decimal("-89636.00")
    assert parsed.header_row == 7


def test_an_unreadable_preamble_amount_is_a_warning_and_stays_empty_not_zero():
    preamble = Preamble(extra=[["Total Paid In:", "lots"]])
    parsed = parse_statement(
        g2_csv([pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13")], preamble=preamble)
    )

    assert parsed.metadata.total_paid_in is None
    assert any("Total Paid In" in w for w in parsed.metadata.warnings)


# --- The header ---------------------------------------------------------------------------------


def test_the_header_is_found_by_its_column_names_wherever_it_is():
    preamble = Preamble(extra=[[""], ["Some note:", "exported by hand"], [""]])
    data = g2_csv([pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13")], preamble=preamble)

    parsed, lines, rejects, _ = read(data)

    assert parsed.header_row == 10
    assert [line.receipt for line in lines] == ["TK5XA1BC2D"]
    assert lines[0].line_no == 11
    assert rejects == []


def test_columns_are_mapped_by_name_not_position():
    # The same platform elsewhere: Currency after Status, "Opposite Party", no Initiation Time.
    header = [
        "Receipt No.",
        "Completion Time",
        "Details",
        "Transaction Status",
        "Currency",
        "Paid In",
        "Withdrawn",
        "Balance",
        "Reason Type",
        "Opposite Party",
        "Linked Transaction ID",
        "A/C No.",
    ]
    row = [
        "TK5XA1BC2D",
        "05-11-2025 21:45:13",
        "Pay Bill from 25472****108 - JOHN Acc. 37941535",
        "Completed",
        "KES",
        "111.00",
        "",
        "82,459.00",
        "Pay Utility",
        "25472****108 - JOHN",
        "",
        " 37941535",
    ]

    _, lines, rejects, _ = read(g2_csv([row], header=header))

    assert rejects == []
    (line,) = lines
    assert line.paid_in == Decimal("111.00")
    assert line.balance == Decimal("82459.00")
    assert line.other_party == "25472****108 - JOHN"
    assert line.account == "37941535"


def test_a_file_without_a_statement_header_is_refused_as_a_whole():
    with pytest.raises(StatementFormatError, match="Receipt No"):
        parse_statement(b"name,amount\nalice,10\n")


def test_an_html_table_saved_as_xls_is_refused_with_a_clear_message():
    with pytest.raises(StatementFormatError, match="HTML"):
        parse_statement(b"<html><table><tr><td>Receipt No.</td></tr></table></html>")


# --- Values -------------------------------------------------------------------------------------


def test_empty_strings_are_null_and_thousands_separators_are_read():
    _, lines, _, _ = read(
        g2_csv([pay_row("TK5XA1BC2D", Decimal("1131340"), "05-11-2025 21:45:13")])
    )

    (line,) = lines
    assert line.paid_in == Decimal("1131340.00")
    assert line.withdrawn is None
    assert line.direction == "in"
    assert line.amount == Decimal("1131340.00")


def test_a_negative_withdrawn_is_an_outgoing_line_of_a_positive_amount():
    _, lines, _, _ = read(g2_csv([charge_row("TK5XA1BC2D", 60, "05-11-2025 21:45:13")]))

    (line,) = lines
    assert line.withdrawn == Decimal("-60.00")
    assert line.direction == "out"
    assert line.amount == Decimal("60.00")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,131,340.00", Decimal("1131340.00")),
        ("-60.00", Decimal("-60.00")),
        ("111", Decimal("111.00")),
        ("KES 1,000", Decimal("1000.00")),
        ("(60.00)", Decimal("-60.00")),
        (" 5.5 ", Decimal("5.50")),
        ("", None),
        ("-", None),
    ],
)
def test_amounts_are_read_exactly(text, expected):
    assert parse_amount(text) == expected


@pytest.mark.parametrize(
    "text",
    ["abc", "1,13,1340.00", "1.005", "NaN", "1e5", "12,34", "1" * 13, "\u0661\u0662.00", "1_000"],
)
def test_malformed_amounts_are_refused_never_zero(text):
    with pytest.raises(ValueProblem):
        parse_amount(text)


def test_east_africa_times_are_stored_in_utc():
    _, lines, _, _ = read(g2_csv([pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13")]))

    assert lines[0].completed_at == dt.datetime(2025, 11, 5, 18, 45, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("05-11-2025 21:45:13", dt.datetime(2025, 11, 5, 21, 45, 13)),
        ("20-04-2017 15:50", dt.datetime(2017, 4, 20, 15, 50)),
        ("2025-11-05 21:45:13", dt.datetime(2025, 11, 5, 21, 45, 13)),
        ("2020-08-05T10:13:00Z", dt.datetime(2020, 8, 5, 13, 13)),
        ("25/11/2025 9:05", dt.datetime(2025, 11, 25, 9, 5)),
        ("45966.90640046296", dt.datetime(2025, 11, 5, 21, 45, 13)),
    ],
)
def test_statement_times_are_read_day_first_as_eat(text, expected):
    assert parse_statement_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "05/11/2025 21:45",
        "11/25/2025 9:05 PM",
        "30-02-2025 10:00:00",
        "",
        "yesterday",
        "00000.5",  # an Excel serial in 1899
        "99999.5",  # and one in 2173
        "45966",  # a day number: a date without its time
        "2099-12-31 23:00:00-05:00",  # 2100 in East Africa
        "2025-11-05 10:00:00+99:00",  # no such offset
        "9999-12-31 23:00:00Z",  # cannot even be moved to East Africa time
        "0001-01-01 00:00:00+03:00",
        "\uff10\uff15-11-2025 21:45:13",  # full-width digits
    ],
)
def test_ambiguous_impossible_or_implausible_times_are_refused(text):
    with pytest.raises(ValueProblem):
        parse_statement_time(text)


@pytest.mark.parametrize("completed", ["00000.5", "99999.5", "45966", "2099-12-31 23:00:00-05:00"])
def test_an_implausible_time_is_a_reject_of_its_row_not_a_failed_import(completed):
    rows = [
        pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13"),
        pay_row("TK5XA1BC2E", 5, completed),
    ]

    _, lines, rejects, _ = read(g2_csv(rows))

    assert [line.receipt for line in lines] == ["TK5XA1BC2D"]
    assert [(number, "Completion Time" in reason) for number, reason, _ in rejects] == [
        (rejects[0][0], True)
    ]


@pytest.mark.parametrize(
    "text", ["1" * 27 + ".00", "9" * 30, "111111111111111111111111111111111111111.5"]
)
def test_an_amount_of_any_length_is_refused_as_too_large_not_a_crash(text):
    with pytest.raises(ValueProblem, match="too large"):
        parse_amount(text)


def test_a_cell_longer_than_the_csv_module_s_default_limit_is_read():
    long = "x" * 200_000
    rows = [pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13", details=long)]

    _, lines, rejects, _ = read(g2_csv(rows))

    assert rejects == [] and lines[0].details == long


def test_a_short_csv_row_is_rejected_when_it_lacks_a_cell_a_line_needs():
    header = "Receipt No.,Completion Time,Details,Paid In,Withdrawn,Balance,A/C No.,Currency"
    data = (
        f"{header}\n"
        # Stops before Balance: a cell was lost, and the others may have moved left.
        'TK5XA1BC2D,05-11-2025 21:45:13,111.00,,"82,459.00"\n'
        # Stops after A/C No. or Balance: only trailing text cells are left out.
        "TK5XA1BC2E,05-11-2025 21:46:13,Pay Bill,5.00,,10.00, 123\n"
        "TK5XA1BC2F,05-11-2025 21:47:13,Pay Bill,6.00,,16.00\n"
        "TOTAL:,,,11.00\n"
    ).encode()

    _, lines, rejects, skipped = read(data)

    assert [(line.receipt, line.account) for line in lines] == [
        ("TK5XA1BC2E", "123"),
        ("TK5XA1BC2F", ""),
    ]
    assert [(number, reason) for number, reason, _ in rejects] == [
        (2, "the row has 5 cells; the header has 8")
    ]
    assert skipped == {"total": 1}


def test_a_header_naming_a_column_twice_is_refused():
    data = b"Receipt No.,Completion Time,Paid In,Paid In\nTK5XA1BC2D,05-11-2025 21:45:13,1,999\n"

    with pytest.raises(StatementFormatError, match="two 'Paid In' columns"):
        parse_statement(data)


def test_the_leading_space_of_the_account_number_is_trimmed():
    _, lines, _, _ = read(g2_csv([pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13")]))

    assert lines[0].account == "37941535"


def test_rows_sharing_a_receipt_are_separate_lines_payment_and_charge():
    rows = [
        pay_row("TK5XA1BC2D", 1000, "05-11-2025 21:45:13"),
        charge_row("TK5XA1BC2D", 15, "05-11-2025 21:45:13"),
        pay_row("TK5XA1BC2E", 63, "05-11-2025 21:46:00", reason="Pay Utility with OD via STK"),
    ]

    _, lines, rejects, _ = read(g2_csv(rows))

    assert rejects == []
    assert [(line.receipt, line.kind) for line in lines] == [
        ("TK5XA1BC2D", "payment"),
        ("TK5XA1BC2D", "charge"),
        ("TK5XA1BC2E", "payment"),
    ]


def test_every_unreadable_row_is_rejected_with_its_row_number_and_reason():
    rows = [
        pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13"),
        Row(receipt="TK5XA1BC2E", completed="05-11-2025 21:46:00", paid_in="1,11.00"),
        Row(receipt="TK5XA1BC2F", completed="", paid_in="10.00"),
        Row(receipt="", completed="05-11-2025 21:46:00", paid_in="10.00"),
        Row(receipt="TK5XA1BC2G", completed="31-11-2025 10:00:00", paid_in="10.00"),
        Row(receipt="TK5XA1BC2H", completed="05-11-2025 21:46:00"),
        Row(
            receipt="TK5XA1BC2I", completed="05-11-2025 21:46:00", paid_in="5.00", withdrawn="-5.00"
        ),
        [*pay_row("TK5XA1BC2J", 5, "05-11-2025 21:46:00").cells(), "", "shifted"],
    ]

    _, lines, rejects, _ = read(g2_csv(rows))

    assert [line.receipt for line in lines] == ["TK5XA1BC2D"]
    reasons = {number: reason for number, reason, _ in rejects}
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 9}  # header is row 1; data from row 2
    assert "Paid In" in reasons[3] and "not an amount" in reasons[3]
    assert "Completion Time is empty" in reasons[4]
    assert "Receipt No. is empty" in reasons[5]
    assert "not a valid date" in reasons[6]
    assert "neither Paid In nor Withdrawn" in reasons[7]
    assert "both Paid In and Withdrawn" in reasons[8]
    assert "the row has 16 cells; the header has 14" in reasons[9]
    raw = {number: cells for number, _, cells in rejects}
    assert raw[3][5] == "1,11.00"


def test_blank_rows_repeated_headers_and_totals_are_skipped_not_rejected():
    rows = [
        pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13"),
        [""] * 14,
        list(G2_HEADER),
        pay_row("TK5XA1BC2E", 5, "05-11-2025 21:46:00"),
        ["TOTAL:", "", "", "", "", "116.00", "", "", "", "", "", "", "", ""],
    ]

    _, lines, rejects, skipped = read(g2_csv(rows))

    assert [line.receipt for line in lines] == ["TK5XA1BC2D", "TK5XA1BC2E"]
    assert rejects == []
    assert skipped == {"blank": 1, "header": 1, "total": 1}


def test_a_status_other_than_completed_is_a_line_that_moved_no_money():
    rows = [pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13", status="Failed")]

    _, lines, _, _ = read(g2_csv(rows))

    assert lines[0].kind == "not_completed"


# --- Encodings and CSV shapes -----------------------------------------------------------------


def test_a_csv_with_a_bom_crlf_and_cp1252_en_dashes_is_read():
    row = pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13", party="0722000108 – MARY ACHIENG")
    data = g2_csv([row], newline="\r\n", encoding="cp1252", bom=False)
    assert "–".encode("cp1252") in data

    _, lines, rejects, _ = read(data)

    assert rejects == []
    assert lines[0].other_party == "0722000108 – MARY ACHIENG"


def test_a_utf8_bom_is_ignored():
    _, lines, _, _ = read(g2_csv([pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13")], bom=True))

    assert lines[0].receipt == "TK5XA1BC2D"


def test_a_quoted_cell_with_a_line_break_is_one_row():
    row = pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13", details="Pay Bill from\nsomeone")
    _, lines, rejects, _ = read(g2_csv([row, pay_row("TK5XA1BC2E", 5, "05-11-2025 21:46:00")]))

    assert rejects == []
    assert lines[0].details == "Pay Bill from\nsomeone"
    assert [line.line_no for line in lines] == [2, 3]


# --- Spreadsheets -------------------------------------------------------------------------------


def sheet_rows():
    return [
        pay_row("TK5XA1BC2D", Decimal("1131340"), "05-11-2025 21:45:13"),
        charge_row("TK5XA1BC2D", 60, "05-11-2025 21:45:13"),
        pay_row("TK5XA1BC2E", Decimal("15.98"), "05-11-2025 21:46:00"),
    ]


@pytest.mark.parametrize(
    ("build", "kind"), [(g2_xlsx, StatementFormat.G2_XLSX), (g2_xls, StatementFormat.G2_XLS)]
)
def test_spreadsheets_read_numeric_cells_exactly_and_empty_string_cells_as_null(build, kind):
    preamble = Preamble(total_withdrawn=Decimal("-89636"), closing=Decimal("82459"))
    parsed, lines, rejects, _ = read(build(sheet_rows(), preamble=preamble))

    assert parsed.file_format == kind
    assert rejects == []
    assert [(line.receipt, line.paid_in, line.withdrawn) for line in lines] == [
        ("TK5XA1BC2D", Decimal("1131340.00"), None),
        ("TK5XA1BC2D", None, Decimal("-60.00")),
        ("TK5XA1BC2E", Decimal("15.98"), None),
    ]
    assert parsed.metadata.short_code == "4125223"
    assert parsed.metadata.total_withdrawn == Decimal("-89636.00")
    assert parsed.metadata.closing_balance == Decimal("82459.00")
    assert lines[0].account == "37941535"


def test_xls_date_cells_are_read_as_times_too():
    from .xls import xls_bytes

    rows = [list(G2_HEADER)]
    cells = pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13").cells()
    cells[1] = dt.datetime(2025, 11, 5, 21, 45, 13)
    cells[5] = 111.0
    rows.append(cells)

    _, lines, rejects, _ = read(xls_bytes(rows))

    assert rejects == []
    assert lines[0].completed_at == dt.datetime(2025, 11, 5, 18, 45, 13, tzinfo=UTC)


def test_an_xls_date_cell_without_a_time_is_a_reject_not_midnight():
    from .xls import ShownAsDate, xls_bytes

    rows = [list(G2_HEADER)]
    for receipt, moment in [
        ("TK5XA1BC2D", dt.date(2025, 11, 5)),  # a date alone, as a date-only format shows it
        ("TK5XA1BC2E", dt.datetime(2025, 11, 5, 0, 0, 0)),  # midnight, shown with its time
        # A time of day the format does not show is still the line's time.
        ("TK5XA1BC2F", ShownAsDate(dt.datetime(2025, 11, 5, 10, 0, 0))),
    ]:
        cells = pay_row(receipt, 111, "05-11-2025 21:45:13").cells()
        cells[1] = moment
        cells[5] = 111.0
        rows.append(cells)

    _, lines, rejects, _ = read(xls_bytes(rows))

    assert [(line.receipt, line.completed_at) for line in lines] == [
        ("TK5XA1BC2E", dt.datetime(2025, 11, 4, 21, 0, tzinfo=UTC)),
        ("TK5XA1BC2F", dt.datetime(2025, 11, 5, 7, 0, tzinfo=UTC)),
    ]
    assert [number for number, *_ in rejects] == [2]
    assert "Completion Time" in rejects[0][1]


def test_an_xls_whose_formatting_xlrd_cannot_read_is_read_without_it():
    from .xls import xls_bytes

    rows = [list(G2_HEADER)]
    cells = pay_row("TK5XA1BC2D", 111, "05-11-2025 21:45:13").cells()
    cells[1] = dt.datetime(2025, 11, 5, 21, 45, 13)
    cells[5] = 111.0
    rows.append(cells)
    # A column-width record (GCW) of the wrong size: xlrd only checks it when it reads the
    # formatting, and then fails with an AssertionError.
    broken_formatting = struct.pack("<HH", 0x00AB, 4) + b"\x00" * 4

    _, lines, rejects, _ = read(xls_bytes(rows, sheet_records=broken_formatting))

    assert rejects == []
    assert [(line.receipt, line.paid_in) for line in lines] == [("TK5XA1BC2D", Decimal("111.00"))]


def _damaged_xlsx() -> bytes:
    source = zipfile.ZipFile(io.BytesIO(g2_xlsx(sheet_rows(), preamble=Preamble())))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename.endswith("sheet1.xml"):
                content = content[: len(content) * 2 // 3]  # cut off mid-row
            target.writestr(item, content)
    return out.getvalue()


def test_a_damaged_xlsx_is_refused_as_a_file_not_a_crash():
    with pytest.raises(StatementFormatError, match="XLSX file is damaged"):
        read(_damaged_xlsx())


def test_any_damage_to_an_xls_is_read_or_refused_never_a_crash():
    good = g2_xls(sheet_rows(), preamble=Preamble())
    outcomes = {"read": 0, "refused": 0}
    for seed in range(1000, 1150):
        chance = random.Random(seed)
        damaged = bytearray(good)
        for _ in range(3):
            damaged[chance.randrange(512, len(damaged))] = chance.randrange(256)
        try:
            read(bytes(damaged))
        except StatementFormatError:
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert outcomes["refused"] > 0 and outcomes["read"] > 0, outcomes


def test_spreadsheet_times_are_rounded_to_the_second_and_a_date_alone_is_refused():
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(list(G2_HEADER))
    for receipt, moment, shown in [
        ("TK5XA1BC2D", dt.datetime(2025, 11, 5, 21, 45, 12, 999_000), "dd-mm-yyyy hh:mm:ss"),
        ("TK5XA1BC2E", dt.datetime(2025, 11, 5, 21, 45, 13, 200_000), "dd-mm-yyyy hh:mm:ss"),
        ("TK5XA1BC2F", dt.datetime(2025, 11, 5), "dd-mm-yyyy"),
        # A time of day the format does not show is still the line's time.
        ("TK5XA1BC2G", dt.datetime(2025, 11, 5, 10, 0, 0), "dd-mm-yyyy"),
    ]:
        cells = pay_row(receipt, 111, "05-11-2025 21:45:13").cells()
        cells[1] = moment
        sheet.append(cells)
        sheet.cell(row=sheet.max_row, column=2).number_format = shown
    out = io.BytesIO()
    book.save(out)

    _, lines, rejects, _ = read(out.getvalue())

    assert [(line.receipt, line.completed_at) for line in lines] == [
        ("TK5XA1BC2D", dt.datetime(2025, 11, 5, 18, 45, 13, tzinfo=UTC)),
        ("TK5XA1BC2E", dt.datetime(2025, 11, 5, 18, 45, 13, tzinfo=UTC)),
        ("TK5XA1BC2G", dt.datetime(2025, 11, 5, 7, 0, tzinfo=UTC)),
    ]
    assert [(number, "Completion Time" in reason) for number, reason, _ in rejects] == [(4, True)]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (15.980000000000001, "15.98"),
        (4040.0, "4040"),
        (-89636.0, "-89636"),
        (0.1 + 0.2, "0.30"),
        (1.005, "1.005"),
        (37941535, "37941535"),
        (None, ""),
        ("", ""),
    ],
)
def test_float_cells_become_exact_decimal_text(value, text):
    assert cell_text(value) == text


# --- Daraja Pull Transactions ---------------------------------------------------------------------


def test_pull_transactions_array_of_arrays_is_read_as_paid_in_lines():
    data = pull_json(
        [
            pull_transaction("LHG31AA5TX", "168.00", "2020-08-05T10:13:00Z"),
            pull_transaction("LHG31AA5TY", "233.80", "2020-08-05 10:20:00", msisdn="2547****108"),
        ]
    )

    parsed, lines, rejects, _ = read(data)

    assert parsed.file_format == StatementFormat.PULL_JSON
    assert rejects == []
    first, second = lines
    assert first.receipt == "LHG31AA5TX"
    assert first.completed_at == dt.datetime(2020, 8, 5, 10, 13, tzinfo=UTC)  # Z is UTC
    assert second.completed_at == dt.datetime(2020, 8, 5, 7, 20, tzinfo=UTC)  # no zone: EAT
    assert first.paid_in == Decimal("168.00")
    assert second.amount == Decimal("233.80")
    assert first.other_party == "722000108 - JOHN DOE"
    assert first.account == "37941535"
    assert first.kind == "payment"


def test_pull_transactions_with_no_transactions_is_an_empty_statement():
    body = {
        "ResponseRefID": "x",
        "ResponseCode": "1001",
        "ResponseMessage": "No transactions",
        "Response": "[[]]",
    }

    _, lines, rejects, _ = read(json.dumps(body).encode())

    assert lines == [] and rejects == []


def test_a_pull_transactions_error_response_is_refused():
    with pytest.raises(StatementFormatError, match="error"):
        parse_statement(pull_json([], code="500.001.1001"))


TX = {
    "transactionId": "LHG31AA5TX",
    "trxDate": "2020-08-05T10:13:00Z",
    "msisdn": 722000108,
    "sender": "JOHN DOE",
    "transactiontype": "c2b-pay-bill-debit",
    "billreference": "37941535",
    "amount": "168.00",
}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "not a Pull Transactions response"),
        ([], "not a Pull Transactions response"),
        ({"hello": "world"}, "neither ResponseCode nor Response"),
        ([TX], "neither ResponseCode nor Response"),  # transactions without their response
        (
            {"requestId": "x", "errorCode": "401.001", "errorMessage": "Invalid Access Token"},
            "error response, not transactions: 401.001 Invalid Access Token",
        ),
        ({"ResponseCode": "1000", "Response": {"a": 1}}, "'Response' is not a list"),
        ({"ResponseCode": "1000"}, "no 'Response' list"),
        ([{"ResponseCode": "1000", "Response": [[TX]]}, {"x": 1}], "response 2 of 2"),
        ([1, 2], "not a Pull Transactions response"),
    ],
)
def test_json_that_is_not_a_pull_transactions_response_is_refused_naming_why(body, message):
    with pytest.raises(StatementFormatError, match=re.escape(message)):
        parse_statement(json.dumps(body).encode())


@pytest.mark.parametrize("depth", [40, 900, 3000, 100_000])
def test_deeply_nested_json_is_refused_not_a_crash(depth):
    with pytest.raises(StatementFormatError, match="nested too deeply"):
        parse_statement(b"[" * depth + b"]" * depth)
    # Inside a transaction too, where a value would be turned back into text.
    nested = "[" * depth + "]" * depth
    body = f'{{"ResponseCode": "1000", "Response": [[{{"transactionId": {nested}}}]]}}'
    with pytest.raises(StatementFormatError, match="nested too deeply"):
        read(body.encode())


@pytest.mark.parametrize(
    "body",
    [
        {"responseCode": "1000", "response": [[TX]]},  # keys in another case
        {"Response Code": "1000", "Response": [[TX]]},  # with spaces, as transcribed
        [[TX]],  # the bare array of arrays
        [{"ResponseCode": "1000", "Response": [[TX]]}],  # pages
        {"status": 200, "response": {"ResponseCode": "1000", "Response": [[TX]]}},  # captured
    ],
)
def test_every_shape_of_a_pull_response_gives_its_transactions(body):
    _, lines, rejects, _ = read(json.dumps(body).encode())

    assert rejects == []
    assert [(line.receipt, line.paid_in) for line in lines] == [("LHG31AA5TX", Decimal("168.00"))]


def test_no_records_without_a_response_list_is_an_empty_statement():
    body = {"RequestID": "x", "ResponseCode": "1001", "ResponseMessage": "No records found"}

    _, lines, rejects, _ = read(json.dumps(body).encode())

    assert lines == [] and rejects == []


REAL_PULL = real_payloads("pull_*.json")


@pytest.mark.skipif(not REAL_PULL, reason=f"real payloads not found in {REAL_PAYLOADS}")
@pytest.mark.parametrize("path", REAL_PULL, ids=lambda p: p.name)
def test_every_real_pull_transactions_payload_is_read_or_refused_with_its_error(path):
    body = json.loads(path.read_text())
    inner = body.get("response", body)
    if "errorCode" in inner:
        with pytest.raises(StatementFormatError, match=re.escape(inner["errorCode"])):
            parse_statement(path.read_bytes())
    else:
        _, lines, rejects, _ = read(path.read_bytes())
        assert inner["ResponseCode"] == "1001" and lines == [] and rejects == []


def test_a_float_amount_in_pull_json_is_read_as_decimal_not_float():
    data = pull_json([pull_transaction("LHG31AA5TX", "0", "2020-08-05 10:13:00")]).replace(
        b'"0"', b"233.8"
    )

    _, lines, _, _ = read(data)

    assert lines[0].amount == Decimal("233.80")


def test_a_pull_row_without_a_receipt_is_rejected():
    data = pull_json([pull_transaction("", "10.00", "2020-08-05 10:13:00")])

    _, lines, rejects, _ = read(data)

    assert lines == []
    assert rejects[0][0] == 1 and "Receipt" in rejects[0][1]


# --- The row reader directly ----------------------------------------------------------------------


def test_the_row_reader_keeps_the_amount_on_one_side_only():
    parsed = parse_statement(g2_csv([]))
    reader = RowReader(parsed.layout)
    cells = pay_row("TK5XA1BC2D", 0, "05-11-2025 21:45:13").cells()
    cells[6] = "-650.00"
    cells[5] = "0.00"

    outcome = reader.read(cells)

    assert outcome.kind == "ok"
    assert outcome.cells[5] == "" and outcome.cells[6] == "-650.00"


@pytest.mark.parametrize("amount", ["-168", '"-168.00"', '"(168.00)"', '"KES -168"'])
def test_a_negative_pull_amount_is_rejected_not_read_as_money_paid_in(amount):
    data = pull_json(
        [
            pull_transaction("LHG31AA5TX", "AMOUNT", "2020-08-05 10:13:00"),
            pull_transaction("LHG31AA5TY", "233.80", "2020-08-05 10:20:00"),
        ]
    ).replace(b'"AMOUNT"', amount.encode())

    _, lines, rejects, _ = read(data)

    assert [line.receipt for line in lines] == ["LHG31AA5TY"]
    text = amount.strip('"')
    assert [(number, reason) for number, reason, *_ in rejects] == [
        (
            1,
            f"the amount {text!r} is negative: a Pull transaction is money paid in, and a "
            "negative one has no documented meaning",
        )
    ]


def test_a_pull_transaction_that_is_not_an_object_is_rejected_saying_so():
    body = {"ResponseCode": "1000", "Response": [[TX, 42, "LHG31AA5TZ"]]}

    _, lines, rejects, _ = read(json.dumps(body).encode())

    assert [line.receipt for line in lines] == ["LHG31AA5TX"]
    assert [(number, reason) for number, reason, *_ in rejects] == [
        (2, "the transaction is not a JSON object: 42"),
        (3, "the transaction is not a JSON object: LHG31AA5TZ"),
    ]
