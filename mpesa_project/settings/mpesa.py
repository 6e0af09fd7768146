"""Daraja (environment, credentials, timeouts), payments and the callback inbox."""

from __future__ import annotations

from urllib.parse import urljoin

from django.core.exceptions import ImproperlyConfigured

from ..env import env_bool, env_choice, env_decimal, env_float, env_int, env_str

# --- M-Pesa / Daraja -----------------------------------------------------------------------
MPESA_ENV = env_choice("MPESA_ENV", "simulator", ("simulator", "sandbox", "production"))
_DARAJA_BASE_URLS = {
    "simulator": "http://127.0.0.1:8001",
    "sandbox": "https://sandbox.safaricom.co.ke",
    "production": "https://api.safaricom.co.ke",
}
MPESA_BASE_URL = env_str("MPESA_BASE_URL", _DARAJA_BASE_URLS[MPESA_ENV]).rstrip("/")
_SIMULATOR_DEFAULTS = {
    "MPESA_CONSUMER_KEY": "simulator-consumer-key",
    "MPESA_CONSUMER_SECRET": "simulator-consumer-secret",
    "MPESA_SHORTCODE": "174379",
    # Safaricom's public sandbox passkey for shortcode 174379; the simulator uses it too.
    "MPESA_PASSKEY": "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919",
}


def _mpesa_value(name: str) -> str:
    value = env_str(name)
    if value:
        return value
    if MPESA_ENV == "simulator":
        return _SIMULATOR_DEFAULTS[name]
    raise ImproperlyConfigured(f"{name} is required when MPESA_ENV={MPESA_ENV}")


MPESA_CONSUMER_KEY = _mpesa_value("MPESA_CONSUMER_KEY")
MPESA_CONSUMER_SECRET = _mpesa_value("MPESA_CONSUMER_SECRET")
MPESA_SHORTCODE = _mpesa_value("MPESA_SHORTCODE")
MPESA_PASSKEY = _mpesa_value("MPESA_PASSKEY")
if not (MPESA_SHORTCODE.isascii() and MPESA_SHORTCODE.isdigit()):
    raise ImproperlyConfigured(f"MPESA_SHORTCODE={MPESA_SHORTCODE!r} must be digits only")
MPESA_TRANSACTION_TYPE = env_choice("MPESA_TRANSACTION_TYPE", "paybill", ("paybill", "till"))
MPESA_TILL_NUMBER = env_str("MPESA_TILL_NUMBER", "174380" if MPESA_ENV == "simulator" else "")
if MPESA_TRANSACTION_TYPE == "till" and not (
    MPESA_TILL_NUMBER.isascii() and MPESA_TILL_NUMBER.isdigit()
):
    raise ImproperlyConfigured(
        "MPESA_TILL_NUMBER (digits) is required when MPESA_TRANSACTION_TYPE=till"
    )
MPESA_CALLBACK_URL = env_str("MPESA_CALLBACK_URL", "http://127.0.0.1:8000/payments/callback/")
if not MPESA_CALLBACK_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"MPESA_CALLBACK_URL={MPESA_CALLBACK_URL!r} must be an http(s) URL")
if MPESA_ENV == "production" and not MPESA_CALLBACK_URL.startswith("https://"):
    raise ImproperlyConfigured("MPESA_CALLBACK_URL must use https:// when MPESA_ENV=production")
# Where Daraja reaches this system's C2B URLs (validation and confirmation, per account):
# by default beside the STK callback URL, on the same host.
MPESA_C2B_URL = env_str("MPESA_C2B_URL", urljoin(MPESA_CALLBACK_URL, "/c2b/"))
if not MPESA_C2B_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"MPESA_C2B_URL={MPESA_C2B_URL!r} must be an http(s) URL")
if MPESA_ENV == "production" and not MPESA_C2B_URL.startswith("https://"):
    raise ImproperlyConfigured("MPESA_C2B_URL must use https:// when MPESA_ENV=production")
MPESA_CONNECT_TIMEOUT = env_float("MPESA_CONNECT_TIMEOUT", 5.0, minimum=0.1)
MPESA_READ_TIMEOUT = env_float("MPESA_READ_TIMEOUT", 30.0, minimum=0.1)
# Refresh the OAuth token this many seconds before Daraja says it expires.
MPESA_TOKEN_REFRESH_MARGIN = env_int("MPESA_TOKEN_REFRESH_MARGIN", 60, minimum=0)

# The demo page (/demo/): on by default only against the simulator.
DEMO_ENABLED = env_bool("DEMO_ENABLED", MPESA_ENV == "simulator")

# --- Payments and callbacks ----------------------------------------------------------------
# PENDING payments with no result after this many seconds are asked about with STK Query,
# then again with capped exponential backoff (base, cap) and jitter.
PAYMENTS_QUERY_AFTER = env_float("PAYMENTS_QUERY_AFTER", 60.0, minimum=0.0)
PAYMENTS_QUERY_BACKOFF_BASE = env_float("PAYMENTS_QUERY_BACKOFF_BASE", 30.0, minimum=0.1)
PAYMENTS_QUERY_BACKOFF_MAX = env_float("PAYMENTS_QUERY_BACKOFF_MAX", 600.0, minimum=0.1)
# Past this age, what is still PENDING or INITIATED becomes FAILED ("expired unresolved").
PAYMENTS_EXPIRE_AFTER = env_float("PAYMENTS_EXPIRE_AFTER", 1800.0, minimum=1.0)
PAYMENTS_MIN_AMOUNT = env_decimal("PAYMENTS_MIN_AMOUNT", "1")
PAYMENTS_MAX_AMOUNT = env_decimal("PAYMENTS_MAX_AMOUNT", "250000")
if not (0 < PAYMENTS_MIN_AMOUNT <= PAYMENTS_MAX_AMOUNT):
    raise ImproperlyConfigured("PAYMENTS_MIN_AMOUNT must be > 0 and <= PAYMENTS_MAX_AMOUNT")
# A callback whose payment is not known yet (the initiating request has not committed) is
# retried this many times, this many seconds apart, then kept as an orphan.
CALLBACK_ORPHAN_RETRIES = env_int("CALLBACK_ORPHAN_RETRIES", 5, minimum=0)
CALLBACK_ORPHAN_RETRY_DELAY = env_float("CALLBACK_ORPHAN_RETRY_DELAY", 2.0, minimum=0.0)
# Transient processing errors (database restarted, lock timeout) are retried with backoff.
CALLBACK_MAX_ATTEMPTS = env_int("CALLBACK_MAX_ATTEMPTS", 10, minimum=1)
# Times an API client may replay one failed callback (POST …/callbacks/<id>/replay/); past it,
# only an operator can (the admin's replay): a callback that crashes its worker stays bounded.
CALLBACK_API_REPLAY_LIMIT = env_int("CALLBACK_API_REPLAY_LIMIT", 3, minimum=0)
# Stored callbacks not processed after this many seconds are re-enqueued by the beat sweeper.
CALLBACK_REDRIVE_AFTER = env_float("CALLBACK_REDRIVE_AFTER", 60.0, minimum=1.0)
CALLBACK_MAX_BODY_BYTES = env_int("CALLBACK_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
# A callback refused at intake (no payment has its token, source outside the enforced
# allowlist, body over CALLBACK_MAX_BODY_BYTES) keeps the SHA-256 of its body and this many
# bytes of it: enough for a whole genuine Daraja callback (under 1 KB), a 64th of a junk post.
CALLBACK_REFUSED_BODY_PREFIX_BYTES = env_int("CALLBACK_REFUSED_BODY_PREFIX_BYTES", 1024, minimum=0)
# Refused callbacks stored per source address (IPv6: per /64) and window; beyond it they are
# counted on the last one stored, not stored. Callbacks with a payment's token, or from an
# address on MPESA_CALLBACK_ALLOWED_IPS (Daraja's), are never limited. Counted in the shared
# cache; while the cache is unreachable, in each process.
CALLBACK_REFUSED_RATE_LIMIT = env_str("CALLBACK_REFUSED_RATE_LIMIT", "30/min")
_RATE_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
try:
    _count, _period = CALLBACK_REFUSED_RATE_LIMIT.split("/")
    CALLBACK_REFUSED_RATE = (int(_count), _RATE_PERIODS[_period.strip()[:1]])
    if CALLBACK_REFUSED_RATE[0] < 0:
        raise ValueError
except (ValueError, KeyError):
    raise ImproperlyConfigured(
        f"CALLBACK_REFUSED_RATE_LIMIT={CALLBACK_REFUSED_RATE_LIMIT!r} must be N/second, "
        "N/minute, N/hour or N/day"
    ) from None
# Bodies of refused and invalid callbacks that concern no payment are purged (hash, size,
# headers and the row kept) after this many days by a daily beat task; callbacks linked to,
# flagged on or carrying the token of a payment, those from an address on
# MPESA_CALLBACK_ALLOWED_IPS, and every processed, review, failed or orphan one are kept whole.
CALLBACK_BODY_RETENTION_DAYS = env_int("CALLBACK_BODY_RETENTION_DAYS", 30, minimum=1)
# "batch": stored callbacks are drained in batches (SELECT ... FOR UPDATE SKIP LOCKED) by
# workers woken at most every CALLBACK_WAKEUP_INTERVAL seconds per web process; "task": one
# Celery task per callback.
CALLBACK_PROCESSING = env_choice("CALLBACK_PROCESSING", "batch", ("batch", "task"))
CALLBACK_BATCH_SIZE = env_int("CALLBACK_BATCH_SIZE", 200, minimum=1)
CALLBACK_WAKEUP_INTERVAL = env_float("CALLBACK_WAKEUP_INTERVAL", 0.1, minimum=0.0)
