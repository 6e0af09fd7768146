"""HTTP front of the simulator: routing, the request handler and server start-up helpers.

Routes mirror Daraja's paths so a client only changes its base URL; the control API lives under
``/simulator/`` where no Daraja path can collide with it. Uses ``ThreadingHTTPServer`` with
HTTP/1.1 keep-alive, because httpx clients reuse connections the way they would with Daraja.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import codes
from .codes import DarajaError
from .config import SimulatorConfig
from .engine import Reply, Simulator
from .scenarios import ScriptError

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
CONTROL_PREFIX = "/simulator/"
MAX_BODY = 1_000_000


def versioned_api(
    method: Callable[..., Reply], version: str
) -> Callable[[Simulator, str | None, str | None, bytes], Reply]:
    """A business API that takes its version (``v1``/``v2``) first."""

    def api(
        sim: Simulator, authorization: str | None, content_type: str | None, body: bytes
    ) -> Reply:
        return method(sim, version, authorization, content_type, body)

    return api


_BUSINESS_APIS: dict[str, Callable[[Simulator, str | None, str | None, bytes], Reply]] = {
    STK_PUSH_PATH: Simulator.stk_push,
    STK_QUERY_PATH: Simulator.stk_query,
    **{
        f"/mpesa/c2b/{version}/registerurl": versioned_api(Simulator.c2b_register_url, version)
        for version in ("v1", "v2")
    },
    **{
        f"/mpesa/c2b/{version}/simulate": versioned_api(Simulator.c2b_simulate, version)
        for version in ("v1", "v2")
    },
    "/pulltransactions/v1/register": Simulator.pull_register,
    "/pulltransactions/v1/query": Simulator.pull_query,
}


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _loopback_name(host: str | None) -> bool:
    """``localhost``, ``127.x.x.x`` or ``::1`` (what a Host header or URL may carry)."""
    if not host:
        return False
    host = host.strip().lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_HOST_HEADER = re.compile(r"^(?P<name>\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(?P<port>\d{1,5}))?$")


def control_refusal(method: str, headers: Any, port: int | None = None) -> Reply | None:
    """Why a ``/simulator/`` request is refused, or None. The control API changes what the
    simulator answers and shows callback URLs: only this machine's own tools may use it.

    * ``Host`` must name loopback (``localhost``, ``127.0.0.1``, ``[::1]``): a web page that
      rebinds its own domain to 127.0.0.1 sends its domain here (DNS rebinding);
    * ``Origin``, when a browser sends one, must be the simulator's own loopback origin: no
      page from elsewhere may drive it;
    * a POST must be ``Content-Type: application/json``: a browser sends that cross-origin
      only after a preflight this server never answers, so no "simple" form or ``text/plain``
      post from a page gets through."""
    match = _HOST_HEADER.match((headers.get("Host") or "").strip())
    if match is None or not _loopback_name(match["name"]):
        return _control_error(
            403, "the control API answers only to a loopback Host (localhost, 127.0.0.1, [::1])"
        )
    origin = headers.get("Origin")
    if origin is not None:
        try:
            parts = urlsplit(origin.strip())
            same = (
                parts.scheme == "http"
                and _loopback_name(parts.hostname)
                and (port is None or (parts.port or 80) == port)
            )
        except ValueError:
            same = False
        if not same:
            return _control_error(403, f"cross-origin request refused (Origin {origin[:100]})")
    if method == "POST":
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _control_error(
                415,
                "control API POSTs must be Content-Type: application/json (a body of {} "
                "when there is nothing to send)",
            )
    return None


def route(
    sim: Simulator,
    method: str,
    path: str,
    query: dict[str, list[str]],
    headers: Any,
    body: bytes,
    *,
    port: int | None = None,
) -> Reply:
    """Dispatch one request. ``headers`` needs a case-insensitive ``get`` (``email.Message``);
    ``port``: the server's, that a control request's ``Origin`` must name."""
    try:
        if path == OAUTH_PATH:
            if method != "GET":
                raise codes.method_not_allowed()
            return sim.generate_token(headers.get("Authorization"), _first(query, "grant_type"))
        api = _BUSINESS_APIS.get(path)
        if api is not None:
            if method != "POST":
                raise codes.method_not_allowed()
            return api(sim, headers.get("Authorization"), headers.get("Content-Type"), body)
        if path.startswith(CONTROL_PREFIX):
            return control_refusal(method, headers, port) or control(sim, method, path, query, body)
        raise codes.resource_not_found()
    except DarajaError as error:
        return sim.error_reply(error)


def _control_error(status: int, message: str) -> Reply:
    return Reply.json(status, {"error": message})


def _masked(record: dict[str, Any]) -> dict[str, Any]:
    """A transaction record as the control API shows it: the callback URL's token (the
    receiver's secret) and the STK Password (derived from the passkey) masked. In-process
    callers (``server.simulator.transactions_json()``) still get the record whole."""
    record = dict(record)
    record["callback_url"] = redact_url(record.get("callback_url"))
    request = record.get("request")
    if isinstance(request, dict):
        request = dict(request)
        if "Password" in request:
            request["Password"] = "<redacted>"
        if "CallBackURL" in request:
            request["CallBackURL"] = redact_url(request["CallBackURL"])
        record["request"] = request
    record["callbacks"] = [
        {**attempt, "url": redact_url(attempt.get("url"))}
        for attempt in record.get("callbacks", [])
    ]
    return record


def redact_url(url: Any) -> Any:
    """A callback URL with its last path segment (the token) replaced by ``<token>``."""
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    segments = parts.path.split("/")
    index = len(segments) - 1 if segments[-1] else len(segments) - 2
    if index <= 0:
        return url
    segments[index] = "<token>"
    return parts._replace(path="/".join(segments), query="", fragment="").geturl()


def _json_body(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ScriptError("body is not valid JSON") from None


def control(
    sim: Simulator, method: str, path: str, query: dict[str, list[str]], body: bytes
) -> Reply:
    """The ``/simulator/`` control API (plain JSON errors: it is not part of Daraja)."""
    name = path[len(CONTROL_PREFIX) :].rstrip("/")
    allowed: tuple[str, ...]
    try:
        if name == "health":
            allowed = ("GET",)
            if method == "GET":
                return Reply.json(200, sim.health())
        elif name == "scripts":
            allowed = ("GET", "POST", "DELETE")
            if method == "GET":
                return Reply.json(200, sim.list_scripts())
            if method == "POST":
                return Reply.json(201, sim.add_script(_json_body(body)))
            if method == "DELETE":
                return Reply.json(200, sim.clear_scripts(_first(query, "phone")))
        elif name == "reset":
            allowed = ("POST",)
            if method == "POST":
                data = _json_body(body)
                tokens = isinstance(data, dict) and data.get("tokens") is True
                return Reply.json(200, sim.reset(clear_tokens=tokens))
        elif name == "tokens/expire":
            allowed = ("POST",)
            if method == "POST":
                return Reply.json(200, {"expired": sim.expire_tokens()})
        elif name == "chaos":
            allowed = ("GET", "POST")
            if method == "GET":
                return Reply.json(200, sim.chaos_state())
            if method == "POST":
                return Reply.json(200, sim.set_chaos(_json_body(body)))
        elif name == "transactions":
            allowed = ("GET",)
            if method == "GET":
                listing = sim.transactions_json(_first(query, "phone"))
                listing["transactions"] = [_masked(t) for t in listing["transactions"]]
                return Reply.json(200, listing)
        elif name.startswith("transactions/"):
            allowed = ("GET",)
            if method == "GET":
                record = sim.transaction_json(unquote(name[len("transactions/") :]))
                if record is None:
                    return _control_error(404, "unknown CheckoutRequestID")
                return Reply.json(200, _masked(record))
        elif name == "c2b":
            allowed = ("GET", "POST")
            if method == "GET":
                return Reply.json(200, sim.c2b_state())
            if method == "POST":
                return Reply.json(200, sim.c2b_set_options(_json_body(body)))
        elif name == "c2b/payments":
            allowed = ("GET",)
            if method == "GET":
                return Reply.json(200, sim.c2b_payments_json())
        elif name == "statement.csv":
            allowed = ("GET",)
            if method == "GET":
                text = sim.statement_csv(_first(query, "from"), _first(query, "to"))
                filename = f"ORG_{sim.config.shortcode}_UtilityAccount_All_{sim.report_time()}.csv"
                return Reply(
                    200,
                    text.encode("utf-8"),
                    content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'},
                )
        else:
            return _control_error(404, f"unknown control endpoint {path}")
    except (ScriptError, ValueError) as exc:
        return _control_error(400, str(exc))
    reply = _control_error(405, f"{method} not allowed; use {', '.join(allowed)}")
    reply.headers["Allow"] = ", ".join(allowed)
    return reply


class DarajaRequestHandler(BaseHTTPRequestHandler):
    """Reads one request, hands it to :func:`route`, writes the reply, logs one line."""

    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes; without TCP_NODELAY a keep-alive client waits
    # for a delayed ACK (~40 ms) on every response.
    disable_nagle_algorithm = True
    server_version = "DarajaSimulator/1.0"
    sys_version = ""
    server: SimulatorServer

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        started = time.perf_counter()
        sim = self.server.simulator
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(Reply.json(400, {"error": "unreadable request body"}), method)
            return
        try:
            reply = route(
                sim,
                method,
                split.path,
                parse_qs(split.query),
                self.headers,
                body,
                port=self.server.server_address[1],
            )
        except Exception:  # a bug must answer like Daraja's 500, not drop the connection
            sim.log("internal error:\n" + traceback.format_exc())
            reply = sim.error_reply(codes.internal_error())
        self._write(reply, method)
        elapsed = (time.perf_counter() - started) * 1000
        detail = f" {reply.error_code}" if reply.error_code else ""
        sim.log(
            f"{self.client_address[0]} {method} {split.path} -> {reply.status}{detail} "
            f"({elapsed:.1f} ms)"
        )

    def _write(self, reply: Reply, method: str) -> None:
        self.send_response(reply.status)
        if reply.body:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: :meth:`_handle` writes its own single line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        self.server.simulator.log(f"{self.address_string()} {format % args}")


class SimulatorServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer owning one :class:`Simulator`; ``shutdown()`` stops everything."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        config: SimulatorConfig | None = None,
        *,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.simulator = Simulator(config or SimulatorConfig.from_env(), log=log)
        self._serving = threading.Event()
        self._closed = False
        super().__init__(address, DarajaRequestHandler)

    @property
    def base_url(self) -> str:
        address, port = self.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else address
        if host in ("0.0.0.0", ""):  # noqa: S104 (turning a bind address into a URL)
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._serving.set()
        try:
            super().serve_forever(poll_interval)
        finally:
            self._serving.clear()

    def shutdown(self) -> None:
        """Stop serving (if serving), cancel pending callbacks and close the socket."""
        if self._serving.is_set():
            super().shutdown()
        self.simulator.stop()
        if not self._closed:
            self._closed = True
            self.server_close()


def start_in_thread(
    port: int = 0,
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    log: Callable[[str], None] | None = None,
) -> tuple[SimulatorServer, str]:
    """Start a simulator on a background thread; returns ``(server, base_url)``.

    ``port=0`` picks a free port. Call ``server.shutdown()`` when done. ``config`` defaults to
    :meth:`SimulatorConfig.from_env`.
    """
    server = SimulatorServer((host, port), config, log=log)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.name = f"daraja-simulator-{server.server_address[1]}"
    thread.start()
    # Only return once serving: shutdown() before the loop starts would otherwise race it.
    if not server._serving.wait(timeout=5):
        raise RuntimeError("simulator thread did not start")
    return server, server.base_url


def banner(server: SimulatorServer) -> str:
    sim = server.simulator
    cfg = sim.config
    return (
        f"Daraja simulator on {server.base_url} (shortcode {cfg.shortcode}, till "
        f"{cfg.till_number}, callback delay {cfg.callback_delay}s, chaos rate "
        f"{sim.chaos_rate})\nseed={sim.seed}  (repeat this run with --seed {sim.seed})"
    )


def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Run in the foreground until Ctrl-C or SIGTERM (``python -m simulator``)."""
    server = SimulatorServer((host, port), config)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    print(banner(server), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        print("Daraja simulator stopped", file=sys.stderr, flush=True)
