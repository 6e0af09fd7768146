"""`python manage.py check_invariants`: exit non-zero and name each broken invariant."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.ops import find_violations
from payments.invariants import find_flags


class Command(BaseCommand):
    help = (
        "Check the books: one payment per receipt, every SUCCESS backed by evidence and the "
        "right amount, every status change with its event in an allowed order, no callback "
        "left behind. Credits resting on a statement line alone are flagged (and violations "
        "with --settled until a second person approves them)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--settled",
            action="store_true",
            help="The system is quiet and the books are closed: any callback still waiting, and "
            "any credit on a statement line alone that no second person approved, is a violation.",
        )

    def handle(self, *args: Any, settled: bool, **options: Any) -> None:
        violations = find_violations(settled=settled)
        if not settled:
            for flag in find_flags():
                self.stdout.write(f"FLAG {flag}")
        for violation in violations:
            self.stdout.write(f"VIOLATION {violation}")
        if violations:
            raise CommandError(f"{len(violations)} invariant violation(s)")
        self.stdout.write("OK: all invariants hold")
