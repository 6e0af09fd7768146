"""The Celery application, so that `celery -A mpesa_project worker` and `beat` work."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpesa_project.settings")

app = Celery("mpesa_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
