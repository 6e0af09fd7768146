"""WSGI entry point (gunicorn mpesa_project.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpesa_project.settings")

application = get_wsgi_application()
