"""The Celery application, so that `celery -A mpesa_project worker` and `beat` work."""

import os
from typing import Any

from celery import Celery, Task, signals
from django.db import close_old_connections

from .env import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpesa_project.settings")

app = Celery("mpesa_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _project_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """The worker and beat log through the project's LOGGING (key=value, masked, East Africa
    Time like every log line) instead of Celery's own format in the process's local time; the
    command line's --loglevel still applies."""
    import logging.config

    from django.conf import settings

    settings_or_exit()
    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@app.on_configure.connect
def _settings_or_exit(**_: Any) -> None:
    """`celery worker`/`beat` read the settings first here: a configuration error is one line
    naming the variable (a web process has loaded its settings long before)."""
    settings_or_exit()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _connections_as_for_a_request(task: Task | None = None, **_: Any) -> None:
    """Before and after each task, treat the database connections as Django does around a web
    request: close those that broke or outlived ``DB_CONN_MAX_AGE`` and keep the others.
    Celery's own Django fix-up would close them all around every task (its reuse count is set
    out of reach in the settings), so that each task opened a new PostgreSQL connection.
    Tasks run eagerly inside a caller's transaction are left alone."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    close_old_connections()
