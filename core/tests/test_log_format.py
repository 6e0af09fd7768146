"""LOG_FORMAT=json, the task id on a task's lines, and the request id carried from a web
request into the Celery task it sends (a real worker)."""

import io
import json
import logging
import subprocess
import sys

import pytest
from django.test import Client

from core.logging import (
    ContextFilter,
    JsonFormatter,
    KeyValueFormatter,
    MaskingFilter,
    ctx,
    request_id_var,
    task_id_var,
)
from payments.models import Payment, PaymentStatus
from testsupport import REPO_ROOT, celery_worker, stk_success_body, subprocess_env, wait_for
from testsupport.factories import PaymentFactory


def _line(formatter: logging.Formatter, message: str, *, exc: bool = False, **fields) -> str:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("test.log_format")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if exc:
            try:
                raise ValueError("number 0712345678\nforged line")
            except ValueError:
                logger.exception(message, extra=ctx(**fields))
        else:
            logger.info(message, extra=ctx(**fields))
    finally:
        logger.removeHandler(handler)
    return buffer.getvalue()


def test_a_json_line_is_one_object_masked_and_unforgeable():
    request = request_id_var.set("req-1")
    task = task_id_var.set("task-9")
    try:
        written = _line(
            JsonFormatter(),
            'paid "x"\n{"level": "critical"} by 0712345678',
            exc=True,
            amount=100,
            note='a"b\nc',
            phone="254712345678",
        )
    finally:
        request_id_var.reset(request)
        task_id_var.reset(task)
    lines = written.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and entry["logger"] == "test.log_format"
    assert (entry["request_id"], entry["task_id"]) == ("req-1", "task-9")
    assert entry["msg"] == 'paid "x"\n{"level": "critical"} by 2547****5678'
    assert entry["amount"] == 100 and entry["note"] == 'a"b\nc'
    assert entry["phone"] == "2547****5678"
    assert "ValueError: number 2547****5678" in entry["exc"] and "0712345678" not in written
    assert entry["time"].endswith("+03:00")


def test_key_value_lines_name_the_task_only_in_a_task():
    assert "task_id=" not in _line(KeyValueFormatter(), "outside a task")
    token = task_id_var.set("4f1c-task")
    try:
        assert " task_id=4f1c-task " in _line(KeyValueFormatter(), "inside")
    finally:
        task_id_var.reset(token)


@pytest.mark.parametrize("log_format", ["json", "keyvalue"])
def test_a_process_started_with_log_format_writes_that_format(log_format):
    """`manage.py check` logs a line at start-up (django-axes): JSON objects with
    LOG_FORMAT=json, key=value lines by default."""
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=subprocess_env(LOG_FORMAT=log_format),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = [line for line in done.stderr.decode().splitlines() if "AXES" in line]
    assert lines
    for line in lines:
        if log_format == "json":
            assert json.loads(line)["logger"] == "axes.apps"
        else:
            assert " info axes.apps request_id=- msg=" in line


@pytest.mark.services
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_task_logs_with_the_request_id_of_the_request_that_sent_it(settings):
    """A callback posted with X-Request-ID wakes the drain; the worker's lines for that
    task carry the request's id and the task's own id."""
    log = settings.VAR_DIR / "test-worker-request-id.log"
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_TRACE", amount="10.00")
    with celery_worker(concurrency=1, log_path=log):
        response = Client().post(
            f"/payments/callback/{token}/",
            data=stk_success_body(checkout_request_id="ws_CO_TRACE", amount=10),
            content_type="application/json",
            secure=True,
            HTTP_X_REQUEST_ID="trace-7f3a",
        )
        assert response.status_code == 200
        wait_for(
            lambda: Payment.objects.get(pk=payment.pk).status == PaymentStatus.SUCCESS,
            timeout=60,
        )
        wait_for(lambda: 'msg="drained callbacks"' in log.read_text(), timeout=30)
    drained = [line for line in log.read_text().splitlines() if 'msg="drained callbacks"' in line]
    assert any(" request_id=trace-7f3a task_id=" in line for line in drained), drained
