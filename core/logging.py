"""Structured, masked logs: key=value lines carrying the request id; phone numbers masked.

Secrets (passkey, consumer secret, tokens, API keys, callback tokens) are never passed to a
logger by the code; this filter is the second line of defence for phone numbers, which do
legitimately travel through the system.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# 2547XXXXXXXX / 2541XXXXXXXX and 07XXXXXXXX / 01XXXXXXXX not embedded in longer digit runs.
_PHONE = re.compile(r"(?<!\d)(?:254|0)([17]\d{8})(?!\d)")


# The per-payment callback token is a credential: never let a URL carry it into a log line.
_CALLBACK_PATH = re.compile(r"(/callback/)[A-Za-z0-9_\-]{8,}")
# Bearer credentials (API keys, Daraja tokens) if a header is ever logged.
_BEARER = re.compile(r"(?i)(bearer\s+|basic\s+)[A-Za-z0-9._~+/=\-]+")
_API_KEY = re.compile(r"mpk_[0-9a-f]{8}_[A-Za-z0-9_\-]+")


def mask_text(text: str) -> str:
    def _mask(match: re.Match[str]) -> str:
        whole = match.group(0)
        return whole[:4] + "*" * (len(whole) - 8) + whole[-4:]

    text = _CALLBACK_PATH.sub(r"\1<token>", text)
    text = _BEARER.sub(r"\1<redacted>", text)
    text = _API_KEY.sub("mpk_<redacted>", text)
    return _PHONE.sub(_mask, text)


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
        return True


class KeyValueFormatter(logging.Formatter):
    """``time level logger request_id=… msg="…" key=value …`` (extra fields prefixed ``ctx_``)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            record.levelname.lower(),
            record.name,
            f"request_id={getattr(record, 'request_id', '-')}",
            f"msg={json.dumps(record.getMessage())}",
        ]
        for key, value in sorted(record.__dict__.items()):
            if key.startswith("ctx_"):
                parts.append(f"{key[4:]}={_render(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + mask_text(self.formatException(record.exc_info))
        return line


def _render(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def ctx(**fields: Any) -> dict[str, Any]:
    """``logger.info("...", extra=ctx(payment_id=...))``: structured fields for one line."""
    return {f"ctx_{key}": value for key, value in fields.items()}
