"""Celery: the broker (embedded filesystem or Redis), task behaviour and the beat schedule."""

from __future__ import annotations

from ..env import env_bool, env_float, env_int, env_str
from .base import VAR_DIR

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
# The local journal of requests the database could not take (callbacks.journal): its folder
# (on the web host's own disk), its size limit, and how often the beat drains it.
CALLBACK_JOURNAL_DIR = env_str("CALLBACK_JOURNAL_DIR", str(VAR_DIR / "journal"))
CALLBACK_JOURNAL_MAX_BYTES = env_int("CALLBACK_JOURNAL_MAX_BYTES", 256 * 1024 * 1024, minimum=1024)
CALLBACK_JOURNAL_DRAIN_INTERVAL = env_float("CALLBACK_JOURNAL_DRAIN_INTERVAL", 10.0, minimum=1.0)
# C2B recovery: how often each account with Pull Transactions is pulled (s).
C2B_PULL_INTERVAL = env_float("C2B_PULL_INTERVAL", 900.0, minimum=10.0)
# Health (core.health): beat's scheduler records a heartbeat, and sends a heartbeat task for
# the workers, every HEARTBEAT_INTERVAL s; /health/ready fails when either is older than its
# limit. A worker's limit allows for a queue that is busy for a while.
HEARTBEAT_INTERVAL = env_float("HEARTBEAT_INTERVAL", 10.0, minimum=1.0)
HEALTH_BEAT_MAX_AGE = env_float("HEALTH_BEAT_MAX_AGE", 60.0, minimum=2.0)
HEALTH_WORKER_MAX_AGE = env_float("HEALTH_WORKER_MAX_AGE", 120.0, minimum=2.0)
CELERY_BEAT_SCHEDULER = "core.beat.HeartbeatScheduler"
CELERY_BEAT_SCHEDULE = {
    "core-heartbeat": {
        "task": "core.tasks.heartbeat",
        "schedule": HEARTBEAT_INTERVAL,
    },
    "callbacks-journal-drain": {
        "task": "callbacks.tasks.drain_journal",
        "schedule": CALLBACK_JOURNAL_DRAIN_INTERVAL,
    },
    "payments-c2b-pull": {
        "task": "payments.tasks.pull_c2b",
        "schedule": C2B_PULL_INTERVAL,
    },
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
