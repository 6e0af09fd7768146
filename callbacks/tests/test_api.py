import pytest

from callbacks.models import CallbackState, InboundCallback

pytestmark = pytest.mark.django_db

ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", "application/json"),
        (b"{}", "application/json"),
        (b"not json at all", "text/plain"),
        (b'{"unexpected": ["shape"]}', "application/json"),
        (b"\xff\xfe\x00binary", "application/octet-stream"),
    ],
)
def test_anything_posted_is_stored_raw_and_acknowledged(client, body, content_type):
    response = client.post("/payments/callback/sometoken/", data=body, content_type=content_type)
    assert response.status_code == 200
    assert response.json() == ACK
    stored = InboundCallback.objects.get()
    assert bytes(stored.body) == body
    if body:  # the test client sends no Content-Type with an empty body
        assert stored.content_type == content_type
    assert stored.source_ip == "127.0.0.1"


def test_the_token_is_stored_only_as_a_hash(client):
    client.post(
        "/payments/callback/secret-token-value/", data=b"{}", content_type="application/json"
    )
    stored = InboundCallback.objects.get()
    assert "secret-token-value" not in str(stored.headers) and stored.token_hash
    assert len(stored.token_hash) == 64


def test_callback_without_token_is_stored_too(client):
    assert (
        client.post("/payments/callback/", data=b"{}", content_type="application/json").status_code
        == 200
    )
    assert InboundCallback.objects.get().token_hash == ""


def test_callbacks_need_no_csrf_token(db):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert (
        strict.post(
            "/payments/callback/t/", data=b"{}", content_type="application/json"
        ).status_code
        == 200
    )


def test_get_is_405(client):
    response = client.get("/payments/callback/t/")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert not InboundCallback.objects.exists()


def test_oversized_body_is_refused_and_recorded(client, settings):
    settings.CALLBACK_MAX_BODY_BYTES = 1024
    response = client.post(
        "/payments/callback/t/", data=b"x" * 5000, content_type="application/json"
    )
    assert response.status_code == 413
    stored = InboundCallback.objects.get()
    assert stored.state == CallbackState.REJECTED and len(bytes(stored.body)) == 1024


def test_authorization_and_cookie_headers_are_not_kept(client):
    client.post(
        "/payments/callback/t/",
        data=b"{}",
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer x",
        HTTP_COOKIE="a=b",
        HTTP_USER_AGENT="Safaricom",
    )
    headers = InboundCallback.objects.get().headers
    assert headers.get("User-Agent") == "Safaricom"
    assert "Authorization" not in headers and "Cookie" not in headers
