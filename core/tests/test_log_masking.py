"""What reaches a log line: phone numbers in every form masked, callback tokens cut, and no
value able to forge a field or a line."""

import io
import json
import logging
import re

import pytest

from core.logging import ContextFilter, KeyValueFormatter, MaskingFilter, ctx, mask_text

TOKEN = "Ab3_-xYz0123456789abcdefghijkLMNOP0123456789"


@pytest.mark.parametrize(
    "text",
    [
        "254712345678",
        "+254712345678",
        "0712345678",
        "712345678",
        "254-712-345-678",
        "+254 712 345 678",
        "0712 345 678",
        "0712-345-678",
        "%2B254%20712%20345%20678",
        "%2b254712345678",
        "+254+712+345+678",  # spaces in a query string
        "GET /x?phone=%2B254%20712%20345%20678&a=1 HTTP/1.1",
        "q=hi%200712345678",
        # After any other percent-escape: an encoded =, quote, colon or comma.
        "GET /login?next=%2Fpay%3Fphone%3D254712345678 HTTP/1.1",
        'referer="https://shop.example/?q=%7B%22phone%22%3A%220712345678%22%7D"',
        "phones=%22254712345678%22",
        "to=a%2C712345678",
    ],
)
def test_every_form_of_a_phone_number_is_masked_the_same_way(text):
    masked = mask_text(text)
    assert re.sub(r"\D", "", masked).find("712345") == -1, masked
    assert "2547****5678" in masked


@pytest.mark.parametrize(
    "text",
    [
        "196.201.214.200",
        "payment 0b1c7123-4567-8901-a712-345678abcdef",
        "ws_CO_27112026103000123712345678",
        "2026-12-04T10:23:45Z",
        "amount=123456789",
    ],
)
def test_addresses_ids_and_times_are_not_taken_for_phone_numbers(text):
    assert mask_text(text) == text


def _line(message, **fields):
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(ctx(**fields))
    ContextFilter().filter(record)
    MaskingFilter().filter(record)
    return KeyValueFormatter().format(record)


@pytest.mark.parametrize(
    "value",
    [
        'x" level=error msg="forged',
        "a=b",
        'one\n2026-12-04T10:00:00Z error payments request_id=- msg="forged"',
        "tab\there",
        "carriage\rreturn",
    ],
)
def test_a_value_cannot_forge_a_field_or_a_line(value):
    line = _line("event", reason=value, payment_id="p1")
    assert "\n" not in line and "\r" not in line
    # Read back as a log reader would: exactly the fields written, the value intact.
    fields = dict(re.findall(r' (\w+)=("(?:[^"\\]|\\.)*"|[^ "]+)', line))
    assert set(fields) == {"request_id", "msg", "payment_id", "reason"}
    assert json.loads(fields["reason"]) == value and fields["payment_id"] == "p1"


def test_an_exception_message_cannot_start_a_line_of_its_own():
    try:
        raise ValueError('bad\n2026-12-04T10:00:00Z error payments msg="forged"')
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, None)
        import sys

        record.exc_info = sys.exc_info()
    line = KeyValueFormatter().format(record)
    assert all(part.startswith("  ") for part in line.splitlines()[1:])


def _emitted(logger_name, message, *args):
    """What the configured handlers write for one record of ``logger_name``."""
    buffer = io.StringIO()
    logger = logging.getLogger(logger_name)
    swapped = []
    node = logger
    while node is not None:
        for handler in node.handlers:
            if isinstance(handler, logging.StreamHandler):
                swapped.append((handler, handler.setStream(buffer)))
        node = node.parent if node.propagate else None
    try:
        logger.info(message, *args)
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)
    return buffer.getvalue()


def test_runserver_request_lines_lose_the_callback_token_and_phone_numbers():
    written = _emitted(
        "django.server",
        '"%s" %s %s',
        f"POST /payments/callback/{TOKEN}/?msisdn=0712345678 HTTP/1.1",
        "200",
        "44",
    )
    assert "/payments/callback/<token>/" in written
    assert TOKEN not in written and "0712345678" not in written


def test_request_lines_lose_a_c2b_url_token():
    written = _emitted(
        "django.server",
        '"%s" %s %s',
        f"POST /c2b/{TOKEN}/confirmation/ HTTP/1.1",
        "200",
        "44",
    )
    assert "/c2b/<token>/confirmation/" in written and TOKEN not in written


def test_gunicorn_access_lines_mask_every_form_of_a_phone_number(tmp_path):
    """Through the MaskingLogger gunicorn.conf.py installs, as a production access log."""
    import datetime
    import runpy
    from types import SimpleNamespace

    from gunicorn.config import Config

    from testsupport import REPO_ROOT

    masking_logger = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))["MaskingLogger"]
    config = Config()
    log_file = tmp_path / "access.log"
    config.set("accesslog", str(log_file))
    logger = masking_logger(config)
    for query in (
        "msisdn=712345678",
        "msisdn=254-712-345-678",
        "msisdn=%2B254%20712%20345%20678",
        "msisdn=+254+712+345+678",
    ):
        uri = f"/payments/callback/{TOKEN}/?{query}"
        environ = {
            "REQUEST_METHOD": "POST",
            "RAW_URI": uri,
            "PATH_INFO": f"/payments/callback/{TOKEN}/",
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_REFERER": f"https://shop.example/pay?{query}",
            "REMOTE_ADDR": "127.0.0.1",
        }
        request = SimpleNamespace(headers=[], path=environ["PATH_INFO"], uri=uri)
        response = SimpleNamespace(status="200 OK", sent=44, headers=[])
        logger.access(response, request, environ, datetime.timedelta(milliseconds=3))
    for handler in logger.access_log.handlers:
        handler.flush()
    written = log_file.read_text()
    assert written.count("2547****5678") >= 8, written  # each line: request and referer
    assert TOKEN not in written
    assert "345678" not in written.replace("%20", "").replace("-", "").replace("+", "")
