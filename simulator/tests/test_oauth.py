"""OAuth: Basic credentials, grant type, token lifetime and the business-API auth errors."""

from __future__ import annotations

import base64
import re
import time

REQUEST_ID = re.compile(r"^\d{4,5}-\d{7,8}-1$")


def _error(response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert (body["errorCode"], body["errorMessage"]) == (code, message)
    assert REQUEST_ID.match(body["requestId"]), body["requestId"]


def test_good_credentials_issue_token_with_string_expiry(sim):
    response = sim.get_token()
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in"}
    assert re.fullmatch(r"[A-Za-z0-9]{28}", body["access_token"])
    assert body["expires_in"] == "3599"  # a string, as in real captures


def test_expires_in_follows_configured_ttl(make_sim):
    sim = make_sim(token_ttl=120)
    assert sim.get_token().json()["expires_in"] == "120"


def test_missing_or_non_basic_header_is_invalid_authentication(sim):
    url = "/oauth/v1/generate?grant_type=client_credentials"
    _error(sim.http.get(url), 400, "400.008.01", "Invalid Authentication passed")
    bearer = {"Authorization": "Bearer abc"}
    _error(sim.http.get(url, headers=bearer), 400, "400.008.01", "Invalid Authentication passed")
    garbage = {"Authorization": "Basic %%%not-base64"}
    _error(sim.http.get(url, headers=garbage), 400, "400.008.01", "Invalid Authentication passed")


def test_wrong_grant_type(sim):
    auth = (sim.config.consumer_key, sim.config.consumer_secret)
    for params in ({"grant_type": "password"}, {}):
        response = sim.http.get("/oauth/v1/generate", params=params, auth=auth)
        _error(response, 400, "400.008.02", "Invalid grant type passed")


def test_wrong_credentials_answer_400_with_empty_body(sim):
    for key, secret in (("wrong", sim.config.consumer_secret), (sim.config.consumer_key, "x")):
        response = sim.http.get(
            "/oauth/v1/generate", params={"grant_type": "client_credentials"}, auth=(key, secret)
        )
        assert response.status_code == 400
        assert response.content == b""
    no_colon = {"Authorization": "Basic " + base64.b64encode(b"justakey").decode()}
    response = sim.http.get("/oauth/v1/generate?grant_type=client_credentials", headers=no_colon)
    assert (response.status_code, response.content) == (400, b"")


def test_configured_credentials_are_used(make_sim):
    sim = make_sim(consumer_key="k1", consumer_secret="s1")
    ok = sim.http.get(
        "/oauth/v1/generate", params={"grant_type": "client_credentials"}, auth=("k1", "s1")
    )
    assert ok.status_code == 200


def test_expired_token_is_invalid_access_token(make_sim):
    # Long enough that the first push is inside it on a busy machine; the token was issued
    # before that push, so a full lifetime after it has certainly passed its expiry.
    sim = make_sim(token_ttl=2.0)
    assert sim.push().status_code == 200
    time.sleep(2.0)
    _error(sim.push(), 404, "404.001.03", "Invalid Access Token")
    sim._token = None  # a fresh token works again
    assert sim.push().status_code == 200


def test_unknown_token_is_invalid_access_token(sim):
    response = sim.http.post(
        "/mpesa/stkpush/v1/processrequest",
        json=sim.push_body(),
        headers={"Authorization": "Bearer not-a-real-token"},
    )
    _error(response, 404, "404.001.03", "Invalid Access Token")


def test_missing_or_non_bearer_header_is_invalid_authentication_header(sim):
    path = "/mpesa/stkpush/v1/processrequest"
    _error(
        sim.http.post(path, json=sim.push_body()),
        404,
        "404.001.04",
        "Invalid Authentication Header",
    )
    for header in ("Basic abc", "Bearer", "Token abc"):
        response = sim.http.post(path, json=sim.push_body(), headers={"Authorization": header})
        _error(response, 404, "404.001.04", "Invalid Authentication Header")


def test_token_expiry_in_the_middle_of_a_run(sim):
    assert sim.push().status_code == 200
    assert sim.http.post("/simulator/tokens/expire", json={}).json() == {"expired": 1}
    _error(sim.push(), 404, "404.001.03", "Invalid Access Token")
    _error(sim.query("ws_CO_x"), 404, "404.001.03", "Invalid Access Token")
    sim._token = None
    assert sim.push().status_code == 200


def test_method_not_allowed_and_unknown_paths(sim):
    auth = {"Authorization": f"Bearer {sim.token}"}
    for path in ("/mpesa/stkpush/v1/processrequest", "/mpesa/stkpushquery/v1/query"):
        _error(sim.http.get(path, headers=auth), 405, "405.001", "Method Not Allowed")
        _error(sim.http.put(path, headers=auth), 405, "405.001", "Method Not Allowed")
    _error(sim.http.post("/oauth/v1/generate"), 405, "405.001", "Method Not Allowed")
    _error(
        sim.http.post("/mpesa/nothing/v1/here", headers=auth),
        404,
        "404.001.01",
        "Resource not found",
    )
    _error(sim.http.get("/"), 404, "404.001.01", "Resource not found")
