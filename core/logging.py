"""Structured, masked logs: key=value lines (or JSON, LOG_FORMAT=json) carrying the request id
and, in a Celery task, the task id; phone numbers masked.

A task runs with the request id of the request (or task) that sent it: the id travels in the
message's headers (mpesa_project.celery), so one request's lines can be followed into the
worker. A task sent by beat has none: its lines carry ``request_id=-`` and its task id.

Secrets (passkey, consumer secret, tokens, API keys, callback tokens) are never passed to a
logger by the code; this filter is the second line of defence for phone numbers, which do
legitimately travel through the system.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
task_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="-")

# Every log line (the application's, Celery's, gunicorn's, `make run`'s) is timed in East
# Africa Time, the zone the API and the admin show, with its offset written out.
LOG_TIME_ZONE = ZoneInfo("Africa/Nairobi")


def log_time(created: float) -> str:
    """``2026-11-27T13:30:45.123+03:00``: a log record's time in LOG_TIME_ZONE."""
    return datetime.fromtimestamp(created, LOG_TIME_ZONE).isoformat(timespec="milliseconds")


# A Kenyan mobile number in any of the forms people and URLs write it: 2547XXXXXXXX,
# +254 7XX XXX XXX, 254-7XX-XXX-XXX, 07XX XXX XXX, 7XXXXXXXX, and URL-encoded (%2B254%207XX…,
# + for a space in a query string, or after any percent-escape: %3D254…, %22254…%22); 1XX
# numbers alike. Separators (space, dash, %20, +) only where people put them, so that dotted
# addresses and UUIDs are not taken for numbers; not inside longer runs of digits or hex. A
# bare nine digits counts only for 7XX and 10X/11X.
_SEP = r"(?:[ \-+]|%20)?"
_PHONE = re.compile(
    r"(?:(?<=%[0-9A-Fa-f]{2})|(?<![0-9A-Fa-f%]))"
    r"(?P<prefix>(?:\+|%2[Bb])?254" + _SEP + r"|0)?"
    r"(?P<a>[17]\d\d)" + _SEP + r"(?P<b>\d\d\d)" + _SEP + r"(?P<c>\d\d\d)"
    r"(?![0-9A-Fa-f])"
)


def _mask_phone(match: re.Match[str]) -> str:
    """Normalised to 254…, then masked: every form of one number logs the same way."""
    digits = match["a"] + match["b"] + match["c"]
    if match["prefix"] is None and digits[0] == "1" and digits[1] not in "01":
        return match.group(0)  # nine digits starting 1 that no Kenyan mobile number has
    return f"254{digits[:1]}****{digits[-4:]}"


# The per-payment callback token and an account's C2B URL token are credentials: never let a
# URL carry one into a log line.
_CALLBACK_PATH = re.compile(r"(/callback/|/c2b/)[A-Za-z0-9_\-]{8,}")
# Bearer credentials (API keys, Daraja tokens) if a header is ever logged.
_BEARER = re.compile(r"(?i)(bearer\s+|basic\s+)[A-Za-z0-9._~+/=\-]+")
_API_KEY = re.compile(r"mpk_[0-9a-f]{8}_[A-Za-z0-9_\-]+")


def mask_text(text: str) -> str:
    text = _CALLBACK_PATH.sub(r"\1<token>", text)
    text = _BEARER.sub(r"\1<redacted>", text)
    text = _API_KEY.sub("mpk_<redacted>", text)
    return _PHONE.sub(_mask_phone, text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = mask_text(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key.startswith("ctx_") and isinstance(value, str):
                setattr(record, key, mask_text(value))
        return True


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "task_id"):
            record.task_id = task_id_var.get()
        return True


class KeyValueFormatter(logging.Formatter):
    """``time level logger request_id=… msg="…" key=value …`` (extra fields prefixed ``ctx_``)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            log_time(record.created),
            record.levelname.lower(),
            record.name,
            f"request_id={_render(getattr(record, 'request_id', '-'))}",
        ]
        task_id = getattr(record, "task_id", "-")
        if task_id != "-":
            parts.append(f"task_id={_render(task_id)}")
        parts.append(f"msg={json.dumps(record.getMessage())}")
        for key, value in sorted(record.__dict__.items()):
            if key.startswith("ctx_"):
                parts.append(f"{key[4:]}={_render(value)}")
        line = " ".join(parts)
        if record.exc_info:
            # Indented, every line: a message inside the exception cannot start a line that
            # reads as an entry of its own.
            trace = mask_text(self.formatException(record.exc_info))
            line += "".join(f"\n  {part}" for part in trace.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (LOG_FORMAT=json), for log pipelines: ``time``, ``level``,
    ``logger``, ``request_id``, ``task_id``, ``msg``, the line's fields, and ``exc`` (the
    masked traceback). JSON escapes quotes and newlines, so no value can forge a line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": log_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "task_id": getattr(record, "task_id", "-"),
            "msg": record.getMessage(),
        }
        for key, value in sorted(record.__dict__.items()):
            if key.startswith("ctx_") and key[4:] not in entry:
                entry[key[4:]] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


# Values written bare; anything else (spaces, quotes, =, newlines, control or non-ASCII
# characters, empty) is written as a JSON string, so that no value can forge a field or a line.
_BARE = re.compile(r"[A-Za-z0-9_.,:;/@+*<>%~-]+")


def _render(value: Any) -> str:
    text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text)


def ctx(**fields: Any) -> dict[str, Any]:
    """``logger.info("...", extra=ctx(payment_id=...))``: structured fields for one line."""
    return {f"ctx_{key}": value for key, value in fields.items()}
