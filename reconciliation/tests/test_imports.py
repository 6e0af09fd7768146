"""Statement imports in a worker: the upload only stores the file and queues a run; the
worker's task reads it (progress on the run), leaves it completed or failed with the reason,
and deletes the stored file; the sweeper wakes up what a lost message or a stopped worker left
behind; a run that keeps failing is bounded."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from reconciliation import imports
from reconciliation.formats.rows import RowReader
from reconciliation.imports import statement_accept, statement_process, statements_sweep
from reconciliation.models import ReconciliationRun, RunState, StatementLine, StatementUpload
from reconciliation.tasks import process_statement, sweep_statement_imports

from .builders import Preamble, g2_csv, pay_row

pytestmark = pytest.mark.django_db


def statement(count: int = 3) -> bytes:
    rows = [pay_row(f"TK5XA{n:05d}", 5, "05-11-2025 10:01:00") for n in range(count)]
    return g2_csv(rows, preamble=Preamble())


def post(api, data, name="statement.csv"):
    return api.post(
        "/reconciliation/statements/",
        {"file": SimpleUploadedFile(name, data, content_type="text/csv")},
        format="multipart",
    )


def test_the_upload_stores_the_file_and_queues_the_run_without_reading_it(api):
    data = statement()

    # No commit (the test's transaction stays open): the worker is not woken up.
    response = post(api, data)

    assert response.status_code == 202
    run = ReconciliationRun.objects.get(pk=response.json()["run"]["id"])
    assert run.state == RunState.QUEUED
    assert run.heartbeat_at is not None
    assert bytes(StatementUpload.objects.get(statement=run.statement).data) == data
    assert not StatementLine.objects.exists()
    assert run.statement.line_count == 0


def test_the_worker_is_woken_up_once_the_upload_commits(api):
    with TestCase.captureOnCommitCallbacks(execute=False) as callbacks:
        response = post(api, statement())
    assert len(callbacks) == 1

    callbacks[0]()  # the wake-up: the task runs eagerly in unit tests

    run = ReconciliationRun.objects.get(pk=response.json()["run"]["id"])
    assert run.state == RunState.COMPLETED
    assert run.statement.line_count == 3
    assert not StatementUpload.objects.exists()


def test_the_sweeper_wakes_up_a_queued_import_whose_wake_up_was_lost(api, settings):
    settings.RECONCILIATION_IMPORT_SWEEP_AFTER = 60
    run_id = post(api, statement()).json()["run"]["id"]  # its wake-up never sent

    assert statements_sweep() == 0  # queued a moment ago: its wake-up may be on its way
    ReconciliationRun.objects.filter(pk=run_id).update(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=2)
    )
    assert sweep_statement_imports() == 1  # beat's task; the wake-up runs eagerly

    run = ReconciliationRun.objects.get(pk=run_id)
    assert run.state == RunState.COMPLETED
    assert run.statement.line_count == 3
    assert statements_sweep() == 0


def test_a_run_whose_worker_stopped_is_taken_back_and_one_still_reporting_is_not(api):
    run_id = post(api, statement()).json()["run"]["id"]
    ReconciliationRun.objects.filter(pk=run_id).update(
        state=RunState.PARSING, attempts=1, heartbeat_at=timezone.now()
    )

    assert statements_sweep() == 0
    assert process_statement(run_id) == "nothing to do"  # a duplicate message: no second read

    ReconciliationRun.objects.filter(pk=run_id).update(
        heartbeat_at=timezone.now() - dt.timedelta(hours=1)
    )
    assert statements_sweep() == 1

    run = ReconciliationRun.objects.get(pk=run_id)
    assert run.state == RunState.COMPLETED
    assert run.attempts == 2


def test_a_file_that_keeps_stopping_its_worker_fails_after_the_attempts(api):
    run_id = post(api, statement()).json()["run"]["id"]
    ReconciliationRun.objects.filter(pk=run_id).update(
        state=RunState.PARSING,
        attempts=imports.MAX_ATTEMPTS,
        heartbeat_at=timezone.now() - dt.timedelta(hours=1),
    )

    assert statement_process(run_id=run_id) is None

    run = ReconciliationRun.objects.get(pk=run_id)
    assert run.state == RunState.FAILED
    assert "stopped 3 times" in run.error
    assert not StatementUpload.objects.exists()


def test_an_unexpected_error_queues_the_run_again_then_fails_it(api, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("connection to server at 10.0.0.5 lost")

    monkeypatch.setattr(imports, "build_summary", broken)  # after both engines' writes
    run_id = post(api, statement()).json()["run"]["id"]

    for attempt in range(1, imports.MAX_ATTEMPTS):
        assert process_statement(run_id) == RunState.QUEUED
        run = ReconciliationRun.objects.get(pk=run_id)
        assert run.attempts == attempt
        # The client is told what failed, not the database's address.
        assert run.error == "processing failed (RuntimeError)"
        assert StatementUpload.objects.exists()  # kept for the next attempt
    assert process_statement(run_id) == RunState.FAILED

    run = ReconciliationRun.objects.get(pk=run_id)
    assert run.error == "processing failed (RuntimeError) 3 times"
    assert not StatementUpload.objects.exists()
    assert not StatementLine.objects.exists()


def test_the_run_shows_its_rows_read_while_it_is_read(api, monkeypatch):
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL streams the rows into COPY inside the import's transaction")
    monkeypatch.setattr(imports, "PROGRESS_INTERVAL_SECONDS", 0.0)
    seen: list[tuple[str, int]] = []
    read = RowReader.read

    def watching(self, cells):
        if cells and cells[0] == "TK5XA02500":
            run = ReconciliationRun.objects.get()
            seen.append((run.state, run.rows_read))
        return read(self, cells)

    monkeypatch.setattr(RowReader, "read", watching)
    result = statement_accept(data=statement(3000), file_name="big.csv")

    assert statement_process(run_id=result.run.pk) is not None

    ((state, rows),) = seen
    assert state == RunState.PARSING
    assert 2000 <= rows <= 2510
    run = ReconciliationRun.objects.get()
    assert run.state == RunState.COMPLETED
    assert run.rows_read == 3000 + 7  # the rows, the header and the preamble


def test_beat_runs_the_import_sweeper():
    from django.conf import settings

    from mpesa_project.celery import app

    entries = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "reconciliation.tasks.sweep_statement_imports" in entries
    assert "reconciliation.tasks.sweep_statement_imports" in app.tasks


@pytest.mark.django_db(transaction=True)
def test_callbacks_are_stored_while_a_statement_is_read(monkeypatch):
    """On SQLite the import's transaction holds the database's write lock: reading the file
    inside it (minutes, for a hostile one) left every callback waiting, then failing."""
    if connection.vendor == "postgresql":
        pytest.skip("SQLite's write lock; PostgreSQL has none that callbacks need")
    import threading

    from django.test import Client

    from callbacks.models import InboundCallback
    from testsupport import stk_success_body

    answers: list[int] = []
    read = RowReader.read

    def deliver_a_callback() -> None:
        try:
            response = Client().post(
                "/payments/callback/unknown-token-while-importing/",
                data=stk_success_body(checkout_request_id="ws_CO_WHILE", amount=1),
                content_type="application/json",
            )
            answers.append(response.status_code)
        finally:
            connection.close()

    def reading(self, cells):
        if cells and cells[0] == "TK5XA00002" and not answers:
            thread = threading.Thread(target=deliver_a_callback)
            thread.start()
            thread.join(timeout=20)
            assert answers == [200], "the callback waited on the import's write lock"
        return read(self, cells)

    monkeypatch.setattr(RowReader, "read", reading)

    result = imports.statement_import(data=statement(5), file_name="s.csv")

    assert result.run.state == RunState.COMPLETED
    assert InboundCallback.objects.filter(token_hash__gt="").count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_uploads_are_read_by_a_real_worker(api):
    """Nothing eager: the upload commits and publishes, a separate worker process reads; the
    sweeper wakes up the runs whose wake-up was lost."""
    from testsupport import celery_worker, wait_for

    from . import hostile

    good = post(api, statement(4))
    bomb = post(api, hostile.xlsx_with_shared_string("BOMB", 30 * 1024 * 1024), "bomb.xlsx")
    sized = post(api, hostile.xlsx_declaring_dimension("A1:XFD1048576"), "dimension.xlsx")
    assert good.status_code == bomb.status_code == sized.status_code == 202
    ids = [response.json()["run"]["id"] for response in (good, bomb, sized)]

    def states():
        runs = ReconciliationRun.objects.in_bulk(ids)
        return [runs[pk].state for pk in ids]

    assert states() == [RunState.QUEUED] * 3
    with celery_worker():  # which purges the queue first: the three wake-ups are lost
        late = post(api, statement(2), "late.csv")  # woken up as usual
        wait_for(
            lambda: (
                ReconciliationRun.objects.get(pk=late.json()["run"]["id"]).state
                == RunState.COMPLETED
            ),
            timeout=60,
        )
        assert states() == [RunState.QUEUED] * 3
        assert statements_sweep(older_than=0) == 3  # what beat does every minute
        wait_for(
            lambda: all(state in (RunState.COMPLETED, RunState.FAILED) for state in states()),
            timeout=120,
        )

    assert states() == [RunState.COMPLETED, RunState.FAILED, RunState.COMPLETED]
    runs = ReconciliationRun.objects.select_related("statement").in_bulk(ids)
    assert runs[ids[0]].statement.line_count == 4
    assert "RECONCILIATION_MAX_COMPRESSION_RATIO" in runs[ids[1]].error
    assert runs[ids[2]].statement.line_count == 1
    assert not StatementUpload.objects.exists()


def test_the_command_given_a_file_already_queued_says_so_and_reads_nothing(tmp_path):
    import io
    import json

    from django.core.management import call_command

    data = statement()
    statement_accept(data=data, file_name="s.csv")  # not woken: the transaction stays open
    path = tmp_path / "s.csv"
    path.write_bytes(data)
    out = io.StringIO()

    call_command("reconcile_statement", str(path), stdout=out)

    printed = json.loads(out.getvalue())
    assert printed["already_imported"] is True
    assert printed["state"] == "queued"
    assert not StatementLine.objects.exists()


def test_a_run_uses_the_database_s_own_engine_unless_told_otherwise():
    expected = "postgresql" if connection.vendor == "postgresql" else "python"

    default = imports.statement_import(data=statement(2))
    chosen = imports.statement_import(data=statement(3), engine="python")

    assert default.run.engine == expected
    assert chosen.run.engine == "python"
    assert chosen.run.state == RunState.COMPLETED


@pytest.mark.parametrize("engine", ["nope", "postgresql"])
def test_an_engine_this_database_cannot_run_is_refused_and_nothing_is_stored(engine):
    if engine == "postgresql" and connection.vendor == "postgresql":
        pytest.skip("PostgreSQL runs both engines")

    with pytest.raises(ValueError, match="not available"):
        imports.statement_import(data=statement(), engine=engine)

    assert not ReconciliationRun.objects.exists()
