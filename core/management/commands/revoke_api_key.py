"""`python manage.py revoke_api_key PREFIX`: revoke a key by its prefix."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.models import ApiClient
from core.services import api_client_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (the part after mpk_)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args: Any, prefix: str, **options: Any) -> None:
        client = ApiClient.objects.filter(key_prefix=prefix).first()
        if client is None:
            raise CommandError(f"No API key with prefix {prefix!r}")
        api_client_revoke(client=client)
        self.stdout.write(f"Revoked {client}")
