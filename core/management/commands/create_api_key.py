"""`python manage.py create_api_key NAME`: make an API client and print its key once."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from core.services import api_client_create


class Command(BaseCommand):
    help = "Create an API client and print its key (shown once; only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A name for the merchant system using the key")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        new = api_client_create(name=name)
        self.stdout.write(
            f"API client: {new.client.name} (id {new.client.id}, prefix {new.client.key_prefix})"
        )
        self.stdout.write("API key (shown once, store it now):")
        self.stdout.write(new.key)
