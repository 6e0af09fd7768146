"""The /simulator/ control API: scripts, reset, records, health; and the CLI client."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from simulator.__main__ import build_parser, main, script_payload
from simulator.tests.helpers import fresh_phone


def test_scripts_apply_to_the_next_n_pushes_in_order(sim, receiver):
    phone = fresh_phone()
    created = sim.script(phone=phone, result_code="1032", count=2).json()
    assert created["added"] == 2 and created["queued"] == 2
    sim.script(phone=phone, result_code=1)  # integers are accepted as codes
    codes = []
    for _ in range(4):
        checkout = sim.accepted(phone)["CheckoutRequestID"]
        (received,) = receiver.wait_for(1, checkout_id=checkout)
        codes.append(received.json()["Body"]["stkCallback"]["ResultCode"])
        sim.wait_answered(checkout)
    assert codes == [1032, 1032, 1, 0]  # then back to the default


def test_script_phone_forms_are_normalised(sim):
    for phone in ("0722000111", "+254722000111", 254722000111):
        body = sim.http.post("/simulator/scripts", json={"phone": phone}).json()
        assert body["phone"] == "254722000111"


def test_scripted_deliveries(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, deliveries=3)
    checkout = sim.accepted(phone)["CheckoutRequestID"]
    assert len(receiver.wait_for(3, checkout_id=checkout)) == 3
    attempts = sim.wait_callbacks(checkout, 3)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all(a["status_code"] == 200 for a in attempts)
    assert attempts[0]["response_body"] == '{"ResultCode":0,"ResultDesc":"Accepted"}'


def test_scripted_no_delivery(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, deliver=False, result_code="1032")
    checkout = sim.accepted(phone)["CheckoutRequestID"]
    sim.wait_answered(checkout)
    time.sleep(0.15)
    assert receiver.for_checkout(checkout) == []
    assert sim.query(checkout).json()["ResultCode"] == "1032"


def test_scripted_late_delivery(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, late=True, delay=0.05)
    checkout = sim.accepted(phone)["CheckoutRequestID"]
    sim.wait_answered(checkout)
    assert sim.query(checkout).json()["ResultCode"] == "0"
    assert receiver.for_checkout(checkout) == []
    receiver.wait_for(1, checkout_id=checkout)


def test_scripted_bodies(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, body=["empty", "malformed", "normal"])
    checkout = sim.accepted(phone)["CheckoutRequestID"]
    empty, malformed, normal = receiver.wait_for(3)
    assert empty.raw == b"{}"
    with pytest.raises(ValueError):
        malformed.json()
    assert normal.json()["Body"]["stkCallback"]["CheckoutRequestID"] == checkout
    kinds = [a["kind"] for a in sim.record(checkout)["callbacks"]]
    assert kinds == ["empty", "malformed", "normal"]


def test_scripted_empty_body_for_every_delivery(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, body="empty", deliveries=2)
    sim.accepted(phone)
    assert [r.raw for r in receiver.wait_for(2)] == [b"{}", b"{}"]


def test_scripted_concurrent_delivery(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, concurrent=True, deliveries=3)
    checkout = sim.accepted(phone)["CheckoutRequestID"]
    received = receiver.wait_for(3, checkout_id=checkout)
    assert max(r.at for r in received) - min(r.at for r in received) < 0.05
    # "concurrent" alone means two simultaneous POSTs
    phone = fresh_phone()
    created = sim.script(phone=phone, concurrent=True).json()
    assert created["script"]["deliveries"] == 2


def test_scripted_delay(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, delay=0.3)
    started = time.time()
    checkout = sim.accepted(phone)["CheckoutRequestID"]
    (received,) = receiver.wait_for(1, checkout_id=checkout)
    assert received.at - started >= 0.28


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"phone": "12345"}, "phone"),
        ({"result_code": "0"}, "phone"),
        ({"phone": "254722000111", "deliverys": 2}, "unknown keys: deliverys"),
        ({"phone": "254722000111", "result_code": "E9999"}, "result_desc is required"),
        ({"phone": "254722000111", "body": "weird"}, "body"),
        ({"phone": "254722000111", "deliveries": 0}, "deliveries"),
        ({"phone": "254722000111", "count": "2"}, "count"),
        ({"phone": "254722000111", "delay": -1}, "delay"),
        ({"phone": "254722000111", "late": "yes"}, "late"),
        ({"phone": "254722000111", "balance_form": "none"}, "balance_form"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_scripts_are_refused(sim, payload, fragment):
    response = sim.http.post("/simulator/scripts", json=payload)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_unknown_code_with_description(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, result_code="E3008", result_desc="Error, bad debt contract.")
    checkout = sim.accepted(phone)["CheckoutRequestID"]
    (received,) = receiver.wait_for(1, checkout_id=checkout)
    assert received.json()["Body"]["stkCallback"]["ResultCode"] == "E3008"


def test_list_and_clear_scripts(sim):
    sim.script(phone="254722000111", count=2)
    sim.script(phone="254722000222")
    listed = sim.http.get("/simulator/scripts").json()["scripts"]
    assert {p: len(v) for p, v in listed.items()} == {"254722000111": 2, "254722000222": 1}
    removed = sim.http.delete("/simulator/scripts", params={"phone": "254722000111"}).json()
    assert removed == {"removed": 2}
    assert sim.http.delete("/simulator/scripts").json() == {"removed": 1}
    assert sim.http.get("/simulator/scripts").json() == {"scripts": {}}


def test_reset_clears_state_and_cancels_pending_callbacks(sim, receiver):
    phone = fresh_phone()
    sim.script(phone=phone, delay=0.2)
    sim.script(phone=fresh_phone())
    sim.accepted(phone)
    reset = sim.http.post("/simulator/reset", json={}).json()
    assert reset["transactions_removed"] == 1 and reset["seed"] == 1234
    assert sim.http.get("/simulator/transactions").json()["count"] == 0
    assert sim.http.get("/simulator/scripts").json() == {"scripts": {}}
    time.sleep(0.3)
    assert receiver.received == []  # the pending callback was cancelled
    assert sim.push(phone).status_code == 200  # the lock went with it
    assert sim.push().status_code == 200  # tokens survive a plain reset
    sim.http.post("/simulator/reset", json={"tokens": True})
    assert sim.push().json()["errorCode"] == "404.001.03"


def test_records(sim, receiver):
    phone = fresh_phone()
    accepted = sim.accepted(phone, Amount="25", AccountReference="ACC-9")
    checkout = accepted["CheckoutRequestID"]
    receiver.wait_for(1, checkout_id=checkout)
    sim.wait_callbacks(checkout, 1)
    listing = sim.http.get("/simulator/transactions").json()
    assert listing["seed"] == 1234 and listing["count"] == 1
    assert listing["chaos"] == {"rate": 0.0, "seed": 1234}
    record = listing["transactions"][0]
    assert record == sim.record(checkout)
    assert record["merchant_request_id"] == accepted["MerchantRequestID"]
    assert record["request"]["Amount"] == "25"  # the request exactly as sent
    assert (record["phone"], record["amount"], record["account_reference"]) == (phone, 25, "ACC-9")
    assert record["status"] == "completed" and record["result_code"] == "0"
    assert record["scenario"] == "success" and record["source"] == "default"
    for key in ("accepted_at", "answer_at", "callback_due_at"):
        assert record[key].endswith("+03:00")
    (attempt,) = record["callbacks"]
    assert json.loads(attempt["body"])["Body"]["stkCallback"]["CheckoutRequestID"] == checkout
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["started_at"] <= attempt["finished_at"]
    other = sim.accepted()
    assert sim.http.get("/simulator/transactions", params={"phone": phone}).json()["count"] == 1
    assert other["CheckoutRequestID"] != checkout
    missing = sim.http.get("/simulator/transactions/ws_CO_nope")
    assert missing.status_code == 404


def test_health_and_unknown_endpoints(sim):
    health = sim.http.get("/simulator/health").json()
    assert health["status"] == "ok" and health["seed"] == 1234
    assert sim.http.get("/simulator/nothing").status_code == 404
    wrong = sim.http.get("/simulator/reset")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    bad_json = sim.http.post(
        "/simulator/scripts", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400


def test_cli_script_payload():
    args = build_parser().parse_args(
        [
            "script",
            "--phone",
            "254711000123",
            "--result-code",
            "1032",
            "--delay",
            "0.5",
            "--deliveries",
            "3",
            "--late",
            "--body",
            "empty",
            "--body",
            "normal",
            "--count",
            "2",
        ]
    )
    assert script_payload(args) == {
        "phone": "254711000123",
        "result_code": "1032",
        "delay": 0.5,
        "deliveries": 3,
        "late": True,
        "body": ["empty", "normal"],
        "count": 2,
    }


def test_cli_talks_to_a_running_simulator(sim, capsys):
    code = main(["script", "--url", sim.url, "--phone", "254722000333", "--no-deliver"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["script"]["deliver"] is False
    assert main(["chaos", "--url", sim.url, "--rate", "0.5", "--seed", "9"]) == 0
    assert json.loads(capsys.readouterr().out) == {"rate": 0.5, "seed": 9}
    assert main(["expire-tokens", "--url", sim.url]) == 0
    assert main(["reset", "--url", sim.url]) == 0
    assert main(["transactions", "--url", sim.url]) == 0
    capsys.readouterr()
    assert main(["script", "--url", sim.url, "--phone", "bad"]) == 1
    assert main(["reset", "--url", "http://127.0.0.1:9"]) == 2


def test_python_dash_m_simulator_prints_its_seed_and_stops_on_sigterm():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SIMULATOR_CALLBACK_DELAY": "0.05"}
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", "--seed", "7", "--chaos-rate", "0.1"],
        cwd=root,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        seed_line = process.stderr.readline()
        url = re.search(r"on (http://\S+)", banner).group(1)
        assert "seed=7" in seed_line and "--seed 7" in seed_line
        health = httpx.get(url + "/simulator/health", trust_env=False).json()
        assert health["seed"] == 7 and health["chaos"]["rate"] == 0.1
        assert health["callback_delay"] == 0.05
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
