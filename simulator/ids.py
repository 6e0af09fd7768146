"""Identifier and timestamp formats that Daraja really uses (docs/daraja.md, "Conventions").

All M-Pesa times are East Africa Time (UTC+3) without an offset, so everything here is
computed in a fixed UTC+3 zone (Kenya has no daylight saving, so no tz database is needed).
Random parts come from a caller-supplied ``random.Random`` so a seeded run is repeatable.
"""

from __future__ import annotations

import base64
import random
import string
import threading
import uuid
import zlib
from datetime import date, datetime, timedelta, timezone

EAT = timezone(timedelta(hours=3), "EAT")

_UPPER = string.ascii_uppercase
_RECEIPT_TAIL_CHARS = string.ascii_uppercase + string.digits
_TOKEN_CHARS = string.ascii_letters + string.digits
# Day-of-month character in a receipt: 1-9, then A=10 ... V=31.
_FIRST_NAMES = ("JOHN", "JANE", "MARY", "JAMES", "PETER", "GRACE", "DAVID", "FAITH", "BRIAN")
_LAST_NAMES = ("DOE", "WANJIKU", "AKINYI", "KAMAU", "OTIENO", "MUTUA", "NJOROGE", "WAFULA")
_DAY_CHARS = "123456789ABCDEFGHIJKLMNOPQRSTUV"
# Receipt year letters: L=2017, M=2018, ... T=2025, U=2026, V=2027.
_YEAR_LETTER_BASE = 2017 - _UPPER.index("L")


def to_eat(ts: float) -> datetime:
    """A POSIX timestamp as an aware datetime in EAT."""
    return datetime.fromtimestamp(ts, EAT)


def daraja_timestamp(when: datetime) -> str:
    """``YYYYMMDDHHmmss`` in EAT: STK ``Timestamp`` and callback ``TransactionDate``."""
    return when.astimezone(EAT).strftime("%Y%m%d%H%M%S")


def parse_daraja_timestamp(value: str) -> datetime | None:
    """Parse a 14-digit EAT timestamp; None when it is not a real date and time."""
    if len(value) != 14 or not (value.isascii() and value.isdigit()):
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=EAT)
    except ValueError:
        return None


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """STK Password: Base64 of the plain concatenation (not a hash), as the portal documents."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode("ascii")


def receipt_prefix(day: date) -> str:
    """First three receipt characters: year letter, month letter (A=Jan), day character."""
    index = day.year - _YEAR_LETTER_BASE
    if not 0 <= index < len(_UPPER):
        raise ValueError(f"no receipt year letter for {day.year}")
    return _UPPER[index] + _UPPER[day.month - 1] + _DAY_CHARS[day.day - 1]


def receipt_date(receipt: str) -> date:
    """Inverse of :func:`receipt_prefix` (a sanity check; Safaricom does not document it)."""
    year = _UPPER.index(receipt[0]) + _YEAR_LETTER_BASE
    month = _UPPER.index(receipt[1]) + 1
    day = _DAY_CHARS.index(receipt[2]) + 1
    return date(year, month, day)


def checkout_request_id(when: datetime, phone: str) -> str:
    """``ws_CO_`` + DDMMYYYYHHmmss (EAT) + milliseconds (not zero-padded) + 9-digit payer."""
    local = when.astimezone(EAT)
    return f"ws_CO_{local:%d%m%Y%H%M%S}{local.microsecond // 1000}{phone[-9:]}"


def mask_msisdn(phone: str) -> str:
    """Org-portal masking: ``254708374149`` -> ``25470****149``."""
    return f"{phone[:5]}****{phone[-3:]}"


def payer_name(phone: str) -> str:
    """A stable, masked payer name for a number (``JOHN **** DOE``, as on org statements)."""
    value = zlib.crc32(phone.encode())
    first = _FIRST_NAMES[value % len(_FIRST_NAMES)]
    last = _LAST_NAMES[(value // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
    return f"{first} **** {last}"


class IdFactory:
    """Generates every opaque identifier of one simulator run, unique within the run.

    A lock guards the shared generator because HTTP requests arrive on many threads.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._lock = threading.Lock()
        # Modern MerchantRequestIDs look like ``b18f-4a07-9aff-d6e1fb096b51174446``: the tail of
        # a v4 UUID (fixed per gateway node) followed by a counter.
        node = uuid.UUID(int=rng.getrandbits(128), version=4)
        self._merchant_node = str(node)[9:]
        self._merchant_counter = rng.randint(1_000, 9_999_999)
        # Error requestIds look like ``9458-79414631-1`` / ``10219-2484793-1``.
        self._request_node = rng.randint(1_000, 99_999)
        self._request_counter = rng.randint(1_000_000, 99_999_999)
        self._receipts: set[str] = set()
        self._checkout_ids: set[str] = set()

    def merchant_request_id(self) -> str:
        with self._lock:
            self._merchant_counter += 1
            return f"{self._merchant_node}{self._merchant_counter}"

    def request_id(self) -> str:
        with self._lock:
            self._request_counter += 1
            return f"{self._request_node}-{self._request_counter}-1"

    def access_token(self) -> str:
        with self._lock:
            return "".join(self._rng.choice(_TOKEN_CHARS) for _ in range(28))

    def receipt(self, when: datetime) -> str:
        """A unique 10-character receipt whose first three characters encode the EAT date."""
        prefix = receipt_prefix(when.astimezone(EAT).date())
        with self._lock:
            while True:
                tail = "".join(self._rng.choice(_RECEIPT_TAIL_CHARS) for _ in range(7))
                receipt = prefix + tail
                if receipt not in self._receipts:
                    self._receipts.add(receipt)
                    return receipt

    def checkout_request_id(self, when: datetime, phone: str) -> str:
        """A unique CheckoutRequestID; on a same-millisecond clash the time moves on 1 ms."""
        with self._lock:
            moment = when
            while True:
                candidate = checkout_request_id(moment, phone)
                if candidate not in self._checkout_ids:
                    self._checkout_ids.add(candidate)
                    return candidate
                moment += timedelta(milliseconds=1)
