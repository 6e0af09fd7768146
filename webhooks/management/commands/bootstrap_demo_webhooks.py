"""`python manage.py bootstrap_demo_webhooks --url URL`: the demo merchant's webhook endpoint
for `make run`, pointing at the demo receiver, with its secret written where the receiver
reads it (`<VAR_DIR>/demo-webhook-secret`). Local development only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.demo import demo_client
from webhooks.demo_receiver import SECRET_FILE
from webhooks.models import Endpoint
from webhooks.services import endpoint_create, endpoint_secret_rotate, endpoint_update


class Command(BaseCommand):
    help = "Register the demo receiver as the demo merchant's webhook endpoint (make run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8002/webhooks")

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        if settings.MPESA_ENV == "production" or not settings.DEBUG:
            raise CommandError("bootstrap_demo_webhooks is for local development only")
        client = demo_client()
        secret_path = Path(settings.VAR_DIR) / SECRET_FILE
        endpoint = Endpoint.objects.filter(client=client, description="demo receiver").first()
        if endpoint is None:
            endpoint, secret = endpoint_create(client=client, url=url, description="demo receiver")
        else:
            endpoint_update(endpoint, url=url, enabled=True)
            # A new secret each start (only this file knows it); no overlap is needed.
            from datetime import timedelta

            secret = endpoint_secret_rotate(endpoint, overlap=timedelta(0))
        secret_path.write_text(secret)
        secret_path.chmod(0o600)
        self.stdout.write(
            f"  Webhooks:     every payment event goes to the demo receiver at {url} "
            "(signed, verified there; see the demo page)"
        )
