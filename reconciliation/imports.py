"""Statement imports: accept a statement and queue it (the API and the admin), read and
reconcile it in a worker (or here and now, for the command) within the reading limits, with
the engine the run names (:data:`reconciliation.engines.ENGINES`), and wake up the runs whose
worker was lost. A run with ``auto_resolve`` then resolves its breaks
(:func:`reconciliation.services.run_auto_resolve`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from core.logging import ctx
from core.models import ApiClient

from .engines import ENGINES, engine_available, engine_default
from .events import emit_run_completed
from .formats import parse_statement, sniff_format
from .formats.limits import ParseLimits, StatementFormatError, time_limit
from .formats.parsed import ParsedStatement
from .models import (
    ReconciliationRun,
    RunState,
    Statement,
    StatementUpload,
)
from .report import Timer, build_summary
from .services import run_auto_resolve

logger = logging.getLogger(__name__)

# Times a run is started before it is failed (a file that kills its worker stays bounded).
MAX_ATTEMPTS = 3
# A worker reports a run's progress at most this often.
PROGRESS_INTERVAL_SECONDS = 1.0
# A run being read or matched is taken back when its worker has not reported for the time
# limit plus this margin.
STALE_MARGIN_SECONDS = 300.0


def default_window_seconds() -> int:
    return settings.RECONCILIATION_MATCH_WINDOW_SECONDS


@dataclass(frozen=True)
class ImportResult:
    statement: Statement
    run: ReconciliationRun
    created: bool  # False: the same file was imported before; this is that import
    queued: bool = False  # a worker will read it (a new upload, or a failed one again)


def _already_imported(client: ApiClient | None, checksum: str) -> Statement | None:
    query = Statement.objects.select_related("run").filter(checksum=checksum)
    query = query.filter(client=client) if client is not None else query.filter(client=None)
    return query.first()


def _stale_after() -> float:
    """A run being worked on whose worker has not reported for this long has lost it."""
    return float(ParseLimits.from_settings().time_limit_seconds) + STALE_MARGIN_SECONDS


def _accept(
    *,
    data: bytes,
    file_name: str,
    client: ApiClient | None,
    actor: str,
    time_window_seconds: int | None,
    auto_resolve: bool,
    engine: str | None,
    keep_file: bool,
) -> ImportResult:
    """The statement and its run, committed (state ``queued``; the file's bytes stored with
    ``keep_file``), or the earlier import of the same bytes by the same client. A failed
    earlier import is queued again with these bytes (a limit may have been raised since)."""
    checksum = hashlib.sha256(data).hexdigest()
    existing = _already_imported(client, checksum)
    if existing is not None:
        if keep_file and existing.run.state == RunState.FAILED:
            return _requeue(existing, data)
        return ImportResult(statement=existing, run=existing.run, created=False)
    if not data:
        raise StatementFormatError("the file is empty")
    file_format = sniff_format(data)  # the first bytes only: HTML is refused here
    window = default_window_seconds() if time_window_seconds is None else time_window_seconds
    if window < 0:
        raise ValueError("the time window cannot be negative")
    engine = engine or engine_default(connection.vendor)
    if not engine_available(engine, connection.vendor):
        raise ValueError(f"engine {engine!r} is not available on {connection.vendor}")
    now = timezone.now()
    try:
        with transaction.atomic():
            statement = Statement.objects.create(
                client=client,
                file_name=file_name.replace("\x00", "")[:255],
                file_format=file_format,
                checksum=checksum,
                size_bytes=len(data),
                uploaded_by=actor[:150],
            )
            run = ReconciliationRun.objects.create(
                statement=statement,
                client=client,
                engine=engine,
                time_window_seconds=window,
                started_at=now,
                heartbeat_at=now,
                created_by=actor,
                auto_resolve=auto_resolve,
            )
            if keep_file:
                StatementUpload.objects.create(statement=statement, data=data)
    except IntegrityError:
        # The same file was uploaded concurrently and committed first.
        existing = _already_imported(client, checksum)
        if existing is None:
            raise
        return ImportResult(statement=existing, run=existing.run, created=False)
    return ImportResult(statement=statement, run=run, created=True, queued=keep_file)


def _requeue(statement: Statement, data: bytes) -> ImportResult:
    with transaction.atomic():
        run = ReconciliationRun.objects.select_for_update().get(statement=statement)
        if run.state != RunState.FAILED:  # queued again meanwhile
            return ImportResult(statement=statement, run=run, created=False)
        StatementUpload.objects.update_or_create(statement=statement, defaults={"data": data})
        run.state = RunState.QUEUED
        run.attempts = 0
        run.rows_read = 0
        run.error = ""
        run.heartbeat_at = timezone.now()
        run.finished_at = None
        run.save(
            update_fields=["state", "attempts", "rows_read", "error", "heartbeat_at", "finished_at"]
        )
    return ImportResult(statement=statement, run=run, created=False, queued=True)


def statement_accept(
    *,
    data: bytes,
    file_name: str = "",
    client: ApiClient | None = None,
    actor: str = "",
    time_window_seconds: int | None = None,
    auto_resolve: bool = True,
) -> ImportResult:
    """Accept an uploaded statement and queue it: the one entry point of the upload API and
    the admin's upload page. Stores the statement, its ``queued`` run and the file's bytes,
    and once that is committed wakes a worker up (:func:`statement_process`). Nothing is read
    here but the first bytes: a request never parses a file.

    The same bytes from the same client return the first upload's run (``created`` False),
    whatever its state; a failed one is queued again. Raises
    :class:`~reconciliation.formats.limits.StatementFormatError` for an empty file or one
    whose first bytes say it is no statement (HTML)."""
    result = _accept(
        data=data,
        file_name=file_name,
        client=client,
        actor=actor,
        time_window_seconds=time_window_seconds,
        auto_resolve=auto_resolve,
        engine=None,
        keep_file=True,
    )
    if result.queued:
        run_id = result.run.pk
        transaction.on_commit(lambda: statement_wake(run_id=run_id))
    return result


def statement_wake(*, run_id: int) -> bool:
    """Publish the wake-up of a queued run; never raises (the sweeper wakes it up later)."""
    from .tasks import process_statement

    try:
        process_statement.apply_async((run_id,))
    except Exception as exc:
        logger.warning(
            "could not publish a statement import; the sweeper will retry",
            extra=ctx(run_id=run_id, error=type(exc).__name__),
        )
        return False
    return True


def statement_import(
    *,
    data: bytes,
    file_name: str = "",
    client: ApiClient | None = None,
    actor: str = "",
    time_window_seconds: int | None = None,
    auto_resolve: bool = True,
    engine: str | None = None,
) -> ImportResult:
    """Read a statement file, load and match it here and now (the ``reconcile_statement``
    command; not for a web request), with the same limits as a worker. The same bytes
    imported again (same SHA-256, same client) return the first import.

    Raises :class:`~reconciliation.formats.limits.StatementFormatError` for a file that cannot be
    read as a statement at all or is over a limit, and then leaves nothing behind;
    unreadable rows are rejects, not errors.
    """
    result = _accept(
        data=data,
        file_name=file_name,
        client=client,
        actor=actor,
        time_window_seconds=time_window_seconds,
        auto_resolve=auto_resolve,
        engine=engine,
        keep_file=False,
    )
    if not result.created:
        return result
    run = _claim(result.run.pk)
    assert run is not None  # created just now, in this process
    try:
        _process(run, data)
    except BaseException:
        Statement.objects.filter(pk=run.statement_id).delete()
        raise
    return ImportResult(statement=run.statement, run=run, created=True)


def statement_process(*, run_id: int) -> ReconciliationRun | None:
    """A worker's part (the Celery task): claim a queued run (or one whose worker stopped),
    read its stored file within the limits, match it, and leave the run ``completed`` or
    ``failed`` with the reason; the stored file is deleted then. An unexpected error leaves
    the run queued for another attempt, up to :data:`MAX_ATTEMPTS`. Returns the run, or None
    when there was nothing to claim (done, or taken by another worker)."""
    run = _claim(run_id)
    if run is None:
        return None
    data = (
        StatementUpload.objects.filter(statement_id=run.statement_id)
        .values_list("data", flat=True)
        .first()
    )
    if data is None:
        _fail(run, "the uploaded file is not stored (imported by a command that stopped?)")
        return run
    try:
        _process(run, bytes(data))
    except StatementFormatError as exc:
        _fail(run, str(exc))
    except Exception as exc:
        logger.exception("statement import failed", extra=ctx(run_id=run.pk))
        reason = f"processing failed ({type(exc).__name__})"
        if run.attempts >= MAX_ATTEMPTS:
            _fail(run, f"{reason} {run.attempts} times")
        else:
            ReconciliationRun.objects.filter(pk=run.pk).update(
                state=RunState.QUEUED, error=reason, heartbeat_at=timezone.now()
            )
            run.state = RunState.QUEUED
    return run


def _claim(run_id: int) -> ReconciliationRun | None:
    now = timezone.now()
    stale = now - timedelta(seconds=_stale_after())
    claimed = (
        ReconciliationRun.objects.filter(pk=run_id)
        .filter(
            Q(state=RunState.QUEUED)
            | Q(state__in=(RunState.PARSING, RunState.MATCHING), heartbeat_at__lt=stale)
        )
        .update(state=RunState.PARSING, attempts=F("attempts") + 1, heartbeat_at=now, rows_read=0)
    )
    if not claimed:
        return None
    run = ReconciliationRun.objects.select_related("statement").get(pk=run_id)
    if run.attempts > MAX_ATTEMPTS:
        _fail(run, f"stopped {run.attempts - 1} times before finishing (out of memory or time?)")
        return None
    return run


def _fail(run: ReconciliationRun, reason: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        ReconciliationRun.objects.filter(pk=run.pk).update(
            state=RunState.FAILED, error=reason, finished_at=now, heartbeat_at=now
        )
        StatementUpload.objects.filter(statement_id=run.statement_id).delete()
    run.state, run.error, run.finished_at = RunState.FAILED, reason, now
    logger.info("statement import refused", extra=ctx(run_id=run.pk, reason=reason[:300]))


class _Progress:
    """Reports a run's rows read and state, at most once a second, each in its own commit;
    never from inside the import's transaction (it would not be seen, and on SQLite it
    holds the write lock)."""

    def __init__(self, run: ReconciliationRun) -> None:
        self.run = run
        self.last = 0.0
        self.inside_transaction = False

    def __call__(self, rows: int) -> None:
        now = time.monotonic()
        if self.inside_transaction or now - self.last < PROGRESS_INTERVAL_SECONDS:
            return
        self.last = now
        self.write(rows_read=rows)

    def write(self, **fields: Any) -> None:
        if self.inside_transaction:
            return
        ReconciliationRun.objects.filter(pk=self.run.pk).update(
            heartbeat_at=timezone.now(), **fields
        )


def _process(run: ReconciliationRun, data: bytes) -> None:
    limits = ParseLimits.from_settings()
    with time_limit(limits):
        _read_and_match(run, data, limits)
    if run.auto_resolve:
        run_auto_resolve(run=run)


def _read_and_match(run: ReconciliationRun, data: bytes, limits: ParseLimits) -> None:
    statement = run.statement
    progress = _Progress(run)
    engine, window = ENGINES[run.engine], run.time_window_seconds
    timer = Timer()
    clock = time.monotonic()
    parsed = parse_statement(data, limits=limits, progress=progress)
    read: tuple[Any, ...] | None = None
    if engine.read_ahead is not None:
        with timer.phase("load"):
            read = engine.read_ahead(parsed)
        progress.write(state=RunState.MATCHING, rows_read=parsed_rows(parsed))
    with transaction.atomic():
        progress.inside_transaction = True
        for name, value in _statement_fields(parsed).items():
            setattr(statement, name, value)
        report = engine.reconcile(
            statement=statement,
            run=run,
            parsed=parsed,
            window_seconds=window,
            timer=timer,
            reparse=lambda: parse_statement(data, limits=limits),
            read=read,
        )
        statement.line_count = report.line_count
        statement.reject_count = report.reject_count
        statement.skipped = report.skipped
        statement.save(
            update_fields=[*_statement_fields(parsed), "line_count", "reject_count", "skipped"]
        )
        finished = timezone.now()
        run.period_start = report.period.start if report.period else None
        run.period_end = report.period.end if report.period else None
        run.summary = build_summary(statement=statement, report=report, window_seconds=window)
        run.summary["run_id"] = run.pk
        run.timings = timer.phases
        run.finished_at = finished
        run.heartbeat_at = finished
        run.duration_ms = int((time.monotonic() - clock) * 1000)
        run.state = RunState.COMPLETED
        run.rows_read = (
            parsed.header_row
            + report.line_count
            + report.reject_count
            + sum(report.skipped.values())
        )
        run.error = ""
        run.save(
            update_fields=[
                "period_start",
                "period_end",
                "summary",
                "timings",
                "finished_at",
                "heartbeat_at",
                "duration_ms",
                "state",
                "rows_read",
                "error",
            ]
        )
        StatementUpload.objects.filter(statement_id=statement.pk).delete()
        emit_run_completed(run)
    logger.info(
        "statement reconciled",
        extra=ctx(
            statement_id=statement.pk,
            run_id=run.pk,
            lines=report.line_count,
            rejects=report.reject_count,
            read_with=report.load_method,
            breaks=run.summary["breaks"],
            duration_ms=run.duration_ms,
        ),
    )


def parsed_rows(parsed: ParsedStatement) -> int:
    """Rows read so far (the header and what is above it included)."""
    count = getattr(parsed.rows, "count", 0)
    return int(count) + parsed.header_row


def _statement_fields(parsed: ParsedStatement) -> dict[str, Any]:
    meta = parsed.metadata
    return {
        "file_format": parsed.file_format,
        "account_holder": meta.account_holder,
        "short_code": meta.short_code[:32],
        "account_name": meta.account_name,
        "period_start": meta.period_start,
        "period_end": meta.period_end,
        "report_time": meta.report_time,
        "opening_balance": meta.opening_balance,
        "closing_balance": meta.closing_balance,
        "available_balance": meta.available_balance,
        "total_paid_in": meta.total_paid_in,
        "total_withdrawn": meta.total_withdrawn,
        "metadata": {"labels": meta.labels, "warnings": meta.warnings},
        "header_row": parsed.header_row,
    }


def statements_sweep(*, older_than: float | None = None, limit: int = 100) -> int:
    """Beat: wake up queued runs whose wake-up was lost (or is still waiting behind others:
    a second one is harmless, a run is claimed once) and runs whose worker stopped
    reporting. Returns how many were woken up."""
    now = timezone.now()
    queued_before = now - timedelta(
        seconds=settings.RECONCILIATION_IMPORT_SWEEP_AFTER if older_than is None else older_than
    )
    stale = now - timedelta(seconds=_stale_after())
    run_ids = list(
        ReconciliationRun.objects.filter(
            Q(state=RunState.QUEUED, heartbeat_at__lte=queued_before)
            | Q(state__in=(RunState.PARSING, RunState.MATCHING), heartbeat_at__lt=stale)
        )
        .order_by("heartbeat_at")
        .values_list("pk", flat=True)[:limit]
    )
    for run_id in run_ids:
        statement_wake(run_id=run_id)
    return len(run_ids)
