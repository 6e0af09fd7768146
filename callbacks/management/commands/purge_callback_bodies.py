"""`python manage.py purge_callback_bodies [--days N]`: the raw-body retention policy, by hand."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from callbacks.services import callback_bodies_purge


class Command(BaseCommand):
    help = (
        "Empty the stored bodies of refused and invalid callbacks that concern no payment, "
        "older than CALLBACK_BODY_RETENTION_DAYS (or --days). Their rows, body hashes and "
        "sizes stay; callbacks linked to a payment are never purged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Override the retention.")

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        if days is not None and days < 0:
            raise CommandError("--days must be 0 or more")
        count = callback_bodies_purge(older_than_days=days)
        self.stdout.write(f"purged {count} callback bodies")
