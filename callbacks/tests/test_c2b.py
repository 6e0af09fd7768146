"""C2B through the system's public seams: Daraja's requests to the account's URLs, the inbox's
drain, the payments they make, and the events they emit."""

import hashlib
import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from callbacks.models import CallbackKind, CallbackState, InboundCallback
from callbacks.services import callbacks_drain_batch
from events.models import Event
from payments.accounts import account_create, c2b_urls
from payments.models import Channel, KnownReference, MpesaAccount, Payment, PaymentStatus
from testsupport import c2b_body, real_payloads, stk_success_body
from testsupport.factories import ApiClientFactory, PaymentFactory

pytestmark = pytest.mark.django_db

SHORTCODE = "600984"


@pytest.fixture
def merchant():
    return ApiClientFactory()


@pytest.fixture
def account(merchant):
    account, token = account_create(
        name="Shop", shortcode=SHORTCODE, client=merchant, min_amount=Decimal("10")
    )
    account.token = token
    return account


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def validate(client, token: str, body: bytes):
    return client.post(_path(c2b_urls(token).validation), body, content_type="application/json")


def confirm(client, token: str, body: bytes):
    return client.post(_path(c2b_urls(token).confirmation), body, content_type="application/json")


def drain() -> None:
    while callbacks_drain_batch().processed:
        pass


# --- Validation -------------------------------------------------------------------------------


def test_a_valid_request_is_accepted_and_stored_with_its_answer(client, account):
    response = validate(client, account.token, c2b_body(transaction_type="", balance=""))
    assert response.status_code == 200
    assert response.json() == {"ResultCode": "0", "ResultDesc": "Accepted"}
    stored = InboundCallback.objects.get(kind=CallbackKind.C2B_VALIDATION)
    assert bytes(stored.body) == c2b_body(transaction_type="", balance="")
    assert stored.state == CallbackState.PROCESSED
    assert stored.answer == {"ResultCode": "0", "ResultDesc": "Accepted"}
    assert Payment.objects.count() == 0  # validation records no money


@pytest.mark.parametrize(
    ("setup", "body", "code", "why"),
    [
        ({}, {"amount": "5.00"}, "C2B00013", "below 10"),
        ({"max_amount": Decimal("1000")}, {"amount": "1000.01"}, "C2B00013", "above 1000"),
        ({"account_pattern": r"INV-\d{4}"}, {"bill_ref": "inv 12"}, "C2B00012", "pattern"),
        ({"require_known_reference": True}, {"bill_ref": "INV-9999"}, "C2B00012", "not known"),
        ({"require_known_reference": True}, {"amount": "300.00"}, "C2B00013", "expects 250"),
        ({}, {"shortcode": "600985"}, "C2B00015", "not this account's"),
        ({"enabled": False}, {}, "C2B00015", "disabled"),
    ],
)
def test_each_rule_answers_with_its_code(client, account, setup, body, code, why):
    MpesaAccount.objects.filter(pk=account.pk).update(**setup)
    KnownReference.objects.create(account=account, reference=" inv-1001", amount=Decimal("250"))
    response = validate(client, account.token, c2b_body(**body))
    assert response.json() == {"ResultCode": code, "ResultDesc": "Rejected"}
    stored = InboundCallback.objects.get(kind=CallbackKind.C2B_VALIDATION)
    assert stored.state == CallbackState.REJECTED
    assert stored.answer["ResultCode"] == code
    assert why in stored.last_error


def test_a_known_reference_is_matched_whatever_its_case_and_spacing(client, account):
    MpesaAccount.objects.filter(pk=account.pk).update(require_known_reference=True)
    KnownReference.objects.create(account=account, reference="INV-1001")
    response = validate(client, account.token, c2b_body(bill_ref=" inv-1001 "))
    assert response.json()["ResultCode"] == "0"


def test_third_party_trans_id_is_echoed(client, account):
    response = validate(client, account.token, c2b_body(third_party_trans_id="ORDER-77"))
    assert response.json() == {
        "ResultCode": "0",
        "ResultDesc": "Accepted",
        "ThirdPartyTransID": "ORDER-77",
    }


def test_an_unreadable_request_is_answered_other_error_and_kept(client, account):
    response = validate(client, account.token, c2b_body(amount="12,50"))
    assert response.json()["ResultCode"] == "C2B00016"
    stored = InboundCallback.objects.get(kind=CallbackKind.C2B_VALIDATION)
    assert "TransAmount" in stored.last_error
    assert bytes(stored.body) == c2b_body(amount="12,50")


def test_an_unknown_token_is_refused_and_recorded(client, account):
    response = validate(client, "x" * 43, c2b_body())
    assert response.json()["ResultCode"] == "C2B00016"
    stored = InboundCallback.objects.get()
    assert stored.state == CallbackState.REJECTED
    assert "unknown" in stored.last_error


# --- Confirmation -----------------------------------------------------------------------------


def test_a_confirmation_is_answered_at_once_and_makes_a_received_payment(client, account):
    response = confirm(client, account.token, c2b_body(first_name="Wanjiru", last_name="Kamau"))
    assert response.status_code == 200
    assert response.json() == {"ResultCode": 0, "ResultDesc": "Success"}
    assert Payment.objects.count() == 0  # stored first; the workers record the payment
    drain()
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.SUCCESS
    assert payment.channel == Channel.PAYBILL
    assert payment.account == account
    assert payment.client == account.client
    assert payment.amount == payment.paid_amount == Decimal("250.00")
    assert payment.mpesa_receipt_number == "UL5C2B7QXA"
    assert payment.bill_ref_number == "INV-1001"
    assert payment.phone_number == payment.payer_phone == "254712345678"
    assert payment.payer_name == "Wanjiru Kamau"
    stored = InboundCallback.objects.get(kind=CallbackKind.C2B_CONFIRMATION)
    assert stored.state == CallbackState.PROCESSED
    assert stored.payment == payment
    types = sorted(Event.objects.filter(object_id=str(payment.pk)).values_list("type", flat=True))
    assert types == ["payment.received", "payment.succeeded"]
    received = Event.objects.get(type="payment.received")
    assert received.client_id == account.client_id
    assert received.data["channel"] == "paybill"
    assert received.data["mpesa_receipt_number"] == "UL5C2B7QXA"


def test_a_till_payment_with_a_masked_number(client, account):
    confirm(client, account.token, c2b_body(transaction_type="Buy Goods", msisdn="2547 ***** 678"))
    drain()
    payment = Payment.objects.get()
    assert payment.channel == Channel.TILL
    assert payment.phone_number == ""
    assert payment.payer_phone == "2547 ***** 678"


def test_the_same_confirmation_three_times_is_one_payment(client, account):
    for _ in range(3):
        confirm(client, account.token, c2b_body())
    drain()
    assert Payment.objects.count() == 1
    states = list(InboundCallback.objects.order_by("id").values_list("state", flat=True))
    assert states == [CallbackState.PROCESSED, CallbackState.DUPLICATE, CallbackState.DUPLICATE]
    assert Event.objects.filter(type="payment.received").count() == 1


def test_the_same_receipt_for_another_amount_is_kept_for_review(client, account):
    confirm(client, account.token, c2b_body())
    confirm(client, account.token, c2b_body(amount="2500.00"))
    drain()
    payment = Payment.objects.get()
    assert payment.amount == Decimal("250.00")
    assert payment.needs_review
    assert InboundCallback.objects.order_by("id").last().state == CallbackState.REVIEW


def test_an_unreadable_confirmation_is_kept_as_invalid(client, account):
    confirm(client, account.token, b'{"TransID": "UL5C2B7QXA", "TransAmount": "abc"}')
    drain()
    stored = InboundCallback.objects.get()
    assert stored.state == CallbackState.INVALID
    assert "TransAmount" in stored.last_error
    assert Payment.objects.count() == 0


def test_an_unknown_token_makes_no_payment(client, account):
    response = confirm(client, "y" * 43, c2b_body())
    assert response.json() == {"ResultCode": 0, "ResultDesc": "Success"}
    drain()
    assert Payment.objects.count() == 0
    assert InboundCallback.objects.get().state == CallbackState.REJECTED


# --- Double notification: an STK Push paid into a shortcode with C2B URLs ---------------------


@pytest.fixture
def stk_account(merchant, settings):
    account, token = account_create(name="Express", shortcode=settings.MPESA_SHORTCODE)
    account.token = token
    return account


def _stk_payment(merchant, **kwargs):
    return PaymentFactory.with_token(
        client=merchant, amount="250", account_reference="INV-1001", **kwargs
    )


def _stk_callback(client, payment, token, receipt="UL5C2B7QXA"):
    body = stk_success_body(
        checkout_request_id=payment.checkout_request_id, amount="250", receipt=receipt
    )
    client.post(f"/payments/callback/{token}/", body, content_type="application/json")


@pytest.mark.parametrize(
    "msisdn",
    ["254712345678", "2547****5678", hashlib.sha256(b"254712345678").hexdigest(), ""],
)
def test_confirmation_first_credits_the_stk_payment_and_its_callback_is_a_duplicate(
    client, merchant, stk_account, msisdn
):
    payment, token = _stk_payment(merchant)
    confirm(client, stk_account.token, c2b_body(shortcode=stk_account.shortcode, msisdn=msisdn))
    drain()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS
    assert payment.mpesa_receipt_number == "UL5C2B7QXA"
    _stk_callback(client, payment, token)
    drain()
    assert Payment.objects.count() == 1
    states = list(InboundCallback.objects.order_by("id").values_list("state", flat=True))
    assert states == [CallbackState.PROCESSED, CallbackState.DUPLICATE]
    assert not Payment.objects.get().needs_review


def test_callback_first_then_the_confirmation_is_a_duplicate_noted_once(
    client, merchant, stk_account
):
    payment, token = _stk_payment(merchant)
    _stk_callback(client, payment, token)
    drain()
    for _ in range(2):
        confirm(client, stk_account.token, c2b_body(shortcode=stk_account.shortcode))
    drain()
    assert Payment.objects.count() == 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS
    assert not payment.needs_review
    notes = payment.events.filter(kind="note", source="c2b")
    assert notes.count() == 1
    assert "double notification" in notes.get().reason


def test_a_confirmation_for_another_phone_is_not_taken_for_the_push(client, merchant, stk_account):
    payment, _ = _stk_payment(merchant)
    confirm(
        client, stk_account.token, c2b_body(shortcode=stk_account.shortcode, msisdn="254799000111")
    )
    drain()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    assert Payment.objects.filter(channel=Channel.PAYBILL).count() == 1


def test_two_pushes_that_fit_equally_are_not_guessed_between(client, merchant, stk_account):
    first, _ = _stk_payment(merchant)
    second, _ = _stk_payment(merchant)
    confirm(client, stk_account.token, c2b_body(shortcode=stk_account.shortcode, msisdn="2******8"))
    drain()
    assert set(
        Payment.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)
    ) == {PaymentStatus.PENDING}
    assert Payment.objects.filter(channel=Channel.PAYBILL).count() == 1


# --- Every captured real confirmation ---------------------------------------------------------


def test_every_real_confirmation_makes_its_payment(client, merchant):
    paths = real_payloads("c2b_confirmation_*.json")
    if not paths:
        pytest.skip("the captured payloads are not on this machine")
    tokens: dict[str, str] = {}
    expected: dict[str, Decimal] = {}
    for path in paths:
        data = json.loads(path.read_text())
        for body in data if isinstance(data, list) else [data]:
            fields = body.get("data", body)
            shortcode = fields["BusinessShortCode"]
            if shortcode not in tokens:
                _, tokens[shortcode] = account_create(
                    name=shortcode, shortcode=shortcode, client=merchant
                )
            assert confirm(client, tokens[shortcode], json.dumps(body).encode()).status_code == 200
            expected[fields["TransID"]] = Decimal(fields["TransAmount"])
    drain()
    recorded = dict(Payment.objects.values_list("mpesa_receipt_number", "amount"))
    assert recorded == expected
    assert not InboundCallback.objects.filter(
        state__in=[CallbackState.INVALID, CallbackState.FAILED, CallbackState.REJECTED]
    ).exists()


# --- The command ------------------------------------------------------------------------------


def test_the_command_creates_an_account_and_prints_its_urls_once(capsys, merchant):
    call_command(
        "mpesa_account",
        "create",
        "--name",
        "Till",
        "--shortcode",
        "5123456",
        "--kind",
        "till",
        "--client",
        merchant.key_prefix,
        "--max",
        "70000",
    )
    out = capsys.readouterr().out
    account = MpesaAccount.objects.get(shortcode="5123456")
    assert account.kind == "till" and account.client == merchant
    assert account.max_amount == Decimal("70000")
    urls = [line.split()[-1] for line in out.splitlines() if "URL:" in line]
    assert len(urls) == 2
    assert urls[0].endswith("/validation/") and urls[1].endswith("/confirmation/")
    token = urls[0].split("/")[-3]
    assert hashlib.sha256(token.encode()).hexdigest() == account.url_token_hash
    for word in ("mpesa", "safaricom", "exec", "cmd", "sql", "query"):
        assert word not in urls[0].lower()


# --- Hashed MSISDN -----------------------------------------------------------------------------


def test_a_hashed_number_is_matched_to_a_customer_we_know_never_reversed(client, account, merchant):
    # The customer paid by STK Push before: we hold the number, so we know its hash.
    PaymentFactory(client=merchant, phone_number="254733111222", amount="10")
    known = hashlib.sha256(b"254733111222").hexdigest()
    unknown = hashlib.sha256(b"254700999888").hexdigest()
    confirm(client, account.token, c2b_body(trans_id="UL5C2B7QXB", msisdn=known.upper()))
    confirm(client, account.token, c2b_body(trans_id="UL5C2B7QXC", msisdn=unknown))
    drain()
    by_receipt = {p.mpesa_receipt_number: p for p in Payment.objects.filter(channel="paybill")}
    assert by_receipt["UL5C2B7QXB"].phone_number == "254733111222"
    assert by_receipt["UL5C2B7QXB"].payer_phone == known.upper()  # kept as sent
    assert by_receipt["UL5C2B7QXC"].phone_number == ""
    assert by_receipt["UL5C2B7QXC"].payer_phone == unknown


def test_a_plain_number_paid_by_c2b_is_known_afterwards(client, account):
    confirm(client, account.token, c2b_body(trans_id="UL5C2B7QXD", msisdn="254744555666"))
    confirm(
        client,
        account.token,
        c2b_body(trans_id="UL5C2B7QXE", msisdn=hashlib.sha256(b"254744555666").hexdigest()),
    )
    drain()
    assert set(Payment.objects.values_list("phone_number", flat=True)) == {"254744555666"}


def test_received_payments_satisfy_the_books_invariants(client, account, merchant, stk_account):
    from core.ops import find_violations

    confirm(client, account.token, c2b_body())
    _stk_payment(merchant)
    confirm(
        client, stk_account.token, c2b_body(trans_id="UL5C2B7QXF", shortcode=stk_account.shortcode)
    )
    drain()
    assert Payment.objects.filter(status=PaymentStatus.SUCCESS).count() == 2
    assert [str(v) for v in find_violations(settled=True)] == []


# --- The account found by token, kept a few seconds for confirmations --------------------------


def test_confirmations_reuse_the_account_found_by_token_and_a_new_token_ends_it(
    client, account, django_assert_num_queries
):
    from payments.accounts import account_new_token

    assert confirm(client, account.token, c2b_body(trans_id="UKR0000001")).status_code == 200
    with django_assert_num_queries(1):  # the INSERT only: the account is known
        assert confirm(client, account.token, c2b_body(trans_id="UKR0000002")).status_code == 200
    old = account.token
    new = account_new_token(account)
    confirm(client, old, c2b_body(trans_id="UKR0000003"))
    confirm(client, new, c2b_body(trans_id="UKR0000004"))
    states = dict(
        InboundCallback.objects.filter(kind=CallbackKind.C2B_CONFIRMATION).values_list(
            "dedupe_key", "state"
        )
    )
    by_receipt = {
        receipt: states[hashlib.sha256(c2b_body(trans_id=receipt)).hexdigest()]
        for receipt in ("UKR0000003", "UKR0000004")
    }
    assert by_receipt == {
        "UKR0000003": CallbackState.REJECTED,
        "UKR0000004": CallbackState.RECEIVED,
    }


def test_validation_reads_the_accounts_rules_as_they_are_now(client, account):
    body = c2b_body(amount="5000.00")
    assert json.loads(validate(client, account.token, body).content)["ResultCode"] == "0"
    MpesaAccount.objects.filter(pk=account.pk).update(max_amount=Decimal("100"))
    answer = json.loads(validate(client, account.token, body).content)
    assert answer["ResultCode"] == "C2B00013"
