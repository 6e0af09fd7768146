"""`python manage.py reconcile_statement PATH`: import a statement, reconcile it here and now
(not through a worker: this is no web request), within the same reading limits as the upload,
and print the run's summary as JSON. The same file imported twice is imported once (its run is
printed again, with "already_imported": true and its state)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.models import ApiClient
from reconciliation.engines import ENGINES
from reconciliation.formats.limits import StatementFormatError
from reconciliation.imports import statement_import


class Command(BaseCommand):
    help = "Import an M-Pesa statement (G2 XLS/XLSX/CSV or Pull JSON), reconcile it, print JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The statement file; '-' reads standard input.")
        parser.add_argument(
            "--window",
            type=int,
            default=None,
            help="Tolerance pass: completion time within this many seconds of the payment's "
            "(default RECONCILIATION_MATCH_WINDOW_SECONDS, 600).",
        )
        parser.add_argument(
            "--client",
            default=None,
            help="Reconcile against this API client's payments only (its name or key prefix).",
        )
        parser.add_argument(
            "--no-auto-resolve",
            action="store_true",
            help="Do not move PENDING/FAILED payments whose receipt the statement shows paid.",
        )
        parser.add_argument("--engine", choices=ENGINES, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["path"]
        if path == "-":
            data, name = sys.stdin.buffer.read(), "stdin"
        else:
            file = Path(path)
            if not file.is_file():
                raise CommandError(f"{path}: no such file")
            data, name = file.read_bytes(), file.name
        client = None
        if options["client"]:
            client = (
                ApiClient.objects.filter(key_prefix=options["client"]).first()
                or ApiClient.objects.filter(name=options["client"]).first()
            )
            if client is None:
                raise CommandError(f"no API client named {options['client']!r}")
        try:
            result = statement_import(
                data=data,
                file_name=name,
                client=client,
                actor="manage.py reconcile_statement",
                time_window_seconds=options["window"],
                auto_resolve=not options["no_auto_resolve"],
                engine=options["engine"],
            )
        except StatementFormatError as exc:
            raise CommandError(f"{path}: {exc}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        run = result.run
        output = {
            "already_imported": not result.created,
            "run_id": run.pk,
            # A file uploaded through the API before may still be queued, or have failed.
            "state": run.state,
            "statement_id": run.statement_id,
            "engine": run.engine,
            "duration_ms": run.duration_ms,
            "timings_ms": run.timings,
            **run.summary,
        }
        self.stdout.write(json.dumps(output, indent=2, default=str))
