"""`python manage.py create_api_key NAME [--scope payments] [--scope reconciliation]
[--for PREFIX]`: make an API client and print its key once. Without --scope the key takes
payments only; with --for it is a second key of that client's merchant."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.models import ApiClient, Scope
from core.services import api_client_create


class Command(BaseCommand):
    help = "Create an API client and print its key (shown once; only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A name for the merchant system using the key")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=Scope.values,
            help="What the key may do; repeat for several (default: payments only). "
            "'reconciliation' imports statements and resolves breaks, which can credit payments.",
        )
        parser.add_argument(
            "--for",
            dest="acts_for",
            metavar="PREFIX",
            help="A second key of the merchant whose key has this prefix: it works on the same "
            "payments and statements, and counts as a different person for approvals.",
        )

    def handle(
        self, *args: Any, name: str, scopes: list[str] | None, acts_for: str | None, **options: Any
    ) -> None:
        owner = None
        if acts_for is not None:
            owner = ApiClient.objects.filter(key_prefix=acts_for).first()
            if owner is None:
                raise CommandError(f"No API key with prefix {acts_for!r}")
        new = api_client_create(name=name, scopes=scopes, acts_for=owner)
        self.stdout.write(
            f"API client: {new.client.name} (id {new.client.id}, prefix {new.client.key_prefix})"
        )
        self.stdout.write(f"Scopes: {', '.join(new.client.scopes)}")
        if new.client.acts_for is not None:
            self.stdout.write(f"Acts for: {new.client.acts_for}")
        self.stdout.write("API key (shown once, store it now):")
        self.stdout.write(new.key)
