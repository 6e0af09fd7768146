"""WSGI entry point (gunicorn mpesa_project.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpesa_project.settings")

application = get_wsgi_application()

# gunicorn runs no system checks: refuse here what `manage.py check` refuses (core/checks.py).
from core.checks import refuse_to_serve  # noqa: E402

refuse_to_serve()
