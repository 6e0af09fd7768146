"""Settings, all read from the environment (and an optional `.env` file) through `env.py`.

The defaults are the embedded ones `make run` uses: SQLite, a filesystem Celery broker that needs
no server, the database as the shared cache, and the local Daraja simulator. Production sets
DATABASE_URL (PostgreSQL), CELERY_BROKER_URL and CACHE_URL (Redis) and real Daraja credentials.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import (
    BASE_DIR,
    env_bool,
    env_choice,
    env_decimal,
    env_float,
    env_int,
    env_list,
    env_str,
    load_env_file,
)

# A .env file beside manage.py is read if present; real environment variables win over it.
load_env_file()

VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. In production set it (environment or .env) to a "
            "long random string: python -c 'import secrets; print(secrets.token_urlsafe(50))'. "
            "For development set DJANGO_DEBUG=true (a .env copied from .env.example does), "
            'or run commands with make manage ARGS="..." as make run does.'
        )
    SECRET_KEY = "insecure-development-key-set-DJANGO_SECRET_KEY-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "core",
    "payments",
    "callbacks",
    "reconciliation",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "core.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out admin login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mpesa_project.urls"
WSGI_APPLICATION = "mpesa_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
try:
    # A persistent connection (DB_CONN_MAX_AGE > 0) is checked before it is reused, by web
    # requests and worker tasks alike (mpesa_project/celery.py).
    _default_db = dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0),
        conn_health_checks=True,
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL cannot be read: {exc}") from None
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file: WAL lets readers run beside the writer, and
    # IMMEDIATE transactions take the write lock up front instead of failing half-way.
    _default_db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests that start real worker processes need a test database those processes can open:
    # a file, not pytest's default in-memory database.
    _default_db["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
elif _default_db["ENGINE"] == "django.db.backends.postgresql":
    _default_db.setdefault("OPTIONS", {})
    _default_db["OPTIONS"].setdefault("connect_timeout", 5)
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (shared by every process: Daraja token, locks) --------------------------------
CACHE_URL = env_str("CACHE_URL", "db://")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        }
    }
elif CACHE_URL == "db://":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "cache_table",
        }
    }
elif CACHE_URL == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(
        f"CACHE_URL={CACHE_URL!r} is not supported: use redis://host:port/db, db:// or locmem://"
    )

# --- Auth, i18n, static --------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Admin logins are throttled by django-axes: after ADMIN_LOGIN_FAILURE_LIMIT failed attempts for
# one username from one address, that pair is locked out (429) for ADMIN_LOGIN_LOCKOUT_MINUTES,
# counted again from each attempt made while locked. A successful login clears the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("ADMIN_LOGIN_LOCKOUT_MINUTES", 15.0, minimum=0.1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ONLY_ADMIN_SITE = True
# The client's address as the rest of the project reads it (TRUSTED_PROXY_COUNT).
AXES_CLIENT_IP_CALLABLE = "core.net.client_ip"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "Africa/Nairobi"  # what the admin shows; storage is UTC (USE_TZ)
USE_I18N = True
USE_TZ = True
# Times to the second with the zone (2025-11-05 13:00:30 EAT), not en-us "1 p.m.".
FORMAT_MODULE_PATH = ["mpesa_project.formats"]
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)

# --- REST framework ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["core.auth.HasApiClient"],
    "DEFAULT_THROTTLE_CLASSES": ["core.auth.ApiKeyRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.parsers.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "M-Pesa Payments & Reconciliation API",
    "DESCRIPTION": "STK Push payments with a callback inbox, audited state changes and "
    "idempotent requests.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"PaymentStatusEnum": "payments.models.PaymentStatus"},
}

# --- Celery --------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: messages are files under var/broker, shared by web, worker, beat.
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Short socket timeouts: when Redis is down, the callback view must still answer quickly
    # (the row is already stored; the re-drive sweeper enqueues it later).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
    }
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
# Celery's Django fix-up closes every database connection around each task unless this count
# is set; out of reach, it leaves them to DB_CONN_MAX_AGE (mpesa_project/celery.py).
CELERY_DB_REUSE_MAX = 1 << 30
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CALLBACK_REDRIVE_INTERVAL = env_float("CALLBACK_REDRIVE_INTERVAL", 60.0, minimum=1.0)
PAYMENTS_SWEEP_INTERVAL = env_float("PAYMENTS_SWEEP_INTERVAL", 15.0, minimum=1.0)
CALLBACK_DRAIN_INTERVAL = env_float("CALLBACK_DRAIN_INTERVAL", 5.0, minimum=0.5)
RECONCILIATION_REDRIVE_INTERVAL = env_float("RECONCILIATION_REDRIVE_INTERVAL", 300.0, minimum=1.0)
# Statement imports: the sweeper's period, and how long a queued import waits for its
# wake-up before the sweeper sends another (s).
RECONCILIATION_IMPORT_SWEEP_INTERVAL = env_float(
    "RECONCILIATION_IMPORT_SWEEP_INTERVAL", 60.0, minimum=1.0
)
RECONCILIATION_IMPORT_SWEEP_AFTER = env_float(
    "RECONCILIATION_IMPORT_SWEEP_AFTER", 60.0, minimum=0.0
)
CELERY_BEAT_SCHEDULE = {
    "callbacks-redrive": {
        "task": "callbacks.tasks.redrive_callbacks",
        "schedule": CALLBACK_REDRIVE_INTERVAL,
    },
    "callbacks-drain": {
        "task": "callbacks.tasks.drain_callbacks",
        "schedule": CALLBACK_DRAIN_INTERVAL,
    },
    "callbacks-purge-bodies": {
        "task": "callbacks.tasks.purge_callback_bodies",
        "schedule": 86400.0,
    },
    "payments-sweep": {
        "task": "payments.tasks.sweep_payments",
        "schedule": PAYMENTS_SWEEP_INTERVAL,
    },
    # Exact statement matches whose automatic move to SUCCESS a crash interrupted.
    "reconciliation-auto-resolve-redrive": {
        "task": "reconciliation.tasks.redrive_auto_resolve",
        "schedule": RECONCILIATION_REDRIVE_INTERVAL,
    },
    # Statement imports whose wake-up was lost, or whose worker stopped.
    "reconciliation-import-sweep": {
        "task": "reconciliation.tasks.sweep_statement_imports",
        "schedule": RECONCILIATION_IMPORT_SWEEP_INTERVAL,
    },
}

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

# --- Reconciliation ------------------------------------------------------------------------
# Tolerance pass: a statement line and a payment without a shared receipt may match when their
# completion times are at most this many seconds apart (and amount, payer, account agree).
RECONCILIATION_MATCH_WINDOW_SECONDS = env_int("RECONCILIATION_MATCH_WINDOW_SECONDS", 600, minimum=0)
# A statement line credits a payment only if it was completed after the payment was created;
# this many seconds of clock difference between M-Pesa and us are allowed.
RECONCILIATION_CREDIT_CLOCK_SKEW_SECONDS = env_int(
    "RECONCILIATION_CREDIT_CLOCK_SKEW_SECONDS", 120, minimum=0
)
# Largest statement accepted by the upload API (bytes); the command has no limit.
RECONCILIATION_MAX_UPLOAD_BYTES = env_int(
    "RECONCILIATION_MAX_UPLOAD_BYTES", 50 * 1024 * 1024, minimum=1024
)
# Processes reading a large CSV in parallel when Arrow cannot (1: in the calling process);
# default min(2, cores).
RECONCILIATION_PARSE_WORKERS = env_int(
    "RECONCILIATION_PARSE_WORKERS", min(2, os.cpu_count() or 1), minimum=1
)
# Reading limits (API, admin and command alike): a statement over one is refused, naming it.
# Rows (a spreadsheet's own row numbers count: a row numbered 1,048,576 is over 1,000,000).
RECONCILIATION_MAX_ROWS = env_int("RECONCILIATION_MAX_ROWS", 2_000_000, minimum=1)
# Columns of a spreadsheet or Pull row, and characters of one of their cells (Excel's own
# limit); a CSV's cells are its bytes, bounded by the upload size.
RECONCILIATION_MAX_COLUMNS = env_int("RECONCILIATION_MAX_COLUMNS", 256, minimum=16)
RECONCILIATION_MAX_CELL_CHARS = env_int("RECONCILIATION_MAX_CELL_CHARS", 32_767, minimum=256)
# An XLSX's parts inflated (all together; its shared strings at most an eighth of it), and
# the compression ratio of any part over 1 MiB.
RECONCILIATION_MAX_DECOMPRESSED_BYTES = env_int(
    "RECONCILIATION_MAX_DECOMPRESSED_BYTES", 512 * 1024 * 1024, minimum=1024 * 1024
)
RECONCILIATION_MAX_COMPRESSION_RATIO = env_int(
    "RECONCILIATION_MAX_COMPRESSION_RATIO", 100, minimum=10
)
# Reading and matching one statement (s).
RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS = env_float(
    "RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS", 600.0, minimum=1.0
)
# Characters a reject keeps of its reason, and of its cells together (the rest marked cut).
RECONCILIATION_REJECT_MAX_CHARS = env_int("RECONCILIATION_REJECT_MAX_CHARS", 2000, minimum=100)

# --- Security ------------------------------------------------------------------------------
# Safaricom's published callback source addresses (DARAJA.md §7: the 12 commonly published
# plus two that some lists add). CIDR ranges are accepted.
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
# Bearer token for /metrics; empty: /metrics is served only when DJANGO_DEBUG=true.
METRICS_TOKEN = env_str("METRICS_TOKEN")

if not DEBUG:
    # HTTPS everywhere, as `manage.py check --deploy` expects. Behind a TLS-terminating proxy,
    # set DJANGO_SECURE_PROXY_SSL_HEADER=true so Django knows the original request was HTTPS.
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Load balancers probe health over plain HTTP and do not follow redirects: /health/ answers
    # them directly (it carries no secret and changes nothing).
    SECURE_REDIRECT_EXEMPT = [r"^health/$"]
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

# --- Logging -------------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "mask": {"()": "core.logging.MaskingFilter"},
        "context": {"()": "core.logging.ContextFilter"},
    },
    "formatters": {
        "kv": {"()": "core.logging.KeyValueFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "kv",
            "filters": ["context", "mask"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own handlers (runserver's request lines, debug-only console) write
        # unmasked: a callback URL's token, a phone number in a query string. Everything goes
        # through the masked console instead.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
