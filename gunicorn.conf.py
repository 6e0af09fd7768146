"""gunicorn settings: `gunicorn mpesa_project.wsgi` reads this file from the working directory.

Access logs go through the project's masking (callback tokens in URLs, phone numbers), so a
callback URL's token never reaches a log file. gunicorn's own lines and its access lines are
written as the application's are (core/logging.py): key=value, East Africa Time with its offset.
"""

import os

from gunicorn.glogging import Logger

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# One process per core with two threads each: on the 2-core benchmark machine this took the
# most callbacks per second (docs/benchmarks.md); more processes or threads per core cost more
# CPU per request (context switches, the GIL) than they add. The threads also keep intake
# answering while a request waits on Daraja: raise GUNICORN_THREADS if many STK pushes wait
# at once.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = int(os.environ.get("GUNICORN_WORKERS") or os.cpu_count() or 2)
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
# gunicorn's default with its %(t)s left out: the line's own time comes first (see below).
access_log_format = '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


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
