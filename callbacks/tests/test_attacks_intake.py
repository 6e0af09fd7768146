"""Attacks on the callback intake itself: getting past the source allowlist, filling the
database through the callback URL. Each case ends by checking what was (not) stored."""

import pytest
from django.test import Client

from callbacks.models import CallbackState, InboundCallback
from payments.models import PaymentEvent, PaymentStatus
from testsupport import stk_success_body
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db
SAFARICOM_IP = "196.201.214.200"
ATTACKER_IP = "203.0.113.9"


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    def _post(path, body, content_type="application/json", **extra):
        with django_capture_on_commit_callbacks(execute=True):
            response = Client().post(path, data=body, content_type=content_type, **extra)
        return response, InboundCallback.objects.order_by("-id").first()

    return _post


# --- 4: the allowlist bypassed by connecting straight to gunicorn ----------------------------


@pytest.mark.parametrize("proxies", [["127.0.0.1"], []])
def test_a_direct_connection_cannot_claim_a_safaricom_address(post, settings, proxies):
    """The proxy is on loopback; the attacker reaches gunicorn's port from outside and sends
    the X-Forwarded-For a proxy would have written. Old settings (TRUSTED_PROXY_COUNT=1)
    believed it from any peer."""
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = proxies
    settings.TRUSTED_PROXY_COUNT = 1
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=SAFARICOM_IP,
        REMOTE_ADDR=ATTACKER_IP,
    )
    assert response.status_code == 403
    assert callback.state == CallbackState.REJECTED and callback.source_ip == ATTACKER_IP
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


def test_the_same_header_through_the_trusted_proxy_is_believed(post, settings):
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.TRUSTED_PROXY_COUNT = 0
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=SAFARICOM_IP,
        REMOTE_ADDR="127.0.0.1",
    )
    assert response.status_code == 200 and callback.source_ip == SAFARICOM_IP
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(post, settings):
    """CDN -> load balancer -> nginx: every hop a trusted proxy; an address the client wrote
    at the left is never reached."""
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    settings.TRUSTED_PROXY_COUNT = 0
    _, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=f"{SAFARICOM_IP}, {ATTACKER_IP}, 10.1.2.3, 10.0.0.7",
        REMOTE_ADDR="127.0.0.1",
    )
    assert response.status_code == 403 and callback.source_ip == ATTACKER_IP


def test_behind_a_proxy_on_a_unix_socket_the_header_is_believed_when_configured(post, settings):
    """nginx -> gunicorn over a Unix socket: the peer has no address (REMOTE_ADDR is empty),
    and only a process on this host can connect. TRUSTED_PROXY_COUNT=1 used to read the header
    there; TRUSTED_PROXIES takes `unix` for it. Without it the client is unknown and, with the
    allowlist enforced, every genuine callback was refused."""
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = ["unix"]
    settings.TRUSTED_PROXY_COUNT = 0
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=f"{ATTACKER_IP}, {SAFARICOM_IP}",
        REMOTE_ADDR="",
    )
    assert response.status_code == 200 and callback.source_ip == SAFARICOM_IP
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS

    # A peer with an address is not the Unix socket: its header proves nothing.
    _, token = PaymentFactory.with_token(amount="1000.00", checkout_request_id="ws_CO_OTHER")
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_OTHER", amount=1000),
        HTTP_X_FORWARDED_FOR=SAFARICOM_IP,
        REMOTE_ADDR=ATTACKER_IP,
    )
    assert response.status_code == 403 and callback.source_ip == ATTACKER_IP


# --- 5: filling the database through the callback URL -----------------------------------------

JUNK = 64 * 1024
# The limit's window, in seconds: windows are aligned to multiples of it, so with a minute a
# flood could straddle two of them and store twice the limit; this one never ends in a test.
WINDOW = 10**9


@pytest.fixture
def fresh_limits():
    """This test's refused-callback counts start at zero and do not leak into other tests."""
    from callbacks.limits import limits_reset

    limits_reset()
    yield
    limits_reset()


def _flood(client, path, count, **extra):
    statuses = set()
    for n in range(count):
        body = (b'{"junk": "%d' % n).ljust(JUNK - 2, b"x") + b'"}'
        response = client.post(path, data=body, content_type="application/json", **extra)
        statuses.add(response.status_code)
    return statuses


def test_a_flood_of_junk_to_a_guessed_token_stores_a_bounded_prefix(settings, fresh_limits):
    settings.CALLBACK_REFUSED_RATE = (30, WINDOW)
    settings.CALLBACK_REFUSED_BODY_PREFIX_BYTES = 1024
    client = Client()

    assert _flood(client, f"/payments/callback/{'G' * 43}/", 200) == {200}

    stored = list(InboundCallback.objects.order_by("id"))
    assert len(stored) == 30
    assert all(c.state == CallbackState.REJECTED for c in stored)
    assert all(len(bytes(c.body)) == 1024 and not c.body_complete for c in stored)
    assert all(c.body_size == JUNK and len(c.dedupe_key) == 64 for c in stored)
    assert sum(len(bytes(c.body)) for c in stored) <= 30 * 1024  # not 200 x 64 KB
    assert stored[-1].refused_unstored == 170  # the rest are counted, not lost silently


def test_oversized_and_outsider_floods_are_limited_too(settings, fresh_limits):
    settings.CALLBACK_REFUSED_RATE = (5, WINDOW)
    settings.CALLBACK_MAX_BODY_BYTES = 4096
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    client = Client()
    assert _flood(client, f"/payments/callback/{'G' * 43}/", 20) == {413}
    assert _flood(client, f"/payments/callback/{'H' * 43}/", 20, REMOTE_ADDR=ATTACKER_IP) == {413}
    assert InboundCallback.objects.count() == 10


def test_a_callback_with_a_payments_token_is_never_limited_and_stored_whole(
    post, settings, fresh_limits
):
    settings.CALLBACK_REFUSED_RATE = (3, WINDOW)
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    client = Client()
    _flood(client, f"/payments/callback/{'G' * 43}/", 10)  # the source's limit is spent
    body = stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000) + b" " * 5000

    response, callback = post(f"/payments/callback/{token}/", body)

    assert response.status_code == 200
    assert bytes(callback.body) == body and callback.body_complete
    assert callback.state == CallbackState.PROCESSED
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


def test_a_genuine_callback_from_an_unknown_address_is_refused_but_kept_whole(
    post, settings, fresh_limits
):
    """Safaricom adds an address before the allowlist knows it: 403 as configured, but the
    body is kept whole and linked to its payment (never purged, never limited)."""
    settings.CALLBACK_REFUSED_RATE = (0, WINDOW)
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    body = stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000) + b" " * 3000

    response, callback = post(f"/payments/callback/{token}/", body, REMOTE_ADDR=ATTACKER_IP)

    assert response.status_code == 403
    assert callback.state == CallbackState.REJECTED and callback.payment_id == payment.pk
    assert bytes(callback.body) == body and callback.body_complete


def test_the_limit_holds_with_the_cache_down(settings, fresh_limits):
    """Redis unreachable: refused callbacks are still answered and limited (per process)."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
    settings.CALLBACK_REFUSED_RATE = (4, WINDOW)

    assert _flood(Client(), f"/payments/callback/{'G' * 43}/", 12) == {200}

    stored = list(InboundCallback.objects.order_by("id"))
    assert len(stored) == 4 and stored[-1].refused_unstored == 8


def test_one_ipv6_subscriber_is_one_source(settings, fresh_limits):
    """Addresses of one /64 cost an attacker nothing: they share one limit."""
    settings.CALLBACK_REFUSED_RATE = (3, WINDOW)
    client = Client()
    for n in range(1, 10):
        _flood(client, f"/payments/callback/{'G' * 43}/", 1, REMOTE_ADDR=f"2001:db8::{n:x}")
    assert InboundCallback.objects.count() == 3


def test_the_retention_policy_purges_only_bodies_that_concern_no_payment(post, settings):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    settings.MPESA_CALLBACK_IP_MODE = "off"
    _, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    _, refused = post(f"/payments/callback/{'G' * 43}/", b"junk" * 100)
    _, recent = post(f"/payments/callback/{'K' * 43}/", b"junk" * 100)
    # A forged success aimed at the victim: flagged on it, so evidence about a payment.
    _, forged = post(
        f"/payments/callback/{'F' * 43}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
    )
    assert PaymentEvent.objects.filter(callback_id=forged.pk).exists()
    _, invalid = post(f"/payments/callback/{token}/", b"{not json")  # linked: kept
    _, processed = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
    )
    assert (invalid.state, processed.state) == (CallbackState.INVALID, CallbackState.PROCESSED)
    old = timezone.now() - timedelta(days=settings.CALLBACK_BODY_RETENTION_DAYS + 1)
    InboundCallback.objects.exclude(pk=recent.pk).update(received_at=old)
    bodies = {c.pk: bytes(c.body) for c in InboundCallback.objects.all()}

    call_command("purge_callback_bodies")

    after = {c.pk: c for c in InboundCallback.objects.all()}
    assert bytes(after[refused.pk].body) == b"" and after[refused.pk].body_purged_at
    assert after[refused.pk].dedupe_key == refused.dedupe_key  # the hash stays
    for kept in (recent, invalid, processed, forged):
        assert bytes(after[kept.pk].body) == bodies[kept.pk] and not after[kept.pk].body_purged_at


def test_daraja_callbacks_with_no_payment_are_kept_whole_unlimited_and_never_purged(
    post, settings, fresh_limits
):
    """A genuine callback whose token no payment has (the database restored from a backup
    older than the payment, a callback URL of another environment): Daraja answered 200 will
    not send it again, so it is the only copy we get of a customer's payment. An address on
    the allowlist is Daraja's, which no flood can come from: none of these is limited, cut to
    a prefix or purged; junk from elsewhere still is."""
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    settings.CALLBACK_REFUSED_RATE = (2, WINDOW)
    settings.CALLBACK_REFUSED_BODY_PREFIX_BYTES = 64
    settings.MPESA_CALLBACK_IP_MODE = "flag"
    sent = []
    for n in range(5):
        body = stk_success_body(checkout_request_id=f"ws_CO_LOST{n}", amount=1000)
        response, _ = post(
            f"/payments/callback/{chr(ord('a') + n) * 43}/", body, REMOTE_ADDR=SAFARICOM_IP
        )
        assert response.status_code == 200
        sent.append(body)
    _flood(Client(), f"/payments/callback/{'G' * 43}/", 5, REMOTE_ADDR=ATTACKER_IP)

    daraja = list(InboundCallback.objects.filter(source_ip=SAFARICOM_IP).order_by("id"))
    assert [bytes(c.body) for c in daraja] == sent
    assert all(c.body_complete and c.state == CallbackState.REJECTED for c in daraja)
    assert InboundCallback.objects.filter(source_ip=ATTACKER_IP).count() == 2  # still limited

    old = timezone.now() - timedelta(days=settings.CALLBACK_BODY_RETENTION_DAYS + 1)
    InboundCallback.objects.update(received_at=old)
    call_command("purge_callback_bodies")

    assert [
        bytes(c.body) for c in InboundCallback.objects.filter(source_ip=SAFARICOM_IP).order_by("id")
    ] == sent
    attacker = InboundCallback.objects.filter(source_ip=ATTACKER_IP)
    assert all(bytes(c.body) == b"" and c.body_purged_at for c in attacker)


def test_refused_callbacks_stored_before_they_were_linked_keep_their_body_if_a_payment_has_the_token(
    settings,
):
    """Before refused callbacks were linked to their payment, the intake stored a genuine
    callback from an address the enforced allowlist did not know yet (or an oversized one) as
    `rejected` with the token's hash and no payment. The data migration linked only invalid
    ones, so the retention policy would purge these: the path's token still names a payment."""
    import hashlib
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from core.models import hash_secret

    _, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    body = stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000)
    old = timezone.now() - timedelta(days=settings.CALLBACK_BODY_RETENTION_DAYS + 1)
    legacy = InboundCallback.objects.create(
        body=body,
        token_hash=hash_secret(token),
        dedupe_key=hashlib.sha256(body).hexdigest(),
        source_ip=ATTACKER_IP,
        source_flagged=True,
        state=CallbackState.REJECTED,
        last_error=f"source address {ATTACKER_IP} is not on the callback allowlist",
    )
    junk = InboundCallback.objects.create(
        body=b"junk",
        token_hash=hash_secret("G" * 43),
        dedupe_key=hashlib.sha256(b"junk").hexdigest(),
        source_ip=ATTACKER_IP,
        state=CallbackState.REJECTED,
        last_error="unknown callback token",
    )
    InboundCallback.objects.update(received_at=old)

    call_command("purge_callback_bodies")

    legacy.refresh_from_db()
    junk.refresh_from_db()
    assert bytes(legacy.body) == body and legacy.body_purged_at is None
    assert bytes(junk.body) == b"" and junk.body_purged_at is not None
