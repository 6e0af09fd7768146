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


REQUEST_ID_HEADER = "mpesa_request_id"


@signals.before_task_publish.connect
def _send_the_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A task sent while handling a request (or another task) carries its request id."""
    from core.logging import request_id_var

    if headers is not None and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id_var.get()


@signals.task_prerun.connect
def _log_context_in(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    """The task's log lines carry its id and the request id it was sent with."""
    from core.logging import request_id_var, task_id_var

    if task is None or getattr(task.request, "is_eager", False):
        return  # run in the caller: its lines keep the caller's ids
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) or "-"
    task.request._log_tokens = (  # type: ignore[attr-defined]
        request_id_var.set(str(request_id)),
        task_id_var.set(task_id or "-"),
    )


@signals.task_postrun.connect
def _log_context_out(task: Task | None = None, **_: Any) -> None:
    from core.logging import request_id_var, task_id_var

    tokens = getattr(task.request, "_log_tokens", None) if task is not None else None
    if tokens:
        request_id_var.reset(tokens[0])
        task_id_var.reset(tokens[1])


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
