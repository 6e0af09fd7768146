"""``manage.py rotate_encryption_key``: re-encrypt every secret stored at rest under the first
key of ENCRYPTION_KEYS (put the new key first, run this, then drop the old key)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.crypto import ENCRYPTED_FIELDS, DecryptionFailed, reencrypt


class Command(BaseCommand):
    help = "Re-encrypt stored secrets under the first key of ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for label, field in ENCRYPTED_FIELDS:
            model = apps.get_model(label)
            with transaction.atomic():
                rows = model.objects.select_for_update().exclude(**{field: ""}).only("pk", field)
                for row in rows:
                    try:
                        setattr(row, field, reencrypt(getattr(row, field)))
                    except DecryptionFailed as exc:
                        raise CommandError(f"{label} {row.pk}: {exc}") from None
                    row.save(update_fields=[field])
                    total += 1
        self.stdout.write(f"Re-encrypted {total} secret(s) under the current key.")
