"""The local journal: where a callback goes when the database cannot take it.

Daraja does not send a callback or a C2B confirmation again, so a request answered 500
during a database outage is money the books may never see (C2B has no STK Query to ask). When
storing a request fails for want of the database, the web process appends it to a journal
file on its own host (``CALLBACK_JOURNAL_DIR``), fsyncs it, and answers as usual; when the
database is back, :func:`journal_drain` moves every entry into the inbox, exactly once (each
entry has an id; the inbox's ``journal_id`` is unique).

The file is append-only and shared by the host's web processes (``O_APPEND`` writes under an
exclusive ``flock``, which a drain holds only to rename the file: an append never waits for
the database). Each entry is ``MAGIC | length | CRC-32 | JSON``; a process killed in
the middle of an append leaves a torn entry, which the reader skips, finding the next entry by
its magic (a NUL byte never occurs in the JSON). The journal is bounded
(``CALLBACK_JOURNAL_MAX_BYTES``): past it, a request is refused (500) rather than written
where it could not be kept.

Draining renames the file first (new appends start a new one), inserts every entry, and
removes the renamed file only once all are in; a drain that dies is taken up by the next,
and entries already in the inbox are skipped by their id.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from core.logging import ctx
from core.models import hash_secret

from .models import CallbackState, InboundCallback

logger = logging.getLogger(__name__)

MAGIC = b"\x00JRN"
_HEADER = struct.Struct(">4sII")  # magic, length, crc32
JOURNAL = "callbacks.journal"
DRAINING = "callbacks.journal.draining"
_LOCK = "callbacks.journal.lock"  # appends, and the drain's rename
_DRAIN_LOCK = "callbacks.journal.drain-lock"  # one drain at a time


class JournalFull(Exception):
    """The journal is at CALLBACK_JOURNAL_MAX_BYTES: the request cannot be kept."""


@dataclass(frozen=True)
class JournalEntry:
    id: str
    received_at: datetime
    kind: str
    token_hash: str
    body: bytes
    content_type: str
    headers: dict[str, str]
    source_ip: str | None
    source_flagged: bool


def _dir() -> Path:
    path = Path(settings.CALLBACK_JOURNAL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _locked(path: Path, name: str = _LOCK) -> Any:
    handle = open(path / name, "a+b")  # noqa: SIM115 (closed by the caller)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def journal_append(
    *,
    kind: str,
    token: str,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    source_ip: str | None,
    source_flagged: bool = False,
) -> str:
    """Write one request to the journal and fsync it; returns the entry's id. Raises
    JournalFull past CALLBACK_JOURNAL_MAX_BYTES."""
    entry_id = str(uuid.uuid4())
    payload = json.dumps(
        {
            "id": entry_id,
            "received_at": timezone.now().isoformat(),
            "kind": kind,
            "token_hash": hash_secret(token) if token else "",
            "body": base64.b64encode(body).decode(),
            "content_type": content_type[:200],
            "headers": dict(headers),
            "source_ip": source_ip,
            "source_flagged": source_flagged,
        },
        separators=(",", ":"),
    ).encode()
    record = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
    folder = _dir()
    lock = _locked(folder)
    try:
        path = folder / JOURNAL
        size = path.stat().st_size if path.exists() else 0
        if size + len(record) > settings.CALLBACK_JOURNAL_MAX_BYTES:
            raise JournalFull(f"the journal is full ({size} bytes)")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, record)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        lock.close()
    logger.warning(
        "database unavailable: request kept in the journal",
        extra=ctx(journal_id=entry_id, kind=kind, bytes=len(body)),
    )
    return entry_id


def journal_read(path: Path) -> Iterator[JournalEntry]:
    """Every whole entry of a journal file, in order; torn or corrupt ones are skipped."""
    data = path.read_bytes()
    position = data.find(MAGIC)
    while position != -1 and position + _HEADER.size <= len(data):
        _, length, crc = _HEADER.unpack_from(data, position)
        start = position + _HEADER.size
        payload = data[start : start + length]
        if len(payload) == length and zlib.crc32(payload) == crc:
            entry = _entry(payload)
            if entry is not None:
                yield entry
                position = data.find(MAGIC, start + length)
                continue
        logger.error("torn journal entry skipped", extra=ctx(offset=position))
        position = data.find(MAGIC, position + 1)


def _entry(payload: bytes) -> JournalEntry | None:
    try:
        raw = json.loads(payload)
        return JournalEntry(
            id=str(uuid.UUID(raw["id"])),
            received_at=datetime.fromisoformat(raw["received_at"]),
            kind=str(raw["kind"]),
            token_hash=str(raw["token_hash"]),
            body=base64.b64decode(raw["body"]),
            content_type=str(raw["content_type"]),
            headers={str(k): str(v) for k, v in dict(raw["headers"]).items()},
            source_ip=raw.get("source_ip"),
            source_flagged=bool(raw.get("source_flagged")),
        )
    except (ValueError, KeyError, TypeError):
        return None


_draining = threading.Lock()


def journal_drain_soon() -> None:
    """After a request was stored: if this host's journal holds entries (the database is
    back), drain it in a background thread of this process (one at a time; the file lock
    keeps other processes out)."""
    if not journal_pending() or not _draining.acquire(blocking=False):
        return

    def run() -> None:
        try:
            journal_drain()
        except Exception:  # the database went away again: the next request or beat retries
            logger.warning("journal drain failed; will retry", exc_info=True)
        finally:
            connections.close_all()
            _draining.release()

    threading.Thread(target=run, name="journal-drain", daemon=True).start()


def journal_pending() -> bool:
    """Is anything waiting in this host's journal (cheap: two stat calls)?"""
    folder = Path(settings.CALLBACK_JOURNAL_DIR)
    return any(
        (folder / name).exists() and (folder / name).stat().st_size > 0
        for name in (JOURNAL, DRAINING)
    )


def journal_drain() -> int:
    """Move the journal's entries into the inbox (each once); returns how many were new.
    Raises the database's error when it is still down (nothing is lost: the file stays)."""
    from .services.wakeup import drain_enqueue

    folder = _dir()
    draining = folder / DRAINING
    drain_lock = _locked(folder, _DRAIN_LOCK)
    try:
        if not draining.exists():
            # Appends wait only for the rename, never for the database.
            append_lock = _locked(folder)
            try:
                current = folder / JOURNAL
                if not current.exists() or current.stat().st_size == 0:
                    return 0
                os.rename(current, draining)
            finally:
                append_lock.close()
        entries = list(journal_read(draining))
        stored = _store(entries)
        os.remove(draining)
    finally:
        drain_lock.close()
    logger.warning("journal drained into the inbox", extra=ctx(entries=len(entries), new=stored))
    if stored:
        transaction.on_commit(drain_enqueue)
    return stored


def _store(entries: list[JournalEntry]) -> int:
    if not entries:
        return 0
    with transaction.atomic():
        known = set(
            InboundCallback.objects.filter(
                journal_id__in=[entry.id for entry in entries]
            ).values_list("journal_id", flat=True)
        )
        new = [entry for entry in entries if uuid.UUID(entry.id) not in known]
        InboundCallback.objects.bulk_create(
            [
                InboundCallback(
                    kind=entry.kind,
                    body=entry.body,
                    body_size=len(entry.body),
                    content_type=entry.content_type,
                    headers=entry.headers,
                    source_ip=entry.source_ip,
                    source_flagged=entry.source_flagged,
                    token_hash=entry.token_hash,
                    dedupe_key=hashlib.sha256(entry.body).hexdigest(),
                    state=CallbackState.RECEIVED,
                    journal_id=entry.id,
                    journaled_at=entry.received_at,
                )
                for entry in new
            ],
            batch_size=500,
        )
    return len(new)
