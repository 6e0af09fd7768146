"""The events reconciliation emits into the outbox, in the transaction of its change:

- ``reconciliation.run.completed``: a statement was read and matched (the run as the API
  shows it, with its summary);
- ``reconciliation.break.opened``: one per break the run found;
- ``reconciliation.break.resolved``: a break was resolved (by a person, or automatically).
"""

from __future__ import annotations

from typing import Any

from events.services import NewEvent, events_emit

from .models import Break, BreakStatus, ReconciliationRun

RUN_COMPLETED = "reconciliation.run.completed"
BREAK_OPENED = "reconciliation.break.opened"
BREAK_RESOLVED = "reconciliation.break.resolved"
TYPES = (RUN_COMPLETED, BREAK_OPENED, BREAK_RESOLVED)

# Breaks serialized and written per INSERT.
_CHUNK = 2000


def _break_data(brk: Break) -> dict[str, Any]:
    from .api.serializers import BreakSerializer  # the API module imports the services

    return dict(BreakSerializer(brk).data)


def emit_run_completed(run: ReconciliationRun) -> None:
    """The run's completion and one ``break.opened`` per break it found."""
    from .api.serializers import RunSerializer

    breaks = Break.objects.filter(run=run).select_related("line", "payment")
    open_count = 0
    chunk: list[NewEvent] = []
    for brk in breaks.prefetch_related("approvals").iterator(chunk_size=_CHUNK):
        open_count += brk.status == BreakStatus.OPEN
        chunk.append(NewEvent(BREAK_OPENED, _break_data(brk), run.client_id, str(brk.pk)))
        if len(chunk) >= _CHUNK:
            events_emit(chunk)
            chunk = []
    events_emit(chunk)
    run.open_breaks = open_count  # type: ignore[attr-defined]
    events_emit(
        [NewEvent(RUN_COMPLETED, dict(RunSerializer(run).data), run.client_id, str(run.pk))]
    )


def emit_break_resolved(brk: Break) -> None:
    brk = Break.objects.select_related("line", "payment", "run").get(pk=brk.pk)
    events_emit([NewEvent(BREAK_RESOLVED, _break_data(brk), brk.run.client_id, str(brk.pk))])
