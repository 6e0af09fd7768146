"""The Celery application, so that `celery -A mpesa_project worker` and `beat` work."""

import os
from typing import Any

from celery import Celery, Task, signals
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpesa_project.settings")

app = Celery("mpesa_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
