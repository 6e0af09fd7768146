"""Arrow's CSV read against the row-by-row read it replaces: for any file, the same COPY lines,
rejects (with the cells as Python's csv module reads them), skipped rows and repeated receipts,
or a refusal (ArrowUnsuitable) that sends the file to the row-by-row read."""

from __future__ import annotations

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from reconciliation.engines.postgresql.arrow import ArrowUnsuitable, arrow_suitable, copy_arrow
from reconciliation.engines.postgresql.writer import LineWriter
from reconciliation.formats import parse_statement
from reconciliation.formats.rows import G2_HEADER
from reconciliation.models import LINE_ID_FACTOR

from .builders import Preamble, _csv_line

RECEIPTS = st.one_of(
    st.from_regex(r"TK[A-Z0-9]{8}", fullmatch=True),
    st.sampled_from(["TK1", "tk5abcdef1", " TK5ABCDEF1 ", "TOTALS", "TOTAL:", "Totals", ""]),
    st.sampled_from(["TK5ABCDEF1", "TK5ABCDEF2"]),  # repeats
    st.from_regex(r"[A-Z0-9]{21}", fullmatch=True),
)
TIMES = st.one_of(
    st.builds(
        "{:02d}-{:02d}-2025 {:02d}:{:02d}:{:02d}".format,
        st.integers(1, 31),
        st.integers(1, 12),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
    ),
    st.sampled_from(
        [
            "05-11-2025 10:00",
            "05-11-2025 24:00:00",
            "05-11-2025 23:60:00",
            "05-11-2025 23:59:60",
            "31-02-2025 10:00:00",
            "05-11-1899 10:00:00",
            "2025-11-05 10:00:00",
            "5/11/2025 10:00",
            "25/11/2025 10:00",
            "5-11-2025 10:00:00",
            "",
            "tomorrow",
        ]
    ),
)
AMOUNTS = st.one_of(
    st.builds("{:,}.{:02d}".format, st.integers(0, 10**12 - 1), st.integers(0, 99)),
    st.builds("{}.{}".format, st.integers(0, 99999), st.integers(0, 9)),
    st.sampled_from(
        [
            "",
            "",
            "-60.00",
            "-1,234.00",
            "0.00",
            "1,13,1340.00",
            "abc",
            "1.005",
            "(60.00)",
            "KES 111",
            "12345678901234",
            " 100.00",
        ]
    ),
)
TEXTS = st.one_of(
    st.sampled_from(
        [
            "Pay Utility",
            "Completed",
            "Failed",
            "Pay Bill from 25472****108 - JOHN DOE Acc. 37941535",
            "Business Charge, tariff",
            'Said "hello"',
            "  spaced  ",
            "",
            "Jäne Wanjikũ",
        ]
    ),
    st.text(alphabet=st.sampled_from("ab ,\"'-*"), max_size=6),
)
ACCOUNTS = st.sampled_from([" 37941535", "37941535 ", "  ", "", "A 1", '" quoted"'])


@st.composite
def statements(draw):
    """A G2 CSV and the features that may send it to the row-by-row read."""
    rows = []
    reasons = set()
    for _ in range(draw(st.integers(1, 25))):
        paid, withdrawn = draw(
            st.one_of(
                st.tuples(AMOUNTS, st.just("")),
                st.tuples(st.just(""), AMOUNTS),
                st.tuples(AMOUNTS, AMOUNTS),
            )
        )
        cells = [
            draw(RECEIPTS),
            draw(TIMES),
            "",
            draw(TEXTS),
            draw(st.sampled_from(["Completed", "Completed", "Failed", "", "completed"])),
            paid,
            withdrawn,
            draw(AMOUNTS),
            "true",
            draw(TEXTS),
            draw(TEXTS),
            "",
            draw(ACCOUNTS),
            "KES",
        ]
        shape = draw(st.integers(0, 40))
        if shape == 0:
            cells.append("")
            reasons.add("width")
        elif shape == 1:
            cells = cells[:10]
            reasons.add("width")
        elif shape == 2:
            cells = []
            reasons.add("blank")
        elif shape == 3:
            cells[3] = "two\nlines"
            reasons.add("line break")
        elif shape == 4:
            cells[3] = "back\\slash"
            reasons.add("backslash")
        rows.append(cells)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [_csv_line(cells) for cells in [*Preamble().rows(), G2_HEADER, *rows]]
    data = (newline.join(lines) + draw(st.sampled_from([newline, ""]))).encode()
    return data, reasons


def read_rows(data):
    parsed = parse_statement(data)
    writer = LineWriter(parsed.layout, base=LINE_ID_FACTOR, plain_text=parsed.plain_text)
    sink = Sink()
    writer.write(sink, parsed.rows, check_every_row=False)
    return sink.lines(), writer


def read_arrow(data):
    parsed = parse_statement(data)
    writer = LineWriter(parsed.layout, base=LINE_ID_FACTOR, plain_text=parsed.plain_text)
    sink = Sink()
    if not arrow_suitable(parsed):
        raise ArrowUnsuitable
    copy_arrow(sink, parsed, writer)
    return sink.lines(), writer


class Sink:
    """What a COPY would receive."""

    def __init__(self):
        self.parts = []

    def write(self, data):
        self.parts.append(data if isinstance(data, str) else bytes(data).decode())

    def lines(self):
        return sorted("".join(self.parts).splitlines())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statements())
def test_arrow_reads_every_file_as_the_row_by_row_read_does(statement):
    data, reasons = statement
    note(data.decode())
    expected, python = read_rows(data)
    try:
        lines, arrow = read_arrow(data)
    except ArrowUnsuitable:
        # Only for what Arrow could read differently (or not number as lines).
        assert reasons & {"width", "blank", "line break", "backslash"}
        return
    assert lines == expected
    assert arrow.rejects == python.rejects
    assert arrow.skipped == python.skipped
    assert set(arrow.repeats) == set(python.repeats)


def test_a_clean_portal_file_is_read_by_arrow_with_its_quirks():
    rows = [
        ["TK5ABCDEF1", "05-11-2025 10:00:00", "", "Pay Bill, Acc. 1", "Completed", "1,234.50", "",
         "2,000,000.00", "true", "Pay Utility", "2547****108 - JANE", "", " 37941535", "KES"],
        ["TK5ABCDEF2", "05-11-2025 10:01", "", "Business Charge", "Completed", "", "-33.00", "",
         "true", "Pay Bill Charge", "", "TK5ABCDEF1", "", "KES"],
        ["TK5ABCDEF1", "05-11-2025 10:02:00", "", "again", "Completed", "10.00", "", "1.00",
         "true", "Pay Utility", "", "", "7 ", "KES"],
        ["tk5abcdef3", "05-11-2025 10:03:00", "", "lower case", "Completed", "5.00", "", "1.00",
         "true", "Pay Utility", "", "", "", "KES"],
        ["TK5ABCDEF4", "31-02-2025 10:04:00", "", "no such day", "Completed", "5.00", "", "1.00",
         "true", "Pay Utility", "", "", "", "KES"],
    ]  # fmt: skip
    data = "\r\n".join(_csv_line(c) for c in [G2_HEADER, *rows]).encode() + b"\r\n"

    lines, writer = read_arrow(data)

    assert lines[:3] == [
        "100000002\t2\tTK5ABCDEF1\t05-11-2025 10:00:00\t1234.50\t\\N\t2000000.00\tCompleted\t"
        "Pay Utility\tPay Bill, Acc. 1\t2547****108 - JANE\t\t37941535",
        "100000003\t3\tTK5ABCDEF2\t05-11-2025 10:01\t\\N\t-33.00\t\\N\tCompleted\t"
        "Pay Bill Charge\tBusiness Charge\t\tTK5ABCDEF1\t",
        "100000004\t4\tTK5ABCDEF1\t05-11-2025 10:02:00\t10.00\t\\N\t1.00\tCompleted\t"
        "Pay Utility\tagain\t\t\t7",
    ]
    # The lower-case receipt is canonicalised by the row reader; the 31st of February rejected.
    assert lines[3].startswith("100000005\t5\tTK5ABCDEF3\t2025-11-05 10:03:00\t5.00\t")
    assert [(number, reason) for number, reason, _ in writer.rejects] == [
        (6, "Completion Time '31-02-2025 10:04:00' is not a valid date and time")
    ]
    assert set(writer.repeats) == {2, 4}
    assert read_rows(data)[0] == lines
