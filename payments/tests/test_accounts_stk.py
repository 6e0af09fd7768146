"""STK Push from a chosen account (its own Daraja app, passkey, kind and till number), STK
Query and verify-by-query with the payment's account, the MPESA_* settings as the default
account, and API keys limited to accounts."""

import base64
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from callbacks.models import CallbackState, InboundCallback
from core.services import api_client_create
from payments.accounts import account_create, account_set_credentials, key_limit
from payments.c2b import payment_receive
from payments.models import Channel, MpesaAccount, Payment, PaymentStatus
from payments.services import payment_query
from testsupport import c2b_body, stk_accepted, stk_success_body
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db

PUSH = "/mpesa/stkpush/v1/processrequest"
QUERY = "/mpesa/stkpushquery/v1/query"


def _push(api, **extra):
    body = {
        "phone_number": "0712345678",
        "amount": 100,
        "account_reference": "INV-1",
        "description": "Order",
        **extra,
    }
    return api.post("/payments/stk-push/", body, format="json")


def _own_app(account, prefix="shop", passkey="shop-passkey"):
    account_set_credentials(
        account,
        consumer_key=f"{prefix}-key",
        consumer_secret=f"{prefix}-secret",
        passkey=passkey,
    )


def _as_key(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _sent(route):
    return json.loads(route.calls.last.request.content)


def _basic(key, secret):
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def test_a_push_without_a_shortcode_goes_from_the_settings_account(api, daraja, settings):
    route = daraja.post(PUSH).respond(200, json=stk_accepted())
    response = _push(api)
    assert response.status_code == 201, response.content
    payment = Payment.objects.get(pk=response.json()["id"])
    default = MpesaAccount.objects.get(shortcode=settings.MPESA_SHORTCODE)
    assert payment.account == default and default.client is None
    sent = _sent(route)
    assert sent["BusinessShortCode"] == settings.MPESA_SHORTCODE
    assert sent["PartyB"] == settings.MPESA_SHORTCODE
    assert sent["TransactionType"] == "CustomerPayBillOnline"
    expected = base64.b64encode(
        f"{settings.MPESA_SHORTCODE}{settings.MPESA_PASSKEY}{sent['Timestamp']}".encode()
    ).decode()
    assert sent["Password"] == expected
    # The default account is made once.
    route.respond(200, json=stk_accepted("ws_CO_SECOND"))
    assert _push(api).status_code == 201
    assert MpesaAccount.objects.filter(shortcode=settings.MPESA_SHORTCODE).count() == 1


def test_a_settings_till_becomes_a_till_account(api, daraja, settings):
    settings.MPESA_TRANSACTION_TYPE = "till"
    settings.MPESA_TILL_NUMBER = "5123456"
    route = daraja.post(PUSH).respond(200, json=stk_accepted())
    assert _push(api).status_code == 201
    sent = _sent(route)
    assert (sent["TransactionType"], sent["PartyB"]) == ("CustomerBuyGoodsOnline", "5123456")
    account = MpesaAccount.objects.get(shortcode=settings.MPESA_SHORTCODE)
    assert (account.kind, account.till_number) == ("till", "5123456")


def test_a_push_from_an_account_uses_its_own_app_passkey_and_till(api, api_key, daraja, settings):
    account, _ = account_create(
        name="Shop till",
        shortcode="600100",
        kind="till",
        till_number="5200200",
        client=api_key.client,
    )
    _own_app(account)
    oauth = daraja.get("/oauth/v1/generate").respond(
        200, json={"access_token": "shop-token", "expires_in": "3599"}
    )
    route = daraja.post(PUSH).respond(200, json=stk_accepted("ws_CO_SHOP"))
    response = _push(api, shortcode="600100")
    assert response.status_code == 201, response.content
    payment = Payment.objects.get(pk=response.json()["id"])
    assert payment.account == account and payment.transaction_type == "CustomerBuyGoodsOnline"
    sent = _sent(route)
    assert sent["BusinessShortCode"] == "600100" and sent["PartyB"] == "5200200"
    assert sent["TransactionType"] == "CustomerBuyGoodsOnline"
    password = base64.b64encode(f"600100shop-passkey{sent['Timestamp']}".encode()).decode()
    assert sent["Password"] == password
    assert oauth.calls.last.request.headers["Authorization"] == _basic("shop-key", "shop-secret")
    assert route.calls.last.request.headers["Authorization"] == "Bearer shop-token"

    # STK Query about that payment asks with the same account.
    query = daraja.post(QUERY).respond(
        200, json={"ResponseCode": "0", "ResultCode": "1032", "ResultDesc": "Cancelled by user"}
    )
    assert payment_query(payment_id=payment.pk).outcome == "failed"
    asked = _sent(query)
    assert asked["BusinessShortCode"] == "600100"
    assert (
        asked["Password"]
        == base64.b64encode(f"600100shop-passkey{asked['Timestamp']}".encode()).decode()
    )
    assert query.calls.last.request.headers["Authorization"] == "Bearer shop-token"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED and payment.result_code == "1032"


def test_verify_by_query_asks_with_the_payments_account(
    daraja, settings, django_capture_on_commit_callbacks, client
):
    settings.MPESA_VERIFY_SUCCESS = "always"
    account, _ = account_create(name="Shop", shortcode="600100")
    _own_app(account)
    daraja.get("/oauth/v1/generate").respond(
        200, json={"access_token": "shop-token", "expires_in": "3599"}
    )
    payment, token = PaymentFactory.with_token(
        account=account, checkout_request_id="ws_CO_ACC", amount="100.00"
    )
    query = daraja.post(QUERY).respond(
        200, json={"ResponseCode": "0", "ResultCode": "0", "ResultDesc": "processed"}
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/payments/callback/{token}/",
            data=stk_success_body(checkout_request_id="ws_CO_ACC", amount=100),
            content_type="application/json",
        )
    assert response.status_code == 200
    assert _sent(query)["BusinessShortCode"] == "600100"
    assert query.calls.last.request.headers["Authorization"] == "Bearer shop-token"
    callback = InboundCallback.objects.get(payment=payment)
    assert callback.state == CallbackState.PROCESSED and callback.verified_at is not None
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


@pytest.mark.parametrize(
    ("setup", "shortcode", "message"),
    [
        ("other_client", "600200", "has no M-Pesa account with shortcode 600200"),
        ("none", "600300", "has no M-Pesa account with shortcode 600300"),
        ("disabled", "600100", "600100 is disabled"),
        ("no_passkey", "600100", "mpesa_account credentials 600100 --from-env"),
    ],
)
def test_a_push_from_an_account_it_may_not_use_is_refused_before_daraja(
    api, api_key, daraja, setup, shortcode, message
):
    route = daraja.post(PUSH).respond(200, json=stk_accepted())
    if setup == "other_client":
        other = api_client_create(name="other").client
        account, _ = account_create(name="Theirs", shortcode="600200", client=other)
        _own_app(account)
    elif setup in ("disabled", "no_passkey"):
        account, _ = account_create(name="Mine", shortcode="600100", client=api_key.client)
        if setup == "disabled":
            _own_app(account)
            MpesaAccount.objects.filter(pk=account.pk).update(enabled=False)
    response = _push(api, shortcode=shortcode)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "account_refused" and message in error["message"]
    assert "shortcode" in error["fields"]
    assert not route.called and not Payment.objects.exists()


def test_a_malformed_shortcode_is_a_field_error(api, daraja):
    response = _push(api, shortcode="12ab")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["shortcode"] == "shortcode must be 5 to 8 digits."


def test_a_key_limited_to_accounts_pushes_and_sees_only_those(api_key, daraja, settings):
    owner = api_key.client
    first, _ = account_create(name="First", shortcode="600100", client=owner)
    second, _ = account_create(name="Second", shortcode="600200", client=owner)
    _own_app(first, "first", "first-passkey")
    _own_app(second, "second", "second-passkey")
    route = daraja.post(PUSH).respond(200, json=stk_accepted("ws_CO_ONE"))
    main = _as_key(api_key.key)
    limited_key = api_client_create(name="till-1 only", acts_for=owner)
    key_limit(key=limited_key.client, shortcodes=["600100"])
    limited = _as_key(limited_key.key)

    # Without a shortcode, the one account it is limited to.
    response = limited.post(
        "/payments/stk-push/",
        {"phone_number": "0712345678", "amount": 5, "account_reference": "A", "description": "B"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert _sent(route)["BusinessShortCode"] == "600100"
    mine = response.json()["id"]
    # Another of its client's accounts, and the default account, are refused.
    for shortcode in ("600200", settings.MPESA_SHORTCODE):
        refused = _push(limited, shortcode=shortcode)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "account_refused"
    # The main key pushes from the second account; the limited key does not see that payment.
    route.respond(200, json=stk_accepted("ws_CO_TWO"))
    theirs = _push(main, shortcode="600200").json()["id"]
    listed = [p["id"] for p in limited.get("/payments/").json()["results"]]
    assert listed == [mine]
    assert limited.get(f"/payments/{theirs}/").status_code == 404
    assert {p["id"] for p in main.get("/payments/").json()["results"]} == {mine, theirs}
    # Its accounts and their references: the one it is limited to.
    assert [a["shortcode"] for a in limited.get("/payments/accounts/").json()] == ["600100"]
    assert limited.get("/payments/accounts/600200/references/").status_code == 404
    assert limited.get("/payments/accounts/600100/references/").status_code == 200

    # Limited to two accounts, neither the default: a push must name one.
    key_limit(key=limited_key.client, shortcodes=["600100", "600200"])
    refused = _push(limited)
    assert refused.status_code == 400
    assert "limited to the accounts 600100, 600200" in refused.json()["error"]["message"]
    # Lifting the limit: back to its client's accounts and the default account.
    key_limit(key=limited_key.client, shortcodes=[])
    route.respond(200, json=stk_accepted("ws_CO_THREE"))
    assert _push(limited).status_code == 201


def test_a_key_is_limited_by_a_command(api_key, capsys):
    account_create(name="First", shortcode="600100", client=api_key.client)
    other = api_client_create(name="other").client
    account_create(name="Theirs", shortcode="600200", client=other)
    prefix = api_key.client.key_prefix
    call_command("mpesa_account", "limit-key", prefix, "600100")
    assert "600100" in capsys.readouterr().out
    assert list(
        MpesaAccount.objects.filter(limited_keys=api_key.client).values_list("shortcode", flat=True)
    ) == ["600100"]
    with pytest.raises(CommandError, match="no account 600200"):
        call_command("mpesa_account", "limit-key", prefix, "600200")
    with pytest.raises(CommandError, match="No API key"):
        call_command("mpesa_account", "limit-key", "nosuchkey", "600100")
    call_command("mpesa_account", "limit-key", prefix, "--clear")
    assert "any of its client's accounts" in capsys.readouterr().out
    assert not MpesaAccount.objects.filter(limited_keys=api_key.client).exists()


def test_a_confirmation_credits_the_push_from_its_own_account(api_key):
    """Double notification on an account that is not the settings': the confirmation arrives
    through that account's URL and credits the push made from it."""
    account, _ = account_create(name="Shop", shortcode="600100", client=api_key.client)
    payment = PaymentFactory(
        client=api_key.client, account=account, amount="250.00", account_reference="INV-9"
    )
    notification_body = c2b_body(
        trans_id="UKR9ACCOUNT",
        amount="250.00",
        shortcode="600100",
        bill_ref="INV-9",
        msisdn="254712345678",
    )
    from daraja.c2b import parse_c2b_notification

    received = payment_receive(
        account=account, notification=parse_c2b_notification(notification_body)
    )
    assert received.payment.pk == payment.pk
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS and payment.channel == Channel.STK
    assert payment.mpesa_receipt_number == "UKR9ACCOUNT"
    assert Payment.objects.count() == 1


def test_a_second_keys_cursor_names_its_clients_payments(api_key):
    """A second key (create_api_key --for) pages through its client's payments by cursor."""
    first = PaymentFactory(client=api_key.client)
    second = PaymentFactory(client=api_key.client)
    other = _as_key(api_client_create(name="second", acts_for=api_key.client).key)
    response = other.get(f"/payments/?starting_after={second.pk}")
    assert response.status_code == 200, response.content
    assert [p["id"] for p in response.json()["results"]] == [str(first.pk)]
