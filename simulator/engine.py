"""The simulator's state machine, independent of HTTP: tokens, pushes, queries, callbacks.

Every public method returns a :class:`Reply` (status, body) so the HTTP layer only routes and
writes bytes. Time is wall-clock ``time.time()`` for business times (they are shown in EAT)
and ``time.monotonic()`` for token expiry (immune to clock changes).

Each accepted push gets a daemon thread that sleeps until its callback is due and then POSTs
it; sleeping on a shared ``Event`` lets shutdown interrupt every pending callback at once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import random
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from . import codes
from .c2b import C2BSimulation
from .callbacks import CallbackSender
from .codes import DarajaError
from .config import SimulatorConfig
from .delivery import CallbackDelivery
from .ids import IdFactory, daraja_timestamp, payer_name, to_eat
from .pull import PullSimulation
from .records import Reply, Transaction, iso_eat, redact
from .scenarios import Plan, ScriptError, apply_chaos, parse_script, plan_for_number
from .statement import export_csv
from .validation import PushRequest, validate_push, validate_query

__all__ = ["Reply", "Simulator", "Transaction", "iso_eat", "redact"]


class Simulator(CallbackDelivery, C2BSimulation, PullSimulation):
    """One simulated Daraja: shared by all request threads, guarded by one lock."""

    def __init__(
        self, config: SimulatorConfig, *, log: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.seed: int = config.seed if config.seed is not None else secrets.randbelow(2**31)
        self.chaos_rate = config.chaos_rate
        self.chaos_seed = self.seed
        self._log_sink = log
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._sender = CallbackSender(config.callback_timeout)
        self._c2b_init()
        self._pull_init()
        # Identifiers survive a reset: ids must stay unique for a client whose database keeps
        # the records of earlier runs.
        self.ids = IdFactory(random.Random(self.seed))
        self._tokens: dict[str, float] = {}
        self._transactions: dict[str, Transaction] = {}
        self._order: list[Transaction] = []
        self._scripts: dict[str, deque[Plan]] = {}
        self._push_index = 0
        self._chaos_index = 0

    # --- infrastructure ---------------------------------------------------------------------

    def log(self, message: str) -> None:
        if not self.config.log_requests:
            return
        message = redact(message)
        if self._log_sink is not None:
            self._log_sink(message)
            return
        stamp = to_eat(time.time()).strftime("%Y-%m-%d %H:%M:%S")
        sys.stderr.write(f"[simulator {stamp}] {message}\n")
        sys.stderr.flush()

    def stop(self) -> None:
        """Cancel every pending callback and close the HTTP client."""
        self._stop.set()
        self._sender.close()

    def error_reply(self, error: DarajaError) -> Reply:
        if error.empty_body:
            return Reply(error.status, b"", error_code="(empty body)")
        reply = Reply.json(error.status, error.envelope(self.ids.request_id()))
        reply.error_code = error.error_code
        return reply

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline``; True when the simulator is stopping."""
        return self._stop.wait(max(0.0, deadline - time.time()))

    # --- OAuth ------------------------------------------------------------------------------

    def generate_token(self, authorization: str | None, grant_type: str | None) -> Reply:
        """``GET /oauth/v1/generate``: Basic auth against the configured key and secret."""
        scheme, _, encoded = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise codes.invalid_auth_type()
        if grant_type != "client_credentials":
            raise codes.invalid_grant_type()
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise codes.invalid_auth_type() from None
        key, separator, secret = decoded.partition(b":")
        good_key = hmac.compare_digest(key, self.config.consumer_key.encode())
        good_secret = hmac.compare_digest(secret, self.config.consumer_secret.encode())
        if not (separator and good_key and good_secret):
            # Production answers wrong credentials with HTTP 400 and an empty body.
            raise codes.bad_client_credentials()
        token = self.ids.access_token()
        now = time.monotonic()
        with self._lock:
            # Drop long-dead tokens so a long run does not grow without bound.
            for old in [t for t, exp in self._tokens.items() if exp < now - 3600]:
                del self._tokens[old]
            self._tokens[token] = now + self.config.token_ttl
        # expires_in is a string in real captures.
        return Reply.json(
            200, {"access_token": token, "expires_in": str(int(self.config.token_ttl))}
        )

    def _authenticate(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise codes.invalid_auth_header()
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None or time.monotonic() >= expiry:
            raise codes.invalid_access_token()

    def expire_tokens(self) -> int:
        """Expire every issued token now (tokens stay known, so the answer is 404.001.03)."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0
            return len(self._tokens)

    @staticmethod
    def _json_object(content_type: str | None, body: bytes) -> dict[str, Any]:
        """Daraja cannot read a non-JSON body, so its first field looks missing."""
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise codes.invalid_field("BusinessShortCode")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise codes.invalid_field("BusinessShortCode") from None
        if not isinstance(data, dict):
            raise codes.invalid_field("BusinessShortCode")
        return data

    # --- STK Push ---------------------------------------------------------------------------

    def stk_push(self, authorization: str | None, content_type: str | None, body: bytes) -> Reply:
        """``POST /mpesa/stkpush/v1/processrequest``."""
        self._authenticate(authorization)
        data = self._json_object(content_type, body)
        push = validate_push(data, self.config)
        now = time.time()
        with self._lock:
            if self._phone_busy(push.phone, now):
                raise codes.mpesa_rejection(codes.SUBSCRIBER_LOCKED_MESSAGE)
            plan = self._take_script(push.phone) or plan_for_number(push.phone)
            if plan.reject_locked:
                raise codes.mpesa_rejection(codes.SUBSCRIBER_LOCKED_MESSAGE)
            txn = self._accept(push, data, plan, now)
        worker = threading.Thread(
            target=self._deliver, args=(txn,), name=f"callback-{txn.index}", daemon=True
        )
        worker.start()
        self.log(
            f"accepted {txn.checkout_request_id} phone={push.phone} amount={push.amount} "
            f"-> {txn.result_code} ({txn.plan.scenario}, {txn.plan.source})"
            + (f" chaos={txn.plan.chaos['kind']}" if txn.plan.chaos else "")
        )
        return Reply.json(
            200,
            {
                "MerchantRequestID": txn.merchant_request_id,
                "CheckoutRequestID": txn.checkout_request_id,
                "ResponseCode": "0",
                "ResponseDescription": codes.PUSH_ACCEPTED_DESC,
                "CustomerMessage": codes.PUSH_ACCEPTED_DESC,
            },
        )

    def _phone_busy(self, phone: str, now: float) -> bool:
        """A phone whose customer has not answered yet cannot get another prompt."""
        return any(t.push.phone == phone and not t.answered(now) for t in reversed(self._order))

    def _take_script(self, phone: str) -> Plan | None:
        queue = self._scripts.get(phone)
        if not queue:
            return None
        plan = queue.popleft()
        if not queue:
            del self._scripts[phone]
        return plan

    def _accept(
        self, push: PushRequest, data: dict[str, Any], plan: Plan, now: float
    ) -> Transaction:
        """Fill in the plan, create the transaction and register it (caller holds the lock)."""
        self._push_index += 1
        index = self._push_index
        chaos_index = self._chaos_index
        self._chaos_index += 1
        if plan.source != "script":
            apply_chaos(
                plan,
                rate=self.chaos_rate,
                seed=self.chaos_seed,
                index=chaos_index,
                base_delay=self.config.callback_delay,
            )
        if push.operator_mismatch(self.config):
            # Real Daraja accepts the push and fails it in the callback.
            plan.result_code = codes.OPERATOR_MISSING_CODE
            plan.result_desc = codes.RESULT_DESCRIPTIONS[codes.OPERATOR_MISSING_CODE]
            plan.scenario = "operator_mismatch"

        # Body forms and pending generation vary deterministically with (seed, push index).
        forms = random.Random(f"forms:{self.seed}:{index}")
        amount_roll, balance_roll = forms.random(), forms.random()
        generation = forms.choice(("legacy", "modern"))
        amount_form = plan.amount_form or ("decimal" if amount_roll < 0.25 else "int")
        if plan.balance_form:
            balance_form = plan.balance_form
        elif balance_roll < 0.7:
            balance_form = "no_value"
        elif balance_roll < 0.85:
            balance_form = "absent"
        else:
            balance_form = "zero"
        if plan.pending:
            pending_style = plan.pending
        elif self.config.query_pending == "mixed":
            pending_style = generation
        else:
            pending_style = self.config.query_pending

        answer_delay = next(
            d for d in (plan.customer_delay, plan.delay, self.config.answer_delay) if d is not None
        )
        callback_delay = plan.delay if plan.delay is not None else self.config.callback_delay
        answer_at = now + answer_delay
        callback_at: float | None
        if not plan.deliver:
            callback_at = None
        elif plan.late:
            callback_at = answer_at + self.config.late_delay
        else:
            callback_at = now + max(callback_delay, answer_delay)

        accepted = to_eat(now)
        txn = Transaction(
            index=index,
            checkout_request_id=self.ids.checkout_request_id(accepted, push.phone),
            merchant_request_id=self.ids.merchant_request_id(),
            request=data,
            push=push,
            customer_name=payer_name(push.phone),
            accepted_at=now,
            answer_at=answer_at,
            callback_at=callback_at,
            plan=plan,
            amount_form=amount_form,
            balance_form=balance_form,
            pending_style=pending_style,
        )
        if plan.result_code == codes.SUCCESS_CODE:
            # The money moves when the customer answers: receipt and date come from then.
            completed = to_eat(answer_at)
            txn.receipt = self.ids.receipt(completed)
            txn.transaction_date = daraja_timestamp(completed)
        self._transactions[txn.checkout_request_id] = txn
        self._order.append(txn)
        return txn

    # --- STK Query --------------------------------------------------------------------------

    def stk_query(self, authorization: str | None, content_type: str | None, body: bytes) -> Reply:
        """``POST /mpesa/stkpushquery/v1/query``."""
        self._authenticate(authorization)
        data = self._json_object(content_type, body)
        checkout_request_id = validate_query(data, self.config)
        now = time.time()
        with self._lock:
            txn = self._transactions.get(checkout_request_id)
            if txn is None:
                raise codes.invalid_field("CheckoutRequestID")
            answered = txn.answered(now)
            txn.queries.append(
                {
                    "at": iso_eat(now),
                    "answer": "final" if answered else f"pending ({txn.pending_style})",
                }
            )
        envelope = {
            "ResponseCode": "0",
            "ResponseDescription": codes.QUERY_ACCEPTED_DESC,
            "MerchantRequestID": txn.merchant_request_id,
            "CheckoutRequestID": txn.checkout_request_id,
        }
        if not answered:
            if txn.pending_style == "legacy":
                # Older generation: HTTP 500 whose requestId echoes the CheckoutRequestID.
                raise codes.mpesa_rejection(
                    codes.BEING_PROCESSED_MESSAGE, request_id=txn.checkout_request_id
                )
            return Reply.json(
                200,
                {
                    **envelope,
                    "ResultCode": codes.PENDING_RESULT_CODE,
                    "ResultDesc": codes.PENDING_RESULT_DESC,
                },
            )
        # Query ResultCode is always a string, unlike the callback's number.
        return Reply.json(
            200, {**envelope, "ResultCode": txn.result_code, "ResultDesc": txn.result_desc}
        )

    # --- control API ------------------------------------------------------------------------

    def add_script(self, data: Any) -> dict[str, Any]:
        phone, count, plan = parse_script(data)
        with self._lock:
            queue = self._scripts.setdefault(phone, deque())
            for _ in range(count):
                queue.append(replace(plan, bodies=list(plan.bodies)))
            queued = len(queue)
        self.log(f"script phone={phone} x{count} -> {plan.result_code}")
        return {"phone": phone, "added": count, "queued": queued, "script": plan.to_json()}

    def list_scripts(self) -> dict[str, Any]:
        with self._lock:
            return {
                "scripts": {
                    phone: [plan.to_json() for plan in queue]
                    for phone, queue in self._scripts.items()
                }
            }

    def clear_scripts(self, phone: str | None = None) -> dict[str, Any]:
        with self._lock:
            if phone is None:
                removed = sum(len(q) for q in self._scripts.values())
                self._scripts.clear()
            else:
                removed = len(self._scripts.pop(phone, ()))
        return {"removed": removed}

    def reset(self, *, clear_tokens: bool = False) -> dict[str, Any]:
        """Forget transactions and scripts and cancel pending callbacks; keep tokens by
        default (a client's cached token should survive a test-suite reset)."""
        with self._lock:
            for txn in self._order:
                txn.cancelled = True
            removed = len(self._order)
            self._transactions.clear()
            self._order.clear()
            self._scripts.clear()
            self._push_index = 0
            self._chaos_index = 0
            if clear_tokens:
                self._tokens.clear()
        self._c2b_reset()
        self.log(f"reset ({removed} transactions dropped)")
        return {"reset": True, "transactions_removed": removed, "seed": self.seed}

    def set_chaos(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise ScriptError("body must be a JSON object")
        rate = data.get("rate", self.chaos_rate)
        seed = data.get("seed", self.chaos_seed)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ScriptError("rate must be a number from 0 to 1")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ScriptError("seed must be an integer")
        with self._lock:
            self.chaos_rate = float(rate)
            self.chaos_seed = seed
            # A new setting starts a new, repeatable sequence.
            self._chaos_index = 0
        self.log(f"chaos rate={self.chaos_rate} seed={self.chaos_seed}")
        return self.chaos_state()

    def chaos_state(self) -> dict[str, Any]:
        return {"rate": self.chaos_rate, "seed": self.chaos_seed}

    def health(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "status": "ok",
            "seed": self.seed,
            "chaos": self.chaos_state(),
            "shortcode": cfg.shortcode,
            "till_number": cfg.till_number,
            "callback_delay": cfg.callback_delay,
            "customer_delay": cfg.answer_delay,
            "late_delay": cfg.late_delay,
            "token_ttl": cfg.token_ttl,
            "query_pending": cfg.query_pending,
        }

    # --- records ----------------------------------------------------------------------------

    def transactions_json(self, phone: str | None = None) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            items = [t.to_json(now) for t in self._order if phone is None or t.push.phone == phone]
        return {
            "seed": self.seed,
            "chaos": self.chaos_state(),
            "count": len(items),
            "transactions": items,
        }

    def transaction_json(self, checkout_request_id: str) -> dict[str, Any] | None:
        with self._lock:
            txn = self._transactions.get(checkout_request_id)
            return None if txn is None else txn.to_json(time.time())

    def statement_csv(self, period_from: str | None = None, period_to: str | None = None) -> str:
        records = self.transactions_json()["transactions"] + self.c2b_statement_records()
        return export_csv(
            records,
            shortcode=self.config.shortcode,
            period_from=period_from,
            period_to=period_to,
            opening_balance=self.config.opening_balance,
            account_holder=self.config.account_holder,
            organization=self.config.account_holder,
        )

    def report_time(self) -> str:
        return f"{to_eat(time.time()):%Y%m%d%H%M%S}"
