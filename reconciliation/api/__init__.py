"""Reconciliation API: upload a statement (multipart; accepted with 202 and read by a worker),
read runs (their state and progress), their summary, breaks, lines, rejects and the
accountant's CSV report, and resolve breaks with a reason.

Every object belongs to the API client that uploaded the statement; a client never sees
another's runs, breaks or payments. Every operation needs the key's ``reconciliation`` scope
(a statement can move payments to SUCCESS); a credit that needs a second person is approved
with ``…/breaks/{id}/approve/`` by another key of the merchant.
"""
