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

from .base import *  # noqa: F403
from .mpesa import *  # noqa: F403
from .reconciliation import *  # noqa: F403
from .security import *  # noqa: F403
from .webhooks import *  # noqa: F403
from .workers import *  # noqa: F403
