"""The payments export for accountants with a million rows: time and peak memory.

Runs on a database seeded by ``python -m bench.payments_scale --seed-only --db NAME`` (kept),
migrated here to this tree. For each size (default 100,000 and 1,000,000 payments of the busy
merchant, its newest), a fresh Python process asks ``GET /payments/export.csv`` with the
list's ``created_after`` filter through Django's test client, reads the streamed answer to the
end, and reports the seconds to the last byte, the rows and bytes, and its peak resident
memory (``ru_maxrss``, the whole process: Python and Django included). Baseline in the same
run, on the same rows: PostgreSQL's own ``COPY (SELECT the same columns …) TO STDOUT (FORMAT
csv)`` read by psycopg.

    .venv/bin/python -m bench.exports --db bench_metrics [--rows 100000 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import REPO_ROOT, log, machine_facts, make_env, print_facts, write_json

CHILD = r"""
import json, resource, sys, time
from bench.common import django_setup, make_env
env = make_env(sys.argv[1])
django_setup(env)
from django.test import Client
from core.models import ApiClient
from core.services import api_client_create
busy = ApiClient.objects.get(name="busy merchant")
key = api_client_create(name="bench export", acts_for=busy).key
client = Client()
started = time.perf_counter()
response = client.get(
    "/payments/export.csv", {"created_after": sys.argv[2]},
    HTTP_AUTHORIZATION=f"Bearer {key}", secure=True,
)
assert response.status_code == 200, response.status_code
size = lines = 0
for piece in response.streaming_content:
    size += len(piece)
    lines += piece.count(b"\r\n")
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "bytes": size, "rows": lines - 1,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

COPY = """
COPY (SELECT p.created_at AT TIME ZONE 'Africa/Nairobi', p.id, p.mpesa_receipt_number,
             p.channel, p.status, p.amount, p.paid_amount, p.phone_number, p.payer_phone,
             p.payer_name, p.account_reference, p.bill_ref_number, a.shortcode, p.result_code,
             p.result_desc, p.transaction_date AT TIME ZONE 'Africa/Nairobi', p.needs_review
      FROM payments_payment p LEFT JOIN payments_mpesaaccount a ON a.id = p.account_id
      WHERE p.client_id = %s AND p.created_at >= %s ORDER BY p.created_at, p.id)
TO STDOUT (FORMAT csv, HEADER)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="bench_metrics")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    env = make_env(args.db)
    log(f"migrating {args.db} to this tree")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO_ROOT,
        env=env.as_dict(),
        check=True,
    )
    import psycopg

    from .common import PG_HOST, PG_PORT, PG_USER

    report: dict[str, Any] = {"facts": machine_facts(), "sizes": []}
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=args.db) as conn:
        busy = conn.execute("SELECT id FROM core_apiclient WHERE name = 'busy merchant'").fetchone()
        assert busy is not None, "seed the database with bench.payments_scale --seed-only"
        for rows in args.rows:
            since = conn.execute(
                "SELECT created_at FROM payments_payment WHERE client_id = %s "
                "ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
                (busy[0], rows - 1),
            ).fetchone()[0]
            exports, copies = [], []
            for run in range(args.runs):
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, args.db, since.isoformat()],
                    cwd=REPO_ROOT,
                    env=env.as_dict(),
                    check=True,
                    capture_output=True,
                    text=True,
                )
                exports.append(json.loads(done.stdout.strip().splitlines()[-1]))
                started = time.perf_counter()
                copied = 0
                with conn.cursor() as cursor, cursor.copy(COPY, (busy[0], since)) as copy:
                    for block in copy:
                        copied += len(block)
                copies.append(time.perf_counter() - started)
                log(
                    f"{rows:,} rows, run {run + 1}: export {exports[-1]['seconds']:.2f} s, "
                    f"{exports[-1]['max_rss_mb']:.0f} MB; COPY {copies[-1]:.2f} s"
                )
            report["sizes"].append(
                {
                    "rows": rows,
                    "exported_rows": exports[0]["rows"],
                    "bytes": exports[0]["bytes"],
                    "export_s": [round(e["seconds"], 2) for e in exports],
                    "export_median_s": round(statistics.median(e["seconds"] for e in exports), 2),
                    "max_rss_mb": [round(e["max_rss_mb"]) for e in exports],
                    "copy_s": [round(c, 2) for c in copies],
                    "copy_median_s": round(statistics.median(copies), 2),
                }
            )
    print_facts(report["facts"])
    print("| payments | export.csv: median (runs) | peak RSS | COPY … TO STDOUT: median | bytes |")
    print("|---|---|---|---|---|")
    for size in report["sizes"]:
        print(
            f"| {size['rows']:,} ({size['exported_rows']:,} exported) | "
            f"{size['export_median_s']} s ({', '.join(map(str, size['export_s']))}) | "
            f"{max(size['max_rss_mb'])} MB | {size['copy_median_s']} s | {size['bytes']:,} |"
        )
    write_json(args.json, report)


if __name__ == "__main__":
    main()
