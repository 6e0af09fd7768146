"""The PostgreSQL engine's own mechanics: the fast path reads rows exactly as the row reader
does, a date PostgreSQL refuses sends the import down the checked path, the statement's
partitions are attached with the unique index that makes a payment claimable once, and a
failed import leaves nothing behind."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from reconciliation.imports import statement_import
from reconciliation.models import LineMatch, Statement, StatementLine, StatementReject

from .builders import (
    Preamble,
    Row,
    charge_row,
    eat,
    g2_csv,
    make_payment,
    pay_row,
    pull_json,
    pull_transaction,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def tricky_rows():
    return [
        pay_row("TK5XA1BC2A", 1131340, "05-11-2025 21:45:13"),
        pay_row("TK5XA1BC2B", 111, "05-11-2025 21:45"),  # no seconds
        Row(receipt="tk5xa1bc2c", completed="2025-11-05 21:46:00", paid_in="KES 1,000"),
        Row(receipt=" TK5XA1BC2D ", completed="05-11-2025 21:47:00", paid_in=" 5.5 "),
        Row(
            receipt="TK5XA1BC2E",
            completed="05-11-2025 21:48:00",
            paid_in="0.00",
            withdrawn="-650.00",
        ),
        Row(
            receipt="TK5XA1BC2F",
            completed="05-11-2025 21:49:00",
            paid_in="10",
            details="tab\there \\ back",
        ),
        Row(
            receipt="TK5XA1BC2G",
            completed="05-11-2025 21:50:00",
            paid_in="10",
            details="line\nbreak",
        ),
        charge_row("TK5XA1BC2A", 15, "05-11-2025 21:45:13"),
        pay_row("TK5XA1BC2H", 7, "05-11-2025 21:51:00", party="0722000108 – MARY"),
        Row(receipt="TOTALS", completed="05-11-2025 21:52:00", paid_in="1.00"),
        Row(receipt="TK5XA1BC2I", completed="05-11-2025 21:53:00", paid_in="1,13,1340.00"),
        Row(receipt="TK5XA1BC2J", completed="05-11-2025 21:54:00"),
        Row(
            receipt="TK5XA1BC2K", completed="05-11-2025 21:55:00", paid_in="1.00", withdrawn="-1.00"
        ),
        [*pay_row("TK5XA1BC2L", 3, "05-11-2025 21:56:00").cells(), "", ""],  # trailing empties
    ]


def snapshot(statement_id):
    lines = [
        (
            line.line_no,
            line.receipt_number,
            line.completed_at,
            line.paid_in,
            line.withdrawn,
            line.balance,
            line.transaction_status,
            line.reason_type,
            line.details,
            line.other_party,
            line.linked_transaction_id,
            line.account_reference,
            line.match.direction,
            line.match.amount,
            line.match.result,
        )
        for line in StatementLine.objects.filter(
            statement_id=statement_id, match__statement_id=statement_id
        ).select_related("match")
    ]
    rejects = list(
        StatementReject.objects.filter(statement_id=statement_id)
        .order_by("row_number")
        .values_list("row_number", "reason")
    )
    return lines, rejects


def test_the_fast_path_reads_every_row_as_the_python_reader_does():
    data = g2_csv(tricky_rows(), preamble=Preamble())
    # The same rows, one blank line more: a different file (checksum) with the same content.
    other = data + b"\n"

    sql = statement_import(data=data, engine="postgresql", auto_resolve=False)
    python = statement_import(data=other, engine="python", auto_resolve=False)

    sql_lines, sql_rejects = snapshot(sql.statement.pk)
    py_lines, py_rejects = snapshot(python.statement.pk)
    assert sql_lines == py_lines
    assert sql_rejects == py_rejects
    assert [r for r, _ in sql_rejects] == [18, 19, 20]
    assert sql.statement.skipped == {"total": 1}
    details = {line[1]: line[8] for line in sql_lines}
    assert details["TK5XA1BC2F"] == "tab\there \\ back"
    assert details["TK5XA1BC2G"] == "line\nbreak"
    receipts = [line[1] for line in sql_lines]
    assert "TK5XA1BC2C" in receipts and "TK5XA1BC2D" in receipts


def test_pull_rows_are_read_one_by_one_so_a_problem_the_reader_marks_is_a_reject():
    # Times in the portal's own form, which the fast path would otherwise take as they are.
    transactions = [
        pull_transaction("LHG31AA5TX", "168.00", "05-08-2020 10:13:00"),
        pull_transaction("LHG31AA5TY", "-233.80", "05-08-2020 10:20:00"),
    ]
    data = pull_json(transactions)

    sql = statement_import(data=data, engine="postgresql", auto_resolve=False)
    python = statement_import(data=data + b" ", engine="python", auto_resolve=False)

    sql_lines, sql_rejects = snapshot(sql.statement.pk)
    assert (sql_lines, sql_rejects) == snapshot(python.statement.pk)
    assert [line[1] for line in sql_lines] == ["LHG31AA5TX"]
    assert [number for number, _ in sql_rejects] == [2]
    assert "'-233.80' is negative" in sql_rejects[0][1]


def test_a_day_postgresql_refuses_makes_the_import_check_every_row():
    rows = [
        pay_row("TK5XA1BC2A", 10, "05-11-2025 10:00:00"),
        pay_row("TK5XA1BC2B", 20, "30-02-2025 10:00:00"),
        pay_row("TK5XA1BC2C", 30, "31-04-2025 10:00:00"),
        pay_row("TK5XA1BC2D", 40, "29-02-2024 10:00:00"),  # a leap day is fine
    ]

    result = statement_import(data=g2_csv(rows), engine="postgresql")

    lines, rejects = snapshot(result.statement.pk)
    assert [line[1] for line in lines] == ["TK5XA1BC2A", "TK5XA1BC2D"]
    assert [number for number, _ in rejects] == [3, 4]
    assert all("not a valid date" in reason for _, reason in rejects)


def test_the_statement_gets_its_own_attached_partitions():
    result = statement_import(data=g2_csv([pay_row("TK5XA1BC2A", 10, "05-11-2025 10:00:00")]))
    sid = result.statement.pk

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, p.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE c.relname LIKE %s ORDER BY 1",
            [f"%\\_p{sid}"],
        )
        assert cursor.fetchall() == [
            (f"reconciliation_linematch_p{sid}", "reconciliation_linematch"),
            (f"reconciliation_statementline_p{sid}", "reconciliation_statementline"),
        ]


def test_the_database_refuses_a_second_line_claiming_the_same_payment():
    paid = make_payment(amount=10, receipt="TK5XA1BC2A")
    rows = [
        pay_row("TK5XA1BC2A", 10, "05-11-2025 10:00:00"),
        pay_row("TK5XA1BC2B", 10, "05-11-2025 11:00:00"),
    ]
    result = statement_import(data=g2_csv(rows))
    sid = result.statement.pk
    other = LineMatch.objects.get(statement_id=sid, line_id=sid * 100_000_000 + 3)
    assert other.payment_id is None

    with pytest.raises(IntegrityError), transaction.atomic():
        LineMatch.objects.filter(statement_id=sid, line_id=other.line_id).update(payment=paid)


def test_a_failed_import_leaves_nothing_behind(monkeypatch):
    from reconciliation.engines.postgresql import breaks

    def boom(run, cursor):
        raise RuntimeError("disk full")

    monkeypatch.setattr(breaks, "breaks", boom)
    data = g2_csv([pay_row("TK5XA1BC2A", 10, "05-11-2025 10:00:00")])

    with pytest.raises(RuntimeError):
        statement_import(data=data)

    assert Statement.objects.count() == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_class "
            "WHERE relname ~ '^reconciliation_(statementline|linematch)_p[0-9]+'"
        )
        assert cursor.fetchone() == (0,)
    monkeypatch.undo()
    assert statement_import(data=data).created


def test_a_statement_without_a_preamble_takes_its_period_from_its_lines():
    missing = make_payment(amount=10, receipt="TK5ZZZZZZ1", when=eat("05-11-2025 12:00:00"))
    rows = [
        pay_row("TK5XA1BC2A", 10, "05-11-2025 10:00:00"),
        pay_row("TK5XA1BC2B", 10, "05-11-2025 14:00:00"),
    ]

    run = statement_import(data=g2_csv(rows)).run

    assert run.summary["period"]["from_header"] is False
    assert run.summary["classes"]["missing_from_statement"]["count"] == 1
    assert run.summary["classes"]["missing_from_statement"]["our_amount"] == "10.00"
    assert missing.reconciliation_breaks.get().kind == "missing_from_statement"
    assert run.summary["bridge"]["our_total"] == "10.00"
    assert Decimal(run.summary["bridge"]["residual"]) == 0


def parallel_rows():
    rows = [
        pay_row("TK5AAAAAA0", 100, "05-11-2025 08:00:00"),
        pay_row("TK5CCCCCC0", 9, "05-11-2025 08:01:00"),
    ]
    for i in range(1, 40):
        rows.append(pay_row(f"TK5BBBBB{i:02d}", 10 + i, f"05-11-2025 09:{i:02d}:00"))
    rows[10] = Row(receipt="TK5BBBBB10", completed="05-11-2025 09:10:00", paid_in="ten")
    rows[20] = rows[19]  # a repeat within a chunk
    rows.append(pay_row("TK5AAAAAA0", 100, "05-11-2025 08:00:00"))  # matched, across chunks
    rows.append(pay_row("TK5CCCCCC0", 9, "05-11-2025 08:01:00"))  # unknown, across chunks
    rows.append(Row(receipt="TOTAL:", completed="", paid_in="1.00"))
    return rows


@pytest.mark.parametrize("quirk", [None, "multiline", "lone_cr"])
@pytest.mark.parametrize("method", ["arrow", "parallel"])
def test_each_way_of_reading_a_csv_gives_the_same_result(monkeypatch, settings, quirk, method):
    """Arrow's reader and the parallel processes give what the Python engine's row-by-row
    read gives; a record spanning lines sends both to the row-by-row read, and so does a
    lone carriage return in a cell (a record's end for Python's csv module, not a line)."""
    from reconciliation.engines.postgresql import load

    make_payment(amount=100, receipt="TK5AAAAAA0")
    for i in range(1, 40, 3):
        make_payment(amount=10 + i, receipt=f"TK5BBBBB{i:02d}")
    rows = parallel_rows()
    if quirk == "multiline":
        rows[30] = pay_row("TK5BBBBB29", 39, "05-11-2025 09:29:00", details="two\nlines")
    elif quirk == "lone_cr":
        rows[5] = pay_row("TK5BBBBB04", 14, "05-11-2025 09:04:00", details="JOHN\rDOE")
    data = g2_csv(rows, preamble=Preamble())
    if quirk == "lone_cr":
        # Unquoted, as some exports write it (csv.writer would quote it).
        assert data.count(b'"JOHN\rDOE"') == 1
        data = data.replace(b'"JOHN\rDOE"', b"JOHN\rDOE")
    settings.RECONCILIATION_PARSE_WORKERS = 2
    monkeypatch.setattr(load, "PARALLEL_MIN_BYTES", 0)
    if method == "parallel":
        monkeypatch.setattr(load, "arrow_suitable", lambda parsed: False)
    used = []
    copy_arrow, copy_parallel, copy_lines = (
        load.copy_arrow,
        load.copy_parallel,
        load.copy_lines,
    )

    def arrow(*args):
        used.append("copy_arrow")
        return copy_arrow(*args)

    def parallel(*args):
        used.append("copy_parallel")
        return copy_parallel(*args)

    def lines(run, raw, copy_sql, how, **kwargs):
        used.append(how)
        return copy_lines(run, raw, copy_sql, how, **kwargs)

    monkeypatch.setattr(load, "copy_arrow", arrow)
    monkeypatch.setattr(load, "copy_parallel", parallel)
    monkeypatch.setattr(load, "copy_lines", lines)

    read = statement_import(data=data, engine="postgresql", auto_resolve=False)
    serial = statement_import(data=data + b"\n", engine="python", auto_resolve=False)

    expected = {
        ("arrow", None): ["arrow", "copy_arrow"],
        ("arrow", "multiline"): ["arrow", "copy_arrow", "parallel", "copy_parallel", "rows"],
        ("arrow", "lone_cr"): ["parallel", "copy_parallel", "rows"],
        ("parallel", None): ["parallel", "copy_parallel"],
        ("parallel", "multiline"): ["parallel", "copy_parallel", "rows"],
        ("parallel", "lone_cr"): ["parallel", "copy_parallel", "rows"],
    }
    assert used == expected[method, quirk]
    assert snapshot(read.statement.pk) == snapshot(serial.statement.pk)
    assert read.run.summary["classes"] == serial.run.summary["classes"]
    assert read.run.summary["bridge"] == serial.run.summary["bridge"]
    assert read.statement.skipped == {"total": 1}  # the copy has one blank row more
    assert read.statement.reject_count == serial.statement.reject_count
    # The row with a lone carriage return is two records for the csv module, both rejects.
    assert read.statement.reject_count == (3 if quirk == "lone_cr" else 1)
    duplicates = [line for line in snapshot(read.statement.pk)[0] if line[-1] == "duplicate"]
    # One repeat within a chunk, and the two across chunks (matched and unknown).
    assert [line[1] for line in duplicates] == ["TK5BBBBB18", "TK5AAAAAA0", "TK5CCCCCC0"]


def test_the_file_is_cut_at_line_breaks_outside_quotes():
    from reconciliation.engines.postgresql.load import chunks

    data = b'h\n"a\nb",1\nc,2\nd,3\ne,4\n'

    parts = chunks(data, 2, 2)

    assert [data[a:b] for a, b, _ in parts] == [b'"a\nb",1\nc,2\n', b"d,3\ne,4\n"]
    assert [before for _, _, before in parts] == [0, 3]


def test_a_line_break_in_a_quoted_cell_at_a_block_boundary_does_not_make_a_row(monkeypatch):
    """A quoted cell may hold a line break and, after it, text shaped like a statement row.
    Wherever Arrow's blocks end, that text stays inside its cell: it is never read as a line
    of its own (nor are the rows after it renumbered)."""
    from reconciliation.engines.postgresql import arrow

    monkeypatch.setattr(arrow, "ARROW_BLOCK_BYTES", 4096)
    smuggled = (
        "KES\nFAKE000001,05-11-2025 20:00:00,05-11-2025 20:00:00,Pay Utility,Completed,"
        "99999.00,,1.00,,Pay Utility,254722****108 - X,, 1,KES"
    )
    # The carrier row at each position around the end of the first block.
    for n in range(14, 30):
        rows = [
            pay_row(f"TK5BBBB{i:03d}", 10 + i, f"05-11-2025 09:{i:02d}:00") for i in range(n + 5)
        ]
        rows[n] = pay_row(f"TK5BBBB{n:03d}", 15, "05-11-2025 09:05:00", currency=smuggled)
        data = g2_csv(rows, preamble=Preamble())

        read = statement_import(data=data, engine="postgresql", auto_resolve=False)
        serial = statement_import(data=data + b"\n", engine="python", auto_resolve=False)

        lines = snapshot(read.statement.pk)
        assert "FAKE000001" not in {line[1] for line in lines[0]}, n
        assert lines == snapshot(serial.statement.pk), n
