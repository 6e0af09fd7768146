"""Payments at scale: admin lists and searches and the API's list with 10,000,000 payments.

One database (``bench_scale``, created and dropped by the script) holds N payments (default
10,000,000) of one busy merchant (99 %) and a small one (1 %), spread over a year, and
500,000 reconciliation breaks over 30 runs, written by ``INSERT … SELECT generate_series``.
Then, on the same rows:

1. **baseline**: the schema and code of ``--baseline`` (default: the commit before the
   indexes migration ``payments/0005_list_and_search_indexes``), checked out by the script
   with ``git worktree add`` in a temporary directory (removed afterwards);
2. **current**: the migrations of this tree applied to the same database (the time the new
   indexes take to build is reported), and this tree's code.

Each operation is one request through Django's test client, in process (no HTTP server): the
admin as a logged-in superuser, the API with an API key of the busy merchant. Each is made
twice to warm caches, then ``--runs`` times (3 when the baseline takes more than 5 s a
request); the medians are reported, with the fastest and slowest run. The machine may be
shared: the script waits for it to be quiet before each phase and reports how busy it was.

    .venv/bin/python -m bench.payments_scale                      # 10,000,000 payments
    .venv/bin/python -m bench.payments_scale --payments 1000000 --runs 5 --json var/bench/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DBNAME = "bench_scale"
RUNS = 7
SLOW_SECONDS = 5.0
SLOW_RUNS = 3
MIGRATION = "payments/migrations/0005_list_and_search_indexes.py"
PAGE_SIZE = 50
BREAKS = 500_000

# The operations, in the order they are timed: (name, kind, path, query). ``{...}`` are filled
# from the seeded data (see seed_facts); the deep page is a cursor now, a page number before.
OPERATIONS: list[tuple[str, str, str, dict[str, str]]] = [
    ("admin: payment list", "admin", "/admin/payments/payment/", {}),
    ("admin: payment list, status FAILED", "admin", "/admin/payments/payment/",
     {"status__exact": "FAILED"}),
    ("admin: search by phone", "admin", "/admin/payments/payment/", {"q": "{phone_local}"}),
    ("admin: search by receipt", "admin", "/admin/payments/payment/", {"q": "{receipt}"}),
    ("admin: search by CheckoutRequestID", "admin", "/admin/payments/payment/",
     {"q": "{checkout}"}),
    ("admin: search by payment id", "admin", "/admin/payments/payment/", {"q": "{payment_id}"}),
    ("admin: breaks list", "admin", "/admin/reconciliation/break/", {}),
    ("admin: breaks list, open", "admin", "/admin/reconciliation/break/",
     {"status__exact": "open"}),
    ("admin: breaks search by number", "admin", "/admin/reconciliation/break/",
     {"q": "{break_id}"}),
    ("admin: breaks search by payment id", "admin", "/admin/reconciliation/break/",
     {"q": "{break_payment_id}"}),
    ("admin: payment events", "admin", "/admin/payments/paymentevent/", {}),
    ("admin: payment events, search by payment id", "admin", "/admin/payments/paymentevent/",
     {"q": "{payment_id}"}),
    ("API: first page", "api", "/payments/", {}),
    ("API: deep page (~95 % down)", "api", "/payments/", {"deep": "1"}),
    ("API: ?status=FAILED", "api", "/payments/", {"status": "FAILED"}),
    ("API: ?phone=", "api", "/payments/", {"phone": "{phone_local}"}),
]  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Measuring (runs in a child process, importing the code under test) ----------------------


def measure(code_root: str, facts_path: str, runs: int, mode: str) -> None:
    """Time every operation with the code at ``code_root``; print JSON results on stdout."""
    sys.path.insert(0, code_root)
    os.chdir(code_root)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    facts = json.loads(Path(facts_path).read_text())
    if "break_id" not in facts:  # a database seeded before these facts were kept
        facts.update(break_facts())
    admin = Client()
    admin.force_login(User.objects.get(username="bench-admin"))
    api = Client(HTTP_AUTHORIZATION=f"Bearer {facts['api_key']}")
    results = []
    for name, kind, path, query in OPERATIONS:
        params = {key: value.format(**facts) for key, value in query.items()}
        if params.pop("deep", None):
            if _has_cursor(code_root):
                params["starting_after"] = facts["deep_anchor"]
            else:
                params["page"] = str(facts["deep_page"])
        client = admin if kind == "admin" else api
        times: list[float] = []
        statuses: set[int] = set()
        rows = None
        warm = 2
        wanted = runs
        while len(times) < wanted:
            started = time.perf_counter()
            response = client.get(path, params, secure=True)
            elapsed = time.perf_counter() - started
            statuses.add(response.status_code)
            if warm:
                warm -= 1
                if elapsed > SLOW_SECONDS:
                    wanted = min(runs, SLOW_RUNS)
                    warm = 0
                continue
            times.append(elapsed)
            if rows is None:
                rows = _rows(response, kind)
        # One more request with its queries recorded: how many, and the time spent in them
        # (rendering the page is the rest). Not for a request slower than SLOW_SECONDS.
        query_count, db_ms = None, None
        if wanted == runs:
            with CaptureQueriesContext(connection) as queries:
                client.get(path, params, secure=True)
            query_count = len(queries.captured_queries)
            db_ms = sum(1000 * float(query["time"]) for query in queries.captured_queries)
        times.sort()
        results.append(
            {
                "operation": name,
                "path": path,
                "params": params,
                "status": sorted(statuses),
                "rows": rows,
                "runs": len(times),
                "median_ms": 1000 * times[len(times) // 2]
                if len(times) % 2
                else 500 * (times[len(times) // 2 - 1] + times[len(times) // 2]),
                "min_ms": 1000 * times[0],
                "max_ms": 1000 * times[-1],
                "queries": query_count,
                "db_ms": db_ms,
            }
        )
        print(f"  {mode:8} {name:40} {results[-1]['median_ms']:10.1f} ms", file=sys.stderr)
    print(json.dumps(results))


def _has_cursor(code_root: str) -> bool:
    """Whether the code measured pages the API with ``starting_after`` (else ``?page=``)."""
    return any(
        "starting_after" in path.read_text() for path in Path(code_root, "payments").glob("*.py")
    )


def _rows(response: Any, kind: str) -> int | None:
    """Rows on the page: the API's results, or the admin's row checkboxes."""
    if kind == "api":
        try:
            return len(response.json()["results"])
        except (ValueError, KeyError):
            return None
    content = response.content
    boxes = content.count(b'name="_selected_action"')
    if boxes or b'id="result_list"' not in content:
        return boxes
    table = content.split(b'id="result_list"', 1)[1].split(b"</table>", 1)[0]
    return table.count(b"<tr") - 1  # a list without actions: its rows, less the header


# --- Orchestration -----------------------------------------------------------------------------


def _env(var_dir: str) -> dict[str, str]:
    from .common import database_url

    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(DBNAME),
            "DJANGO_SETTINGS_MODULE": "mpesa_project.settings",
            "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production",
            "DJANGO_DEBUG": "false",
            "VAR_DIR": var_dir,
            "LOG_LEVEL": "error",
            "CACHE_URL": "locmem://",
            "CELERY_BROKER_URL": "memory://",
            "API_RATE_LIMIT": "1000000/min",
            "MPESA_ENV": "simulator",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def _manage(code_root: Path, env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=code_root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _psql(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    from .common import PG_HOST, PG_PORT, PG_USER

    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=DBNAME, autocommit=True
    ) as conn:
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


SEED_CLIENTS = """
import json, sys
from django.contrib.auth.models import User
from core.services import api_client_create
busy = api_client_create(name="busy merchant")
small = api_client_create(name="small merchant")
User.objects.create_superuser("bench-admin", "bench@example.com", "bench-only-password")
print(json.dumps({"busy": str(busy.client.pk), "small": str(small.client.pk),
                  "api_key": busy.key}))
"""


def seed(count: int, clients: dict[str, str]) -> None:
    """``count`` payments (row i is the i-th oldest) and 500,000 breaks over 30 runs, with the
    plain indexes dropped during the load and rebuilt after (as a restore does)."""
    plain = _psql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'payments_payment' "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
    )
    for name, _ in plain:
        _psql(f'DROP INDEX "{name}"')
    step = 1_000_000
    for start in range(1, count + 1, step):
        end = min(count, start + step - 1)
        _psql(
            """
            INSERT INTO payments_payment (
                id, client_id, amount, currency, phone_number, account_reference, description,
                transaction_type, status, merchant_request_id, checkout_request_id,
                mpesa_receipt_number, result_code, result_desc, transaction_date, paid_amount,
                payer_phone, needs_review, failure_final, initiation_unknown, query_attempts,
                next_query_at, query_claimed_until, last_query_result, callback_token_hash,
                created_at, updated_at, completed_at)
            SELECT gen_random_uuid(),
                   CASE WHEN i %% 100 = 0 THEN %s::uuid ELSE %s::uuid END,
                   (i %% 5000) + 1, 'KES',
                   '2547' || lpad((i %% 1000000)::text, 8, '0'),
                   'INV' || (i %% 1000000), 'Goods', 'CustomerPayBillOnline',
                   CASE WHEN i %% 10 < 7 THEN 'SUCCESS' WHEN i %% 10 < 9 THEN 'FAILED'
                        ELSE 'PENDING' END,
                   'mr-' || i, 'ws_CO_' || lpad(i::text, 20, '0'),
                   CASE WHEN i %% 10 < 7 THEN 'UK' || upper(lpad(to_hex(i), 8, '0')) END,
                   CASE WHEN i %% 10 < 7 THEN '0' WHEN i %% 10 < 9 THEN '1032' ELSE '' END,
                   '', NULL, CASE WHEN i %% 10 < 7 THEN (i %% 5000) + 1 END,
                   '', i %% 1000 = 0, i %% 10 BETWEEN 7 AND 8, false, 0,
                   NULL, NULL, '', md5(i::text) || md5((-i)::text),
                   now() - make_interval(secs => (%s - i) * 31536000.0 / %s),
                   now() - make_interval(secs => (%s - i) * 31536000.0 / %s),
                   CASE WHEN i %% 10 < 9
                        THEN now() - make_interval(secs => (%s - i) * 31536000.0 / %s) END
            FROM generate_series(%s::bigint, %s::bigint) AS i
            """,
            clients["small"],
            clients["busy"],
            *([count, count] * 3),
            start,
            end,
        )
        log(f"  {end:,} payments")
    for name, definition in plain:
        started = time.perf_counter()
        _psql(definition)
        log(f"  rebuilt {name} in {time.perf_counter() - started:.1f} s")
    seed_events(count)
    _psql(
        """
        INSERT INTO reconciliation_statement (
            client_id, file_name, file_format, checksum, size_bytes, account_holder,
            short_code, account_name, metadata, header_row, line_count, reject_count, skipped,
            uploaded_by, created_at)
        SELECT %s::uuid, 'day-' || d || '.csv', 'g2_csv', md5('statement' || d) || md5(d::text),
               0, '', '600000', '', '{}', 0, 0, 0, '{}', 'bench',
               now() - make_interval(days => 31 - d)
        FROM generate_series(1, 30) AS d
        """,
        clients["busy"],
    )
    _psql(
        """
        INSERT INTO reconciliation_reconciliationrun (
            statement_id, client_id, engine, time_window_seconds, period_start, period_end,
            started_at, finished_at, duration_ms, timings, summary, created_by, auto_resolve,
            state, rows_read, error, attempts, heartbeat_at)
        SELECT s.id, s.client_id, 'postgresql', 600, s.created_at - interval '1 day',
               s.created_at, s.created_at, s.created_at, 1000, '{}', '{}', 'bench', true,
               'done', 0, '', 1, s.created_at
        FROM reconciliation_statement s ORDER BY s.id
        """
    )
    _psql(
        """
        INSERT INTO reconciliation_break (
            run_id, kind, line_id, payment_id, statement_amount, our_amount, bridge_amount,
            candidates, auto_resolvable, status, resolution, resolved_payment_id, resolved_by,
            resolved_at, resolution_reason, created_at)
        SELECT r.id, (ARRAY['amount_mismatch', 'not_success', 'missing_from_statement',
                            'unknown_payment'])[1 + p.rn % 4],
               NULL, p.id, p.amount, p.amount, 0, '[]', false,
               CASE WHEN p.rn % 5 = 0 THEN 'open' ELSE 'resolved' END,
               CASE WHEN p.rn % 5 = 0 THEN '' ELSE 'accepted' END, NULL, '', NULL, '',
               r.started_at
        FROM (SELECT id, amount, row_number() OVER () AS rn FROM payments_payment
              LIMIT 500000) AS p
        JOIN (SELECT id, started_at, row_number() OVER (ORDER BY id) AS n
              FROM reconciliation_reconciliationrun) AS r ON r.n = 1 + p.rn % 30
        ORDER BY r.id, p.rn
        """
    )
    log(f"  {min(count, BREAKS):,} breaks over 30 runs")


def seed_events(count: int) -> None:
    """The history a payment leaves: a ``created`` event and, for all but the PENDING tenth,
    the transition to its final status (about 1.9 events a payment), indexes dropped during
    the load and rebuilt after."""
    table = "payments_paymentevent"
    plain = _psql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        table,
    )
    for name, _ in plain:
        _psql(f'DROP INDEX "{name}"')
    _psql(
        f"""
        INSERT INTO {table} (payment_id, kind, from_status, to_status, source, actor, reason,
                             evidence, callback_id, created_at)
        SELECT id, 'created', '', 'INITIATED', 'api', '', '', '{{}}', NULL, created_at
        FROM payments_payment ORDER BY created_at
        """
    )
    log("  created events")
    _psql(
        f"""
        INSERT INTO {table} (payment_id, kind, from_status, to_status, source, actor, reason,
                             evidence, callback_id, created_at)
        SELECT id, 'transition', 'PENDING', status, 'callback', '',
               CASE WHEN status = 'FAILED' THEN 'Request cancelled by user' ELSE '' END,
               '{{}}', NULL, completed_at
        FROM payments_payment WHERE status <> 'PENDING' ORDER BY completed_at
        """
    )
    log("  transition events")
    for name, definition in plain:
        started = time.perf_counter()
        _psql(definition)
        log(f"  rebuilt {name} in {time.perf_counter() - started:.1f} s")


def break_facts() -> dict[str, str]:
    """A break in the middle of the table that names a payment: its number and payment."""
    from reconciliation.models import Break

    breaks = Break.objects.filter(payment__isnull=False)
    row = breaks.order_by("id").values_list("id", "payment_id")[breaks.count() // 2]
    return {"break_id": str(row[0]), "break_payment_id": str(row[1])}


def seed_facts(count: int, api_key: str, busy: str) -> dict[str, Any]:
    """Values the operations look up: a phone with payments (written as a customer would),
    a receipt, a CheckoutRequestID, a payment id, and the anchor of a page ~95 % down."""
    i = count // 2 - (count // 2) % 10  # a SUCCESS row of the busy merchant
    i = i + 1 if i % 100 == 0 else i
    while i % 10 >= 7 or i % 100 == 0:
        i += 1
    local = f"07{i % 1000000:08d}"
    payment_id = _psql(
        "SELECT id FROM payments_payment WHERE checkout_request_id = %s",
        "ws_CO_" + f"{i:020d}",
    )[0][0]
    depth = int(count * 0.99 * 0.95)
    deep_page = depth // PAGE_SIZE
    anchor = _psql(
        "SELECT id FROM payments_payment WHERE client_id = %s "
        "ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
        busy,
        deep_page * PAGE_SIZE - 1,
    )[0][0]
    return {
        "api_key": api_key,
        "phone_local": f"{local[:4]} {local[4:7]} {local[7:]}",
        "receipt": f"UK{i:08X}",
        "checkout": f"ws_CO_{i:020d}",
        "payment_id": str(payment_id),
        "deep_page": deep_page + 1,
        "deep_anchor": str(anchor),
    }


def run_measure(code_root: Path, env: dict[str, str], facts: Path, runs: int, mode: str) -> Any:
    from .common import wait_for_idle

    busy = wait_for_idle(timeout=120)
    log(f"{mode}: measuring (machine {busy:.0f}% busy with other work before starting)")
    output = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", str(code_root),
         "--facts", str(facts), "--runs", str(runs), "--mode", mode],
        env=env, check=True, capture_output=False, stdout=subprocess.PIPE, text=True,
    ).stdout  # fmt: skip
    return {"busy_pct_before": busy, "operations": json.loads(output.strip().splitlines()[-1])}


def _sql(result: dict[str, Any]) -> str:
    if result["queries"] is None:
        return "–"
    return f"{result['queries']}, {result['db_ms']:,.1f}"


def baseline_commit(repo: Path) -> str:
    first = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", MIGRATION],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if not first:
        raise SystemExit(f"{MIGRATION} is not committed: give --baseline")
    return first[-1] + "~1"


def main() -> None:
    global DBNAME
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--baseline", help="commit of the baseline (default: before 0005)")
    parser.add_argument("--json", type=Path, help="write everything to this file")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--db", default=DBNAME, help=f"database name (default {DBNAME})")
    parser.add_argument(
        "--seed-only",
        action="store_true",
        help="seed (with the baseline's schema), keep the database, measure nothing",
    )
    parser.add_argument(
        "--reuse", action="store_true",
        help="measure a database seeded earlier with --seed-only (or --keep)",
    )  # fmt: skip
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--facts", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.facts, args.runs, args.mode)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from .common import (
        REPO_ROOT,
        handle_termination,
        machine_facts,
        pg_drop_database,
        pg_recreate_database,
        print_facts,
        vacuum_analyze,
        write_json,
    )

    handle_termination()
    DBNAME = args.db
    base = args.baseline or baseline_commit(REPO_ROOT)
    base_sha = subprocess.run(
        ["git", "rev-parse", "--short", base], cwd=REPO_ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    temp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    worktree = temp / "baseline"
    var_dir = temp / "var"
    var_dir.mkdir()
    env = _env(str(var_dir))
    facts_path = temp / "facts.json"
    report: dict[str, Any] = {"payments": args.payments, "baseline": base_sha}
    try:
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(worktree), base],
            cwd=REPO_ROOT, check=True, capture_output=True,
        )  # fmt: skip
        log(f"baseline: {base_sha} checked out in a temporary worktree")
        kept = REPO_ROOT / "var" / "bench" / f"{DBNAME}-facts.json"
        if args.reuse:
            stored = json.loads(kept.read_text())
            facts, report["seed_seconds"] = stored["facts"], stored["seed_seconds"]
            log(f"reusing {DBNAME} (seeded in {report['seed_seconds']} s)")
        else:
            pg_recreate_database(DBNAME)
            _manage(worktree, env, "migrate", "--no-input", "-v", "0")
            clients = json.loads(
                subprocess.run(
                    [sys.executable, "manage.py", "shell", "-c", SEED_CLIENTS],
                    cwd=worktree, env=env, check=True, capture_output=True, text=True,
                ).stdout.strip().splitlines()[-1]
            )  # fmt: skip
            log(f"seeding {args.payments:,} payments")
            started = time.perf_counter()
            seed(args.payments, clients)
            vacuum_analyze(DBNAME)
            report["seed_seconds"] = round(time.perf_counter() - started, 1)
            log(f"seeded and analysed in {report['seed_seconds']} s")
            facts = seed_facts(args.payments, clients["api_key"], clients["busy"])
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(json.dumps({"facts": facts, "seed_seconds": report["seed_seconds"]}))
            if args.seed_only:
                log(f"seeded {DBNAME}; measure it with --reuse")
                return
        facts_path.write_text(json.dumps(facts))
        report["facts"] = {key: value for key, value in facts.items() if key != "api_key"}

        report["before"] = run_measure(worktree, env, facts_path, args.runs, "baseline")

        log("migrating to the current schema (building the new indexes)")
        started = time.perf_counter()
        _manage(REPO_ROOT, env, "migrate", "--no-input", "-v", "0")
        _psql("ANALYZE payments_payment")
        _psql("ANALYZE reconciliation_break")
        report["migrate_seconds"] = round(time.perf_counter() - started, 1)
        log(f"migrated in {report['migrate_seconds']} s")

        report["after"] = run_measure(REPO_ROOT, env, facts_path, args.runs, "current")
        report["machine"] = machine_facts()
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(worktree)],
            cwd=REPO_ROOT, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(temp, ignore_errors=True)
        if not (args.keep or args.seed_only or args.reuse):
            pg_drop_database(DBNAME)

    print_facts(report["machine"])
    print(
        f"\n{args.payments:,} payments, {min(args.payments, BREAKS):,} breaks; baseline "
        f"{base_sha}; seeded in "
        f"{report['seed_seconds']} s; new indexes built in {report['migrate_seconds']} s\n"
    )
    print(
        "| operation | before: median (min–max) | after: median (min–max) | runs | rows "
        "| queries, ms in SQL (before / after) |"
    )
    print("|---|---|---|---|---|---|")
    pairs = zip(report["before"]["operations"], report["after"]["operations"], strict=True)
    for before, after in pairs:
        print(
            f"| {after['operation']} | {before['median_ms']:,.1f} ms "
            f"({before['min_ms']:,.0f}–{before['max_ms']:,.0f}) | "
            f"**{after['median_ms']:,.1f} ms** ({after['min_ms']:,.1f}–{after['max_ms']:,.1f}) | "
            f"{before['runs']} / {after['runs']} | {before['rows']} / {after['rows']} | "
            f"{_sql(before)} / {_sql(after)} |"
        )
    write_json(args.json, report)


if __name__ == "__main__":
    main()
