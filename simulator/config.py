"""Configuration of the Daraja simulator: one frozen dataclass, read from the environment.

``SIMULATOR_*`` variables win over the ``MPESA_*`` ones, which win over built-in defaults. That
lets the simulator share a ``.env`` with the Django project (which names its Daraja credentials
``MPESA_*``) so both sides agree on key, secret, shortcode and passkey without extra setup, while
``SIMULATOR_*`` can still point the simulator elsewhere. A value that cannot be read stops
start-up with a message naming the variable, like the project's own settings readers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
DEFAULT_TILL_NUMBER = "174380"
DEFAULT_CONSUMER_KEY = "simulator-consumer-key"
DEFAULT_CONSUMER_SECRET = "simulator-consumer-secret"

# How a still-pending STK Query is answered: the older HTTP 500 "being processed" envelope,
# the 2026 HTTP 200 ResultCode "4999" body, or one of the two picked per transaction.
PENDING_STYLES = ("mixed", "legacy", "modern")


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes a simulator run. Times are in seconds."""

    consumer_key: str = DEFAULT_CONSUMER_KEY
    consumer_secret: str = DEFAULT_CONSUMER_SECRET
    shortcode: str = SANDBOX_SHORTCODE
    passkey: str = SANDBOX_PASSKEY
    till_number: str = DEFAULT_TILL_NUMBER
    token_ttl: float = 3599.0
    # Seconds from an accepted push to the callback POST.
    callback_delay: float = 2.0
    # Seconds the virtual customer takes to answer the prompt; None means "same as
    # callback_delay". STK Query reports the final result from that moment on.
    customer_delay: float | None = None
    # Extra seconds after the answer before a "late" callback is POSTed.
    late_delay: float = 10.0
    # Gap between sequential duplicate deliveries of one callback.
    duplicate_gap: float = 1.0
    # httpx timeout for each callback POST.
    callback_timeout: float = 5.0
    # How long a C2B validation URL has to answer before ResponseType decides (Daraja: ~8 s).
    c2b_validation_timeout: float = 8.0
    # Transactions per Pull Transactions page (Daraja does not document its page size).
    pull_page_size: int = 100
    chaos_rate: float = 0.0
    # None: a random seed is drawn at start-up (and printed so the run can be repeated).
    seed: int | None = None
    query_pending: str = "mixed"
    # Statement export: balance of the utility account before the first simulated payment.
    opening_balance: Decimal = Decimal("0")
    account_holder: str = "DARAJA SIMULATOR LTD"
    log_requests: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.chaos_rate <= 1.0:
            raise ValueError(f"chaos_rate must be between 0 and 1, got {self.chaos_rate}")
        if self.query_pending not in PENDING_STYLES:
            raise ValueError(f"query_pending must be one of {PENDING_STYLES}")
        for name in ("token_ttl", "callback_delay", "late_delay", "duplicate_gap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.customer_delay is not None and self.customer_delay < 0:
            raise ValueError("customer_delay must not be negative")
        if self.callback_timeout <= 0:
            raise ValueError("callback_timeout must be positive")
        if self.pull_page_size < 1:
            raise ValueError("pull_page_size must be at least 1")
        if self.c2b_validation_timeout <= 0:
            raise ValueError("c2b_validation_timeout must be positive")
        for name in ("shortcode", "till_number"):
            if not (getattr(self, name).isascii() and getattr(self, name).isdigit()):
                raise ValueError(f"{name} must be digits, got {getattr(self, name)!r}")

    @property
    def answer_delay(self) -> float:
        """Seconds until the virtual customer answers (customer_delay or callback_delay)."""
        return self.callback_delay if self.customer_delay is None else self.customer_delay

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> SimulatorConfig:
        """Build a config from environment variables; keyword overrides win (CLI flags)."""
        env = os.environ if environ is None else environ
        reader = _EnvReader(env)
        values: dict[str, Any] = {
            "consumer_key": reader.text(
                ("SIMULATOR_CONSUMER_KEY", "MPESA_CONSUMER_KEY"), DEFAULT_CONSUMER_KEY
            ),
            "consumer_secret": reader.text(
                ("SIMULATOR_CONSUMER_SECRET", "MPESA_CONSUMER_SECRET"), DEFAULT_CONSUMER_SECRET
            ),
            "shortcode": reader.text(("SIMULATOR_SHORTCODE", "MPESA_SHORTCODE"), SANDBOX_SHORTCODE),
            "passkey": reader.text(("SIMULATOR_PASSKEY", "MPESA_PASSKEY"), SANDBOX_PASSKEY),
            "till_number": reader.text(
                ("SIMULATOR_TILL_NUMBER", "MPESA_TILL_NUMBER"), DEFAULT_TILL_NUMBER
            ),
            "token_ttl": reader.number("SIMULATOR_TOKEN_TTL", 3599.0),
            "callback_delay": reader.number("SIMULATOR_CALLBACK_DELAY", 2.0),
            "customer_delay": reader.optional_number("SIMULATOR_CUSTOMER_DELAY"),
            "late_delay": reader.number("SIMULATOR_LATE_DELAY", 10.0),
            "duplicate_gap": reader.number("SIMULATOR_DUPLICATE_GAP", 1.0),
            "callback_timeout": reader.number("SIMULATOR_CALLBACK_TIMEOUT", 5.0),
            "c2b_validation_timeout": reader.number("SIMULATOR_C2B_VALIDATION_TIMEOUT", 8.0),
            "pull_page_size": reader.optional_int("SIMULATOR_PULL_PAGE_SIZE") or 100,
            "chaos_rate": reader.number("SIMULATOR_CHAOS_RATE", 0.0),
            "seed": reader.optional_int("SIMULATOR_SEED"),
            "query_pending": reader.text(("SIMULATOR_QUERY_PENDING",), "mixed"),
            "opening_balance": reader.decimal("SIMULATOR_OPENING_BALANCE", "0"),
            "account_holder": reader.text(("SIMULATOR_ACCOUNT_HOLDER",), "DARAJA SIMULATOR LTD"),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"invalid simulator configuration: {exc}") from None


class _EnvReader:
    """Reads typed values; empty strings count as unset (docker-compose writes ``VAR=``)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, names: tuple[str, ...], default: str) -> str:
        for name in names:
            value = self._raw(name)
            if value is not None:
                return value
        return default

    def optional_number(self, name: str) -> float | None:
        value = self._raw(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None

    def number(self, name: str, default: float) -> float:
        value = self.optional_number(name)
        return default if value is None else value

    def optional_int(self, name: str) -> int | None:
        value = self._raw(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not an integer") from None

    def decimal(self, name: str, default: str) -> Decimal:
        value = self._raw(name) or default
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name}={value!r} is not a decimal number") from None
        if not number.is_finite():
            raise ValueError(f"{name}={value!r} is not a finite number")
        return number
