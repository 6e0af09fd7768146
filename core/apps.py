from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _create_cache_table(sender: AppConfig, **kwargs: Any) -> None:
    # The embedded default cache is a database table; make it part of `migrate` so nobody
    # has to remember `createcachetable`.
    from django.conf import settings
    from django.core.management import call_command

    if any(str(c["BACKEND"]).endswith("DatabaseCache") for c in settings.CACHES.values()):
        call_command("createcachetable", database=kwargs.get("using", "default"), verbosity=0)


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the system checks)

        post_migrate.connect(_create_cache_table, sender=self)
