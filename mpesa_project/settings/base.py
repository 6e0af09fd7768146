"""Core Django settings: environment, apps, database, cache, auth, static files, the REST
framework and logging. Read first; the other modules build on it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from ..env import (
    BASE_DIR,
    env_bool,
    env_choice,
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
# Prometheus (core.metrics): the folder every process of this host writes its metrics to, and
# /metrics reads. Local to the host, on fast disk; emptied only while nothing runs.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics"))
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

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
    "health_check",
    "core",
    "events",
    "payments",
    "callbacks",
    "reconciliation",
    "webhooks",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "core.middleware.MetricsMiddleware",
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

# The version of the API's representations, written on every event (and so every webhook).
API_VERSION = "2026-12-01"

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

# An XLSX export is built whole before it is sent: at most this many rows (CSV is streamed,
# whatever its size). Excel itself stops at 1,048,575.
EXPORT_XLSX_MAX_ROWS = env_int("EXPORT_XLSX_MAX_ROWS", 100_000, minimum=1)

# --- Logging -------------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
# key=value lines for people (the default), or one JSON object per line for a log pipeline.
LOG_FORMAT = env_choice("LOG_FORMAT", "keyvalue", ("keyvalue", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "mask": {"()": "core.logging.MaskingFilter"},
        "context": {"()": "core.logging.ContextFilter"},
    },
    "formatters": {
        "kv": {"()": "core.logging.KeyValueFormatter"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "kv",
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
