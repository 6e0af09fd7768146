"""Admin: upload a statement and see its run (summary, classes and bridge as tables, the
warnings, links to each class's breaks, the CSV report); statements, runs and breaks with
filters. Breaks are resolved here with a reason (one at a time, finding the payment by receipt,
phone or amount, or several at once), through the same service the API uses; every
resolution is a BreakEvent and a LogEntry. A credit that needs a second person (a payment
M-Pesa failed) is approved here by a staff user other than the one who asked for it.
Resolving and approving need ``reconciliation.change_break``; uploading needs
``reconciliation.add_statement``.
"""

from . import audit, breaks, payment_section, runs, statements  # noqa: F401 - each registers
