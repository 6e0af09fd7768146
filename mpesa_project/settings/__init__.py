"""Settings, all read from the environment (and an optional `.env` file) through `env.py`.

The defaults are the embedded ones `make run` uses: SQLite, a filesystem Celery broker that needs
no server, the database as the shared cache, and the local Daraja simulator. Production sets
DATABASE_URL (PostgreSQL), CELERY_BROKER_URL and CACHE_URL (Redis) and real Daraja credentials.

Split by concern; each module reads its own variables once (importing what it needs from
the others):

- ``base``: environment, apps, database, cache, auth, static files, REST framework, logging
- ``workers``: Celery and the beat schedule
- ``mpesa``: Daraja, payments and the callback inbox
- ``reconciliation``: statement matching and reading limits
- ``security``: callback sources, proxies, idempotency, rates, HTTPS, production checks
- ``webhooks``: outbound webhook delivery
"""

# --- Error reporting (optional) --------------------------------------------------------------
# Sentry, with the Django and Celery integrations, when SENTRY_DSN is set; every event masked
# as the logs are (core.sentry). The DSN is a credential: it is never logged.
from ..env import env_float as _env_float
from ..env import env_str as _env_str
from .base import *  # noqa: F403
from .mpesa import *  # noqa: F403
from .reconciliation import *  # noqa: F403
from .security import *  # noqa: F403
from .webhooks import *  # noqa: F403
from .workers import *  # noqa: F403

SENTRY_DSN = _env_str("SENTRY_DSN", "")
SENTRY_TRACES_SAMPLE_RATE = _env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0, minimum=0.0, maximum=1.0)
if SENTRY_DSN:
    from core.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=MPESA_ENV,  # noqa: F405
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )
