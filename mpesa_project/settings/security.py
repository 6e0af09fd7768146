"""Security: callback source addresses, proxies, verification, idempotency, API rates,
HTTPS, and the refusal of production settings that are not production's."""

from __future__ import annotations

import ipaddress

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from ..env import env_bool, env_choice, env_decimal, env_float, env_int, env_list, env_str
from .base import DEBUG
from .mpesa import (
    _SIMULATOR_DEFAULTS,
    MPESA_BASE_URL,
    MPESA_CONNECT_TIMEOUT,
    MPESA_CONSUMER_KEY,
    MPESA_ENV,
    MPESA_PASSKEY,
    MPESA_READ_TIMEOUT,
    MPESA_SHORTCODE,
)
from .workers import CELERY_BEAT_SCHEDULE

# --- Security ------------------------------------------------------------------------------
# Safaricom's published callback source addresses (docs/daraja.md, "Operational facts": the
# 12 commonly published plus two that some lists add). CIDR ranges are accepted.
SAFARICOM_CALLBACK_IPS = [
    "196.201.214.200",
    "196.201.214.206",
    "196.201.213.114",
    "196.201.214.207",
    "196.201.214.208",
    "196.201.213.44",
    "196.201.212.127",
    "196.201.212.128",
    "196.201.212.129",
    "196.201.212.132",
    "196.201.212.136",
    "196.201.212.138",
    "196.201.212.69",
    "196.201.212.74",
]
MPESA_CALLBACK_ALLOWED_IPS = env_list("MPESA_CALLBACK_ALLOWED_IPS", SAFARICOM_CALLBACK_IPS)
for _entry in MPESA_CALLBACK_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"MPESA_CALLBACK_ALLOWED_IPS: {_entry!r} is not an IP address or CIDR range"
        ) from None
# off: accept from anywhere; flag: accept, but mark and log callbacks from other addresses;
# enforce: refuse (403) and record them as rejected.
MPESA_CALLBACK_IP_MODE = env_choice(
    "MPESA_CALLBACK_IP_MODE",
    "off" if MPESA_ENV == "simulator" else "flag",
    ("off", "flag", "enforce"),
)
# The reverse proxies in front of the app (addresses or CIDR ranges). X-Forwarded-For is read
# only on requests whose socket peer is one of them, walked from the right past the proxies
# listed; anyone connecting straight to gunicorn is the client whatever the header says.
# "unix": a peer on a Unix socket (gunicorn bound to unix:/path, nginx in front).
# Default: none (the socket address is always the client).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
for _entry in TRUSTED_PROXIES:
    if _entry == "unix":  # a peer on a Unix socket (nginx proxying to gunicorn's socket)
        continue
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES: {_entry!r} is not an IP address, a CIDR range or 'unix'"
        ) from None
# Deprecated: how many proxies append to X-Forwarded-For. Alone it believed the header from
# any peer, so it is refused without TRUSTED_PROXIES; with it, it caps the entries read.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
if TRUSTED_PROXY_COUNT and not TRUSTED_PROXIES:
    raise ImproperlyConfigured(
        "TRUSTED_PROXY_COUNT is deprecated and no longer trusts X-Forwarded-For from any peer: "
        "set TRUSTED_PROXIES to your proxies' addresses (e.g. 127.0.0.1 for a proxy on this "
        "host) and remove TRUSTED_PROXY_COUNT"
    )
# Confirm a success callback with an STK Query before crediting: always, above an amount
# (MPESA_VERIFY_ABOVE, KES), or never.
MPESA_VERIFY_SUCCESS = env_choice("MPESA_VERIFY_SUCCESS", "never", ("always", "above", "never"))
MPESA_VERIFY_ABOVE = env_decimal("MPESA_VERIFY_ABOVE", "10000")
# An Idempotency-Key in progress is leased for this many seconds: past it, a request that
# died mid-push no longer holds the key (a retry gets the payment as it stands, or takes the
# key if no payment was made). Longer than the slowest STK Push request: two OAuth fetches and
# two pushes (a rejected token is refreshed once), each up to connect + read timeout.
_SLOWEST_PUSH = 4 * (MPESA_CONNECT_TIMEOUT + MPESA_READ_TIMEOUT)
IDEMPOTENCY_LEASE_SECONDS = env_float("IDEMPOTENCY_LEASE_SECONDS", _SLOWEST_PUSH + 10, minimum=1.0)
if IDEMPOTENCY_LEASE_SECONDS <= _SLOWEST_PUSH:
    raise ImproperlyConfigured(
        f"IDEMPOTENCY_LEASE_SECONDS={IDEMPOTENCY_LEASE_SECONDS:g} must be longer than the "
        f"slowest STK Push request, 4 x (MPESA_CONNECT_TIMEOUT + MPESA_READ_TIMEOUT) = "
        f"{_SLOWEST_PUSH:g}s"
    )
# Idempotency keys are deleted this long after they were first used (a retry after it is a
# new request); the beat task runs every IDEMPOTENCY_PURGE_INTERVAL seconds.
IDEMPOTENCY_KEY_RETENTION_SECONDS = env_float(
    "IDEMPOTENCY_KEY_RETENTION_SECONDS", 24 * 3600.0, minimum=3600.0
)
if IDEMPOTENCY_KEY_RETENTION_SECONDS <= IDEMPOTENCY_LEASE_SECONDS:
    raise ImproperlyConfigured(
        "IDEMPOTENCY_KEY_RETENTION_SECONDS must be longer than IDEMPOTENCY_LEASE_SECONDS"
    )
IDEMPOTENCY_PURGE_INTERVAL = env_float("IDEMPOTENCY_PURGE_INTERVAL", 3600.0, minimum=1.0)
CELERY_BEAT_SCHEDULE["core-idempotency-keys-purge"] = {
    "task": "core.tasks.purge_idempotency_keys",
    "schedule": IDEMPOTENCY_PURGE_INTERVAL,
}
# Request rates per API key (DRF throttle syntax: N/second|minute|hour|day).
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "600/min")
API_STK_PUSH_RATE_LIMIT = env_str("API_STK_PUSH_RATE_LIMIT", "120/min")
# Keys that encrypt secrets at rest (webhook signing secrets), comma-separated Fernet keys
# (python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"):
# the first encrypts, all decrypt. Empty: derived from DJANGO_SECRET_KEY.
ENCRYPTION_KEYS = env_list("ENCRYPTION_KEYS", [])
for _key in ENCRYPTION_KEYS:
    try:
        Fernet(_key.encode())
    except ValueError:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes, as "
            "Fernet.generate_key() makes"
        ) from None
# Bearer token for /metrics; empty: /metrics is served only when DJANGO_DEBUG=true.
METRICS_TOKEN = env_str("METRICS_TOKEN")

if not DEBUG:
    # HTTPS everywhere, as `manage.py check --deploy` expects. Behind a TLS-terminating proxy,
    # set DJANGO_SECURE_PROXY_SSL_HEADER=true so Django knows the original request was HTTPS.
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Load balancers probe health over plain HTTP and do not follow redirects: /health/ answers
    # them directly (it carries no secret and changes nothing).
    SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^health/live$", r"^health/ready$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

if MPESA_ENV == "production":
    _problems = []
    if DEBUG:
        _problems.append("DJANGO_DEBUG must be false")
    if MPESA_SHORTCODE == "174379" or _SIMULATOR_DEFAULTS["MPESA_PASSKEY"] == MPESA_PASSKEY:
        _problems.append("MPESA_SHORTCODE/MPESA_PASSKEY are Safaricom's public sandbox values")
    if "sandbox.safaricom" in MPESA_BASE_URL or MPESA_BASE_URL.startswith("http://"):
        _problems.append(f"MPESA_BASE_URL={MPESA_BASE_URL} is not production Daraja over https")
    if _SIMULATOR_DEFAULTS["MPESA_CONSUMER_KEY"] == MPESA_CONSUMER_KEY:
        _problems.append("MPESA_CONSUMER_KEY is the simulator's")
    if _problems:
        raise ImproperlyConfigured("Refusing production settings: " + "; ".join(_problems))
