"""Test helpers: a Daraja-speaking client for a started simulator and a callback receiver.

Delays are tiny (tens of milliseconds) so the whole suite stays fast; tests that need a
customer who has not answered yet script a longer delay for that one push.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from simulator.ids import stk_password
from simulator.server import SimulatorServer

# Deadlines, not delays: a wait returns as soon as its condition holds, so a generous deadline
# costs nothing when things are quick and keeps a busy machine from failing the test.
WAIT = 15.0


def wait_until(condition: Any, timeout: float = WAIT) -> Any:
    """Poll ``condition()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(0.01)


FAST: dict[str, Any] = {
    "callback_delay": 0.05,
    "late_delay": 0.4,
    "duplicate_gap": 0.02,
    # A deadline for the receiver in this process to answer, not a delay: on a busy machine a
    # thread-served answer can take seconds, and a timed-out POST fails the test that sent it.
    "callback_timeout": 10.0,
    "seed": 1234,
    "log_requests": False,
}

_phones = itertools.count(1)


def fresh_phone() -> str:
    """A number outside the test-number table (so it succeeds) and unused in this run."""
    return f"2547220{next(_phones):05d}"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    at: float

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.raw)


class CallbackReceiver:
    """A tiny ThreadingHTTPServer that records every POST and answers like a Django view."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.reply = b'{"ResultCode":0,"ResultDesc":"Accepted"}'
        # Answer no POST until this many have arrived (up to WAIT): POSTs sent one after the
        # other then time out, so only POSTs in flight together are all answered.
        self.answer_together = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver._cond:
                    receiver.received.append(
                        Received(self.path, dict(self.headers.items()), raw, time.time())
                    )
                    receiver._cond.notify_all()
                    receiver._cond.wait_for(
                        lambda: len(receiver.received) >= receiver.answer_together, timeout=WAIT
                    )
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.reply)))
                self.end_headers()
                self.wfile.write(receiver.reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mpesa/callback"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def for_checkout(self, checkout_id: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if checkout_id.encode() in r.raw]

    def wait_for(self, count: int, timeout: float = WAIT, checkout_id: str | None = None):
        """Wait until ``count`` POSTs arrived (for one CheckoutRequestID if given)."""
        deadline = time.time() + timeout
        with self._cond:
            while True:
                items = (
                    self.received
                    if checkout_id is None
                    else [r for r in self.received if checkout_id.encode() in r.raw]
                )
                if len(items) >= count:
                    return list(items)
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} callbacks, got {len(items)}")
                self._cond.wait(remaining)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sim:
    """A started simulator plus a Daraja-speaking httpx client."""

    def __init__(self, server: SimulatorServer, url: str, receiver: CallbackReceiver) -> None:
        self.server = server
        self.url = url
        self.config = server.simulator.config
        self.receiver = receiver
        self.http = httpx.Client(base_url=url, timeout=5, trust_env=False)
        self._token: str | None = None

    def get_token(self) -> httpx.Response:
        return self.http.get(
            "/oauth/v1/generate",
            params={"grant_type": "client_credentials"},
            auth=(self.config.consumer_key, self.config.consumer_secret),
        )

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.get_token().json()["access_token"]
        return self._token

    def credentials(self, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + 3 * 3600))
        return {
            "Password": stk_password(self.config.shortcode, self.config.passkey, timestamp),
            "Timestamp": timestamp,
        }

    def push_body(self, phone: str | None = None, **fields: Any) -> dict[str, Any]:
        phone = phone or fresh_phone()
        body: dict[str, Any] = {
            "BusinessShortCode": int(self.config.shortcode),
            **self.credentials(),
            "TransactionType": "CustomerPayBillOnline",
            "Amount": 10,
            "PartyA": int(phone),
            "PartyB": int(self.config.shortcode),
            "PhoneNumber": int(phone),
            "CallBackURL": self.receiver.url,
            "AccountReference": "INV001",
            "TransactionDesc": "Order",
        }
        body.update(fields)
        return body

    def push(self, phone: str | None = None, *, body: dict[str, Any] | None = None, **fields):
        payload = body if body is not None else self.push_body(phone, **fields)
        return self.http.post(
            "/mpesa/stkpush/v1/processrequest",
            json=payload,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def accepted(self, phone: str | None = None, **fields: Any) -> dict[str, Any]:
        response = self.push(phone, **fields)
        assert response.status_code == 200, response.text
        return response.json()

    def query(self, checkout_id: str, **fields: Any) -> httpx.Response:
        payload = {
            "BusinessShortCode": self.config.shortcode,
            **self.credentials(),
            "CheckoutRequestID": checkout_id,
        }
        payload.update(fields)
        return self.http.post(
            "/mpesa/stkpushquery/v1/query",
            json=payload,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def script(self, **fields: Any) -> httpx.Response:
        response = self.http.post("/simulator/scripts", json=fields)
        assert response.status_code == 201, response.text
        return response

    def record(self, checkout_id: str) -> dict[str, Any]:
        return self.http.get(f"/simulator/transactions/{checkout_id}").json()

    def wait_answered(self, checkout_id: str, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            record = self.record(checkout_id)
            if record["status"] != "pending":
                return record
            time.sleep(0.01)
        raise AssertionError("customer never answered")

    def wait_callbacks(self, checkout_id: str, count: int, timeout: float = WAIT) -> list[dict]:
        """Wait until ``count`` callback POSTs are recorded as finished; return them."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            attempts = self.record(checkout_id)["callbacks"]
            done = [a for a in attempts if a["finished_at"] or a["error"]]
            if len(done) >= count:
                return attempts
            time.sleep(0.01)
        raise AssertionError(f"expected {count} finished callbacks")

    def close(self) -> None:
        self.http.close()
        self.server.shutdown()
