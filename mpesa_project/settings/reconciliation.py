"""Statement reconciliation: matching windows and the limits on what a statement may be."""

from __future__ import annotations

import os

from ..env import env_float, env_int

# --- Reconciliation ------------------------------------------------------------------------
# Tolerance pass: a statement line and a payment without a shared receipt may match when their
# completion times are at most this many seconds apart (and amount, payer, account agree).
RECONCILIATION_MATCH_WINDOW_SECONDS = env_int("RECONCILIATION_MATCH_WINDOW_SECONDS", 600, minimum=0)
# A statement line credits a payment only if it was completed after the payment was created;
# this many seconds of clock difference between M-Pesa and us are allowed.
RECONCILIATION_CREDIT_CLOCK_SKEW_SECONDS = env_int(
    "RECONCILIATION_CREDIT_CLOCK_SKEW_SECONDS", 120, minimum=0
)
# Largest statement accepted by the upload API (bytes); the command has no limit.
RECONCILIATION_MAX_UPLOAD_BYTES = env_int(
    "RECONCILIATION_MAX_UPLOAD_BYTES", 50 * 1024 * 1024, minimum=1024
)
# Processes reading a large CSV in parallel when Arrow cannot (1: in the calling process);
# default min(2, cores).
RECONCILIATION_PARSE_WORKERS = env_int(
    "RECONCILIATION_PARSE_WORKERS", min(2, os.cpu_count() or 1), minimum=1
)
# Reading limits (API, admin and command alike): a statement over one is refused, naming it.
# Rows (a spreadsheet's own row numbers count: a row numbered 1,048,576 is over 1,000,000).
RECONCILIATION_MAX_ROWS = env_int("RECONCILIATION_MAX_ROWS", 2_000_000, minimum=1)
# Columns of a spreadsheet or Pull row, and characters of one of their cells (Excel's own
# limit); a CSV's cells are its bytes, bounded by the upload size.
RECONCILIATION_MAX_COLUMNS = env_int("RECONCILIATION_MAX_COLUMNS", 256, minimum=16)
RECONCILIATION_MAX_CELL_CHARS = env_int("RECONCILIATION_MAX_CELL_CHARS", 32_767, minimum=256)
# An XLSX's parts inflated (all together; its shared strings at most an eighth of it), and
# the compression ratio of any part over 1 MiB.
RECONCILIATION_MAX_DECOMPRESSED_BYTES = env_int(
    "RECONCILIATION_MAX_DECOMPRESSED_BYTES", 512 * 1024 * 1024, minimum=1024 * 1024
)
RECONCILIATION_MAX_COMPRESSION_RATIO = env_int(
    "RECONCILIATION_MAX_COMPRESSION_RATIO", 100, minimum=10
)
# Reading and matching one statement (s).
RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS = env_float(
    "RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS", 600.0, minimum=1.0
)
# Characters a reject keeps of its reason, and of its cells together (the rest marked cut).
RECONCILIATION_REJECT_MAX_CHARS = env_int("RECONCILIATION_REJECT_MAX_CHARS", 2000, minimum=100)
