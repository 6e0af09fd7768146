"""Delivering a push's callbacks: a daemon thread per accepted push sleeps until the callback
is due, then POSTs it as the plan says (once, duplicated, concurrently, malformed), recording
each attempt and its answer on the transaction."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from .callbacks import Attempt, CallbackSender, body_text
from .config import SimulatorConfig
from .records import Transaction


class CallbackDelivery:
    """The callback half of :class:`simulator.engine.Simulator`."""

    config: SimulatorConfig
    _lock: threading.RLock
    _stop: threading.Event
    _sender: CallbackSender

    if TYPE_CHECKING:

        def _wait_until(self, deadline: float) -> bool: ...

        def log(self, message: str) -> None: ...

    def _deliver(self, txn: Transaction) -> None:
        """Worker thread: wait, then POST the callback as the plan says."""
        plan = txn.plan
        if txn.callback_at is None or self._wait_until(txn.callback_at) or txn.cancelled:
            return
        normal = txn.callback_text()
        if plan.concurrent:
            barrier = threading.Barrier(plan.deliveries)
            workers = [
                threading.Thread(
                    target=self._post_once, args=(txn, n, normal, barrier), daemon=True
                )
                for n in range(plan.deliveries)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            return
        for n in range(plan.deliveries):
            if n and (self._stop.wait(self.config.duplicate_gap) or txn.cancelled):
                return
            self._post_once(txn, n, normal)

    def _post_once(
        self,
        txn: Transaction,
        n: int,
        normal: str,
        barrier: threading.Barrier | None = None,
    ) -> None:
        kind = txn.plan.body_kind(n)
        attempt = Attempt(
            attempt=n + 1,
            kind=kind,
            url=txn.push.callback_url,
            body=body_text(kind, normal),
            scheduled_at=time.time(),
        )
        with self._lock:
            txn.callbacks.append(attempt)
        if barrier is not None:
            # Release all concurrent POSTs at the same instant.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
        if self._stop.is_set() or txn.cancelled:
            with self._lock:
                attempt.error = "cancelled"
            return
        with self._lock:
            attempt.started_at = time.time()
        result = self._sender.send(attempt.url, attempt.body)
        # Update the record in one step so a reader never sees half an answer.
        with self._lock:
            attempt.started_at = result.started_at
            attempt.finished_at = result.finished_at
            attempt.status_code = result.status_code
            attempt.response_body = result.response_body
            attempt.error = result.error
        outcome = attempt.status_code if attempt.error is None else attempt.error
        self.log(
            f"callback {txn.checkout_request_id} #{attempt.attempt} ({kind}) "
            f"POST {attempt.url} -> {outcome}"
        )
