"""Test support shared by every app's tests and the benchmarks: Daraja payloads in their real
shapes, real worker and server processes, and factories that make payments and API keys the
way the system does. Outside the installed apps; production code never imports it."""

from .daraja import (
    OMIT,
    REAL_PAYLOADS,
    REPO_ROOT,
    c2b_body,
    real_payloads,
    stk_accepted,
    stk_failure_body,
    stk_success_body,
)
from .processes import (
    REDIS_START,
    PrivateRedis,
    celery_beat,
    celery_worker,
    database_url_for_subprocess,
    free_port,
    postgres_up,
    private_redis,
    redis_up,
    restart_postgres,
    start_redis,
    stop_process,
    stop_redis,
    subprocess_env,
    wait_for,
    web_server,
)

__all__ = [
    "OMIT",
    "REAL_PAYLOADS",
    "REDIS_START",
    "REPO_ROOT",
    "PrivateRedis",
    "c2b_body",
    "celery_beat",
    "celery_worker",
    "database_url_for_subprocess",
    "free_port",
    "postgres_up",
    "private_redis",
    "real_payloads",
    "redis_up",
    "restart_postgres",
    "start_redis",
    "stk_accepted",
    "stk_failure_body",
    "stk_success_body",
    "stop_process",
    "stop_redis",
    "subprocess_env",
    "wait_for",
    "web_server",
]
