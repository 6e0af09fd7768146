"""`python manage.py check_invariants`: exit non-zero and name each broken invariant."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.invariants import find_violations


class Command(BaseCommand):
    help = (
        "Check the books: one payment per receipt, every SUCCESS backed by evidence and the "
        "right amount, every status change with its event in an allowed order, no callback "
        "left behind."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--settled",
            action="store_true",
            help="The system is quiet: any callback still waiting counts as a violation.",
        )

    def handle(self, *args: Any, settled: bool, **options: Any) -> None:
        violations = find_violations(settled=settled)
        for violation in violations:
            self.stdout.write(f"VIOLATION {violation}")
        if violations:
            raise CommandError(f"{len(violations)} invariant violation(s)")
        self.stdout.write("OK: all invariants hold")
