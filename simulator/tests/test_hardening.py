"""The simulator on a developer's machine: its control API cannot be driven by a web page
(cross-origin posts, DNS rebinding), it shows no callback token or STK password, and its log
holds no phone number in any form."""

from __future__ import annotations

import socket

import httpx
import pytest

from core.logging import mask_text
from simulator.config import SimulatorConfig
from simulator.engine import redact
from simulator.server import start_in_thread
from simulator.tests.helpers import FAST, wait_until

# --- The control API -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},  # a "simple" cross-origin post needs no preflight
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_a_simple_post_cannot_drive_the_control_api(sim, headers):
    response = sim.http.post("/simulator/chaos", content=b'{"rate": 1}', headers=headers)
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert sim.http.get("/simulator/chaos").json()["rate"] == 0


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "null", "http://127.0.0.1.evil.example", "http://localhost:1"],
)
def test_another_origin_cannot_drive_the_control_api(sim, origin):
    response = sim.http.post("/simulator/chaos", json={"rate": 1}, headers={"Origin": origin})
    assert response.status_code == 403 and "cross-origin" in response.json()["error"]
    assert sim.http.get("/simulator/transactions", headers={"Origin": origin}).status_code == 403
    assert sim.http.get("/simulator/chaos").json()["rate"] == 0


def test_the_simulators_own_origin_and_no_origin_are_served(sim):
    port = sim.server.server_address[1]
    for origin in (None, f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        headers = {} if origin is None else {"Origin": origin}
        response = sim.http.post("/simulator/chaos", json={"rate": 0}, headers=headers)
        assert response.status_code == 200, (origin, response.text)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8001", "127.0.0.1.nip.io", ""])
def test_a_rebound_host_name_is_refused(sim, host):
    """DNS rebinding: a page on evil.example re-points its name at 127.0.0.1; the browser
    then sends Host: evil.example to the simulator."""
    response = sim.http.get("/simulator/transactions", headers={"Host": host})
    assert response.status_code == 403 and "loopback Host" in response.json()["error"]


def test_transactions_show_no_callback_token_or_password(sim):
    token = "Ab3_-xYz0123456789abcdefghijkLMNOP0123456"
    url = f"{sim.receiver.url.rstrip('/')}/payments/callback/{token}/"
    checkout = sim.accepted(CallBackURL=url)["CheckoutRequestID"]
    sim.receiver.wait_for(1, checkout_id=checkout)
    password = sim.push_body()["Password"]

    for path in ("/simulator/transactions", f"/simulator/transactions/{checkout}"):
        text = sim.http.get(path).text
        assert token not in text and password not in text, path
        assert "<token>" in text and "<redacted>" in text
    record = sim.http.get(f"/simulator/transactions/{checkout}").json()
    assert record["callback_url"].endswith("/payments/callback/<token>/")
    # In-process callers (tests driving the simulator) still read the record whole.
    assert sim.server.simulator.transaction_json(checkout)["callback_url"] == url


def test_the_cli_still_drives_the_control_api(sim):
    from simulator.__main__ import main

    assert main(["reset", "--url", sim.url]) == 0
    assert main(["expire-tokens", "--url", sim.url]) == 0


# --- The log ------------------------------------------------------------------------------------

FORMS = [
    "254712345678",
    "+254712345678",
    "0712345678",
    "712345678",
    "254-712-345-678",
    "+254 712 345 678",
    "%2B254%20712%20345%20678",
    "%3D254712345678",
    "%22712345678%22",
    "196.201.214.200",
    "ws_CO_27112026103000123712345678",
]


@pytest.mark.parametrize("text", FORMS)
def test_the_simulator_masks_numbers_as_the_project_does(text):
    assert redact(f"phone={text} x") == mask_text(f"phone={text} x")


def test_the_simulators_log_holds_no_phone_number_in_any_form():
    lines: list[str] = []
    server, url = start_in_thread(
        config=SimulatorConfig(**{**FAST, "log_requests": True}), log=lines.append
    )
    try:
        host, port = server.server_address[:2]
        for phone in ("0712345678", "+254%20712%20345%20678", "712345678"):
            # A request line the server cannot read is logged as it came.
            with socket.create_connection((host, port), timeout=5) as raw:
                raw.sendall(
                    f"GET /simulator/transactions?phone={phone} x HTTP/1.1\r\n\r\n".encode()
                )
                raw.recv(4096)
        httpx.get(f"{url}/simulator/transactions", params={"phone": "0712345678"})
        wait_until(lambda: len(lines) >= 4)  # all four requests logged, checked below
    finally:
        server.shutdown()
    logged = "\n".join(lines)
    assert "transactions" in logged  # lines were captured
    assert "712345678" not in logged.replace("%20", "").replace(" ", "")
    assert "345%20678" not in logged
