"""gunicorn settings: `gunicorn mpesa_project.wsgi` reads this file from the working directory.

Variables come from the environment and the `.env` file beside manage.py, read as the Django
settings read them. It binds 127.0.0.1:8000 unless GUNICORN_BIND says otherwise: a proxy or
load balancer sits in front. The Django settings are loaded here, in the master, so that a
configuration error stops start-up with one line naming the variable, before any worker starts.

Access logs go through the project's masking (callback tokens in URLs, phone numbers), so a
callback URL's token never reaches a log file. gunicorn's own lines and its access lines are
written as the application's are (core/logging.py): key=value, East Africa Time with its offset.
"""

import os
import sys
from pathlib import Path

from gunicorn.glogging import Logger

# The project's packages, whatever the working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from django.core.exceptions import ImproperlyConfigured

from mpesa_project.env import env_int, env_str, load_env_file, settings_or_exit

load_env_file()
settings_or_exit()

try:
    bind = env_str("GUNICORN_BIND", "127.0.0.1:8000")
    # One process per core with two threads each: on the 2-core benchmark machine this took the
    # most callbacks per second (docs/benchmarks.md); more processes or threads per core cost more
    # CPU per request (context switches, the GIL) than they add. The threads also keep intake
    # answering while a request waits on Daraja: raise GUNICORN_THREADS if many STK pushes wait
    # at once.
    worker_class = env_str("GUNICORN_WORKER_CLASS", "gthread")
    workers = env_int("GUNICORN_WORKERS", os.cpu_count() or 2, minimum=1)
    threads = env_int("GUNICORN_THREADS", 2, minimum=1)
    timeout = env_int("GUNICORN_TIMEOUT", 60, minimum=1)
    # "-" (the default) for stdout; set to an empty value to turn access logs off.
    accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
    # gunicorn's default with its %(t)s left out: the line's own time comes first (see below).
    access_log_format = '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
except ImproperlyConfigured as exc:
    raise SystemExit(f"Configuration error: {exc}") from None


class MaskingLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        from core.logging import KeyValueFormatter

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(KeyValueFormatter())

    def access(self, resp, req, environ, request_time):
        from core.logging import mask_text

        environ = dict(environ)
        for key in ("PATH_INFO", "RAW_URI", "REQUEST_URI", "QUERY_STRING", "HTTP_REFERER"):
            if key in environ and isinstance(environ[key], str):
                environ[key] = mask_text(environ[key])
        req.path = mask_text(req.path)
        req.uri = mask_text(req.uri)
        super().access(resp, req, environ, request_time)


logger_class = MaskingLogger
