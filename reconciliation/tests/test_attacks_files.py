"""Attacks through the statement file: a few kilobytes that once held a server thread for 40
minutes, took a process to 1.7 GB, stored 190 MB of rejects or crashed with a MemoryError.
Each file is built here (``hostile.py``); each must be read within the limits or refused,
naming the limit, quickly and without a 500."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from reconciliation.formats.limits import StatementFormatError
from reconciliation.imports import statement_import
from reconciliation.models import StatementReject

from . import hostile
from .builders import Preamble, g2_csv, g2_xlsx, pay_row

pytestmark = pytest.mark.django_db


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fails the test (instead of hanging it for minutes) when the body takes longer."""

    def expired(signum, frame):
        raise AssertionError(f"took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def imported(data: bytes, name: str = "statement"):
    return statement_import(data=data, file_name=name)


def test_an_xlsx_declaring_the_whole_sheet_as_its_size_is_read_by_its_cells_only():
    data = hostile.xlsx_declaring_dimension("A1:XFD1048576")
    assert len(data) < 10_000

    with within(20):
        result = imported(data, "dimension.xlsx")

    assert result.statement.line_count == 1
    assert result.run.summary["lines"] == 1


def test_an_xlsx_shared_string_zip_bomb_is_refused_by_its_compression_ratio():
    data = hostile.xlsx_with_shared_string("BOMB", 30 * 1024 * 1024)
    assert len(data) < 200_000

    with within(20), pytest.raises(StatementFormatError, match="RECONCILIATION_MAX_COMPRESSION"):
        imported(data, "bomb.xlsx")


def test_an_xlsx_over_the_decompressed_limit_is_refused_by_what_it_declares(settings):
    settings.RECONCILIATION_MAX_DECOMPRESSED_BYTES = 4096

    with pytest.raises(StatementFormatError, match="RECONCILIATION_MAX_DECOMPRESSED_BYTES"):
        imported(g2_xlsx(hostile.ONE_ROW, preamble=Preamble()), "big.xlsx")


def test_one_huge_shared_string_repeated_on_many_rows_is_refused_not_stored_as_rejects():
    # 900,000 characters: under the ratio check's floor, far over a cell's limit (Excel's own,
    # 32,767); 200 rows that would each be a reject keeping it twice.
    data = hostile.xlsx_with_shared_string("HUGE", 900_000, rows=200)
    assert len(data) < 20_000

    with within(20), pytest.raises(StatementFormatError, match="RECONCILIATION_MAX_CELL_CHARS"):
        imported(data, "huge.xlsx")
    assert StatementReject.objects.count() == 0


def test_a_value_in_the_sheets_last_column_is_refused_naming_the_column_limit():
    with pytest.raises(StatementFormatError, match=r"column 16384.*RECONCILIATION_MAX_COLUMNS"):
        imported(hostile.xlsx_with_value_in_column("XFD"), "wide.xlsx")


def test_a_row_numbered_past_the_row_limit_is_refused(settings):
    settings.RECONCILIATION_MAX_ROWS = 1000

    with within(20), pytest.raises(StatementFormatError, match="RECONCILIATION_MAX_ROWS"):
        imported(hostile.xlsx_with_row_number(1_048_576), "far.xlsx")


def test_a_csv_with_more_rows_than_the_limit_is_refused(settings):
    settings.RECONCILIATION_MAX_ROWS = 5
    rows = [pay_row(f"TK5XA{n:05d}", 5, "05-11-2025 10:01:00") for n in range(100)]

    with pytest.raises(StatementFormatError, match="RECONCILIATION_MAX_ROWS"):
        imported(g2_csv(rows, preamble=Preamble()), "long.csv")


def test_an_xls_whose_merged_range_spans_the_sheet_is_read_quickly():
    data = hostile.xls_with_merged_range()

    started = time.monotonic()
    with within(20):
        result = imported(data, "merged.xls")

    assert result.statement.line_count == 1
    assert time.monotonic() - started < 20


def test_reading_past_the_time_limit_is_refused_naming_it(settings):
    settings.RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS = 0.001
    data = hostile.xls_with_merged_range()

    with pytest.raises(StatementFormatError, match="RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS"):
        imported(data, "slow.xls")


def test_the_time_limit_holds_when_another_timer_is_already_running(settings):
    # The SIGALRM timer is not available (someone else's is running): the rows' own check,
    # at the latest when the file has been read, still refuses it.
    settings.RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS = 0.001
    previous = signal.signal(signal.SIGALRM, lambda *args: None)
    signal.setitimer(signal.ITIMER_REAL, 3600)
    try:
        with pytest.raises(StatementFormatError, match="RECONCILIATION_IMPORT_TIME_LIMIT"):
            imported(hostile.xls_with_merged_range(), "slow.xls")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "literal",
    ["1E+100000000", "1E-100000000", "1E+999999999999999999", "1E+99999999999999999999999"],
)
def test_a_pull_amount_with_an_absurd_exponent_is_a_reject_naming_it(literal):
    data = hostile.pull_with_amount(literal)
    assert len(data) < 400

    with within(10):
        result = imported(data, "pull.json")

    assert result.statement.line_count == 0
    reject = StatementReject.objects.get(statement=result.statement)
    assert literal in reject.reason
    assert "exponent" in reject.reason
    assert max(len(cell) for cell in reject.raw) < 200


def test_a_reject_keeps_a_bounded_part_of_a_huge_cell_marked_as_cut(settings):
    settings.RECONCILIATION_REJECT_MAX_CHARS = 500
    data = hostile.csv_with_rejected_long_cell(200_000, rows=3)

    result = imported(data, "rejects.csv")

    rejects = list(StatementReject.objects.filter(statement=result.statement))
    assert len(rejects) == 3
    for reject in rejects:
        assert len(reject.reason) < 600
        assert sum(len(cell) for cell in reject.raw) < 700
        assert any("characters cut]" in cell for cell in reject.raw)


# --- Through the upload API: answered at once, read by the worker, refused with the reason ----


def upload(api, data, name):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return api.post(
            "/reconciliation/statements/",
            {"file": SimpleUploadedFile(name, data)},
            format="multipart",
        )


@pytest.mark.parametrize(
    ("build", "name", "reason"),
    [
        (
            lambda: hostile.xlsx_with_shared_string("BOMB", 30 * 1024 * 1024),
            "bomb.xlsx",
            "RECONCILIATION_MAX_COMPRESSION_RATIO",
        ),
        (
            lambda: hostile.xlsx_with_shared_string("HUGE", 900_000, rows=200),
            "huge.xlsx",
            "RECONCILIATION_MAX_CELL_CHARS",
        ),
        (
            lambda: hostile.xlsx_with_value_in_column("XFD"),
            "wide.xlsx",
            "RECONCILIATION_MAX_COLUMNS",
        ),
    ],
)
def test_a_hostile_upload_is_accepted_then_its_run_fails_naming_the_limit(api, build, name, reason):
    with within(30):
        response = upload(api, build(), name)

    assert response.status_code == 202
    run = api.get(response["Location"]).json()
    assert run["state"] == "failed"
    assert reason in run["error"]
    assert run["statement"]["reject_count"] == 0
    assert api.get(f"/reconciliation/runs/{run['id']}/rejects/").json()["results"] == []


def test_a_huge_exponent_in_a_pull_upload_is_a_reject_not_a_500(api):
    with within(10):
        response = upload(api, hostile.pull_with_amount("1E+999999999999999999"), "pull.json")

    assert response.status_code == 202
    run = api.get(response["Location"]).json()
    assert run["state"] == "completed"
    (reject,) = api.get(f"/reconciliation/runs/{run['id']}/rejects/").json()["results"]
    assert "1E+999999999999999999" in reject["reason"] and "exponent" in reject["reason"]


def test_the_command_reads_within_the_same_limits(tmp_path):
    from django.core.management import CommandError, call_command

    path = tmp_path / "bomb.xlsx"
    path.write_bytes(hostile.xlsx_with_shared_string("BOMB", 30 * 1024 * 1024))

    with within(30), pytest.raises(CommandError, match="RECONCILIATION_MAX_COMPRESSION_RATIO"):
        call_command("reconcile_statement", str(path))
