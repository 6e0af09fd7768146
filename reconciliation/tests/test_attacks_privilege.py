"""Attack: an API key marks its own payments SUCCESS with a statement it wrote.

The attacker holds an API key that takes payments. They upload a CSV of invented receipts and
resolve the breaks with ``{"action": "match"}``: a PENDING payment, and a payment the customer
cancelled (FAILED 1032), both became SUCCESS on a line dated hours before the payment existed,
and ``check_invariants --settled`` said OK. Each step of that is now refused:

1. a key without the ``reconciliation`` scope cannot import statements, read runs or resolve
   breaks (403 ``missing_scope``);
2. a key with the scope cannot credit a payment with a line that is not that payment's
   (completed before the payment was created, another payer, another amount): 422
   ``inconsistent_line`` with the reasons;
3. crediting a payment whose failure M-Pesa gave waits for a second person (202, approval
   pending); the one who asked cannot approve it (403 ``self_approval``); a second key of the
   same merchant, or a staff user in the admin, can — and only then the payment moves, with
   both on the record;
4. the automatic resolution follows the same rules and never credits a final failure;
5. ``check_invariants`` flags credits resting on a statement line alone, and ``--settled``
   fails on them until a second person approves.
"""

from __future__ import annotations

import hashlib
from io import StringIO
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import Scope
from core.services import NewApiKey, api_client_create
from payments.models import EventKind, Payment, PaymentEvent, PaymentStatus
from reconciliation.models import Break, BreakEvent, CreditApproval, Statement
from testsupport.factories import PaymentFactory

from .builders import Preamble, eat, g2_csv, pay_row

pytestmark = pytest.mark.django_db
BOTH = [Scope.PAYMENTS, Scope.RECONCILIATION]
# The payment's prompt: created at 13:00 EAT on 5 November 2025.
PROMPTED = eat("05-11-2025 13:00:00")


def api_for(key: NewApiKey) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.key}")
    return client


class Uploaded:
    """The upload's answer, with its run as the worker left it once the upload committed
    (the task runs eagerly in unit tests)."""

    def __init__(self, api: APIClient, response: Any) -> None:
        self.status_code = response.status_code
        self.content = response.content
        self.body = response.json()
        if response.status_code == 202:
            self.body = {**self.body, "run": api.get(response["Location"]).json()}

    def json(self) -> Any:
        return self.body


def upload(api: APIClient, *rows: Any) -> Uploaded:
    data = g2_csv(list(rows), preamble=Preamble())
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = api.post(
            "/reconciliation/statements/",
            {"file": SimpleUploadedFile("statement.csv", data, content_type="text/csv")},
            format="multipart",
        )
    return Uploaded(api, response)


def the_break(api: APIClient, run_id: int) -> dict[str, Any]:
    breaks = api.get(f"/reconciliation/runs/{run_id}/breaks/").json()["results"]
    assert len(breaks) == 1, breaks
    return breaks[0]


def resolve(api: APIClient, break_id: int, payment: Payment, reason: str = "paid") -> Any:
    return api.post(
        f"/reconciliation/breaks/{break_id}/resolve/",
        {"action": "match", "payment_id": str(payment.pk), "reason": reason},
        format="json",
    )


def approve(api: APIClient, break_id: int, reason: str = "checked the SMS") -> Any:
    return api.post(
        f"/reconciliation/breaks/{break_id}/approve/", {"reason": reason}, format="json"
    )


def invariants(*args: str) -> tuple[bool, str]:
    out = StringIO()
    try:
        call_command("check_invariants", *args, stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


def prompted_payment(
    client: Any,
    *,
    status: str = PaymentStatus.PENDING,
    receipt: str | None = None,
    result_code: str = "",
    failure_final: bool = False,
) -> Payment:
    """A payment as the STK flow leaves it, with its audit trail, whose customer was prompted
    at 13:00 EAT. FAILED: with ``result_code`` M-Pesa's (final), or "expired" by the sweeper;
    ``failure_final=False`` with M-Pesa's code is a row older than the flag. ``receipt``
    pins a statement line to a payment that did not succeed (not a state the flow makes)."""
    expired = result_code == "expired"
    payment = PaymentFactory(
        client=client,
        phone_number="254722000108",
        amount=500,
        account_reference="37941535",
        description="School fees",
        status=status,
        result_code=result_code or "1032",
        failure_final=not expired,
        created_at=PROMPTED,
    )
    fields: dict[str, Any] = {}
    if status == PaymentStatus.FAILED and not expired and not failure_final:
        fields["failure_final"] = False
    if receipt is not None:
        fields["mpesa_receipt_number"] = receipt
    if fields:
        Payment.objects.filter(pk=payment.pk).update(**fields)
        payment.refresh_from_db()
    return payment


def cancelled_by_the_customer(client: Any) -> Payment:
    return prompted_payment(
        client, status=PaymentStatus.FAILED, result_code="1032", failure_final=True
    )


@pytest.fixture
def shop() -> NewApiKey:
    """The attacker's key, as every key made before scopes existed: payments only."""
    return api_client_create(name="shop")


@pytest.fixture
def books() -> NewApiKey:
    """A key that takes payments and does the books."""
    return api_client_create(name="books", scopes=BOTH)


# --- The attack as reported ------------------------------------------------------------------


def test_the_reported_attack_credits_nothing(shop):
    pending = prompted_payment(shop.client)
    cancelled = cancelled_by_the_customer(shop.client)
    # Invented receipts, three hours before either payment existed.
    rows = [
        pay_row("TK5FAKE101", 500, "05-11-2025 10:00:00"),
        pay_row("TK5FAKE102", 500, "05-11-2025 10:00:05"),
    ]

    # The key as it was: payments only.
    assert upload(api_for(shop), *rows).status_code == 403

    # Even a key granted the books (a second key of the merchant) gets no further.
    books = api_for(api_client_create(name="books", scopes=BOTH, acts_for=shop.client))
    run_id = upload(books, *rows).json()["run"]["id"]
    breaks = books.get(f"/reconciliation/runs/{run_id}/breaks/").json()["results"]
    for brk, payment in zip(breaks, (pending, cancelled), strict=True):
        response = resolve(books, brk["id"], payment)
        assert response.status_code == 422, response.content
        assert response.json()["error"]["code"] == "inconsistent_line"

    pending.refresh_from_db()
    cancelled.refresh_from_db()
    assert (pending.status, cancelled.status) == (PaymentStatus.PENDING, PaymentStatus.FAILED)
    assert not PaymentEvent.objects.filter(to_status=PaymentStatus.SUCCESS).exists()
    ok, out = invariants("--settled")
    assert ok, out


# --- 1. The scope ---------------------------------------------------------------------------


def test_a_key_that_takes_payments_cannot_import_a_statement(shop):
    payment = prompted_payment(shop.client)

    response = upload(api_for(shop), pay_row("TK5FAKE001", 500, "05-11-2025 10:00:00"))

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "missing_scope"
    assert "'reconciliation' scope" in error["message"]
    assert error["fields"] == {"scope": "reconciliation"}
    assert not Statement.objects.exists()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


def test_a_key_that_takes_payments_cannot_read_runs_or_resolve_or_approve_breaks(shop, books):
    # A statement of the merchant's, imported by its bookkeeping key.
    books_for_shop = api_client_create(name="books", scopes=BOTH, acts_for=shop.client)
    run_id = upload(api_for(books_for_shop), pay_row("TK5XA1BC2D", 5, "05-11-2025 10:00:00"))
    break_id = the_break(api_for(books_for_shop), run_id.json()["run"]["id"])["id"]
    attacker = api_for(shop)

    for response in (
        attacker.get("/reconciliation/runs/"),
        attacker.get(f"/reconciliation/breaks/{break_id}/"),
        attacker.post(
            f"/reconciliation/breaks/{break_id}/resolve/",
            {"action": "accept", "reason": "x"},
            format="json",
        ),
        approve(attacker, break_id),
    ):
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "missing_scope"
    assert Break.objects.get(pk=break_id).status == "open"


def test_a_key_that_does_only_the_books_cannot_take_payments(daraja):
    books_only = api_client_create(name="books", scopes=[Scope.RECONCILIATION])

    response = api_for(books_only).post(
        "/payments/stk-push/",
        {"phone_number": "0712345678", "amount": 10, "account_reference": "A", "description": "B"},
        format="json",
    )

    assert response.status_code == 403
    assert response.json()["error"]["fields"] == {"scope": "payments"}
    assert not Payment.objects.exists()


def test_no_key_is_still_a_401_not_a_403():
    response = APIClient().post("/reconciliation/statements/", {}, format="multipart")

    assert response.status_code == 401


# --- 2. The line must be the payment's --------------------------------------------------------


def test_a_line_dated_before_the_payment_existed_cannot_credit_it(books):
    payment = prompted_payment(books.client)
    api = api_for(books)
    # The invented receipt: three hours before the customer was prompted.
    run = upload(api, pay_row("TK5FAKE001", 500, "05-11-2025 10:00:20")).json()["run"]
    brk = the_break(api, run["id"])
    assert brk["kind"] == "unknown_payment"

    response = resolve(api, brk["id"], payment)

    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "inconsistent_line"
    assert "before the payment was created" in error["message"]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    assert Break.objects.get(pk=brk["id"]).status == "open"
    assert invariants("--settled")[0]


def test_a_line_from_another_payer_cannot_credit_the_payment(books):
    payment = prompted_payment(books.client)
    api = api_for(books)
    line = pay_row("TK5FAKE002", 500, "05-11-2025 13:01:00", phone="254711999999")
    brk = the_break(api, upload(api, line).json()["run"]["id"])

    response = resolve(api, brk["id"], payment)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "inconsistent_line"
    assert "25471****999" in response.json()["error"]["message"]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


def test_a_line_naming_no_payer_cannot_credit_the_payment(books):
    payment = prompted_payment(books.client)
    api = api_for(books)
    line = pay_row("TK5FAKE003", 500, "05-11-2025 13:01:00", party="", details="Pay Bill")
    brk = the_break(api, upload(api, line).json()["run"]["id"])

    response = resolve(api, brk["id"], payment)

    assert response.status_code == 422
    assert "names no payer" in response.json()["error"]["message"]


def test_a_line_of_another_amount_cannot_credit_the_payment(books):
    payment = prompted_payment(books.client)
    api = api_for(books)
    brk = the_break(
        api, upload(api, pay_row("TK5FAKE004", 5000, "05-11-2025 13:01:00")).json()["run"]["id"]
    )

    response = resolve(api, brk["id"], payment)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "amount_differs"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


def test_a_consistent_line_credits_a_pending_payment_within_the_clock_skew(books, settings):
    settings.RECONCILIATION_CREDIT_CLOCK_SKEW_SECONDS = 120
    payment = prompted_payment(books.client)
    api = api_for(books)
    # A minute "before" the prompt: our clock and M-Pesa's differ by that much.
    line = pay_row("TK5REAL001", 500, "05-11-2025 12:59:20")
    brk = the_break(api, upload(api, line).json()["run"]["id"])

    response = resolve(api, brk["id"], payment)

    assert response.status_code == 200, response.content
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS
    assert payment.mpesa_receipt_number == "TK5REAL001"


def test_a_hashed_msisdn_is_the_payer_when_it_is_the_hash_of_the_payments_phone(books):
    payment = prompted_payment(books.client)
    api = api_for(books)
    hashed = hashlib.sha256(payment.phone_number.encode()).hexdigest()
    other = hashlib.sha256(b"254711999999").hexdigest()
    rows = [
        pay_row("TK5HASH001", 500, "05-11-2025 13:01:00", party=f"{other} - JOHN DOE"),
        pay_row("TK5HASH002", 500, "05-11-2025 13:02:00", party=f"{hashed} - JOHN DOE"),
    ]
    run_id = upload(api, *rows).json()["run"]["id"]
    breaks = api.get(f"/reconciliation/runs/{run_id}/breaks/").json()["results"]
    by_receipt = {b["line"]["receipt_number"]: b["id"] for b in breaks}

    refused = resolve(api, by_receipt["TK5HASH001"], payment)
    credited = resolve(api, by_receipt["TK5HASH002"], payment)

    assert refused.status_code == 422
    assert "not the payment's phone number" in refused.json()["error"]["message"]
    assert credited.status_code == 200, credited.content
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


# --- 3. A final failure needs a second person ----------------------------------------------


def test_crediting_a_payment_the_customer_cancelled_waits_for_a_second_person(books):
    payment = cancelled_by_the_customer(books.client)
    api = api_for(books)
    brk = the_break(
        api, upload(api, pay_row("TK5PAID001", 500, "05-11-2025 13:01:00")).json()["run"]["id"]
    )

    response = resolve(api, brk["id"], payment, reason="customer sent the SMS")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "open"
    assert body["approval"]["status"] == "pending"
    assert body["approval"]["requested_by"] == "api:books"
    assert body["approval"]["payment"] == str(payment.pk)
    payment.refresh_from_db()
    assert (payment.status, payment.result_code) == (PaymentStatus.FAILED, "1032")
    note = PaymentEvent.objects.filter(payment=payment, kind=EventKind.NOTE).get()
    assert "waiting for a second person" in note.reason
    # Asking again while it waits is a conflict, not a second request.
    again = resolve(api, brk["id"], payment)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "approval_pending"


def test_the_key_that_asked_for_the_credit_cannot_approve_it(books):
    payment = cancelled_by_the_customer(books.client)
    api = api_for(books)
    brk = the_break(
        api, upload(api, pay_row("TK5PAID001", 500, "05-11-2025 13:01:00")).json()["run"]["id"]
    )
    assert resolve(api, brk["id"], payment).status_code == 202

    response = approve(api, brk["id"])

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "self_approval"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert CreditApproval.objects.get().status == "pending"


def test_a_second_key_of_the_merchant_approves_and_only_then_the_payment_moves(books):
    payment = cancelled_by_the_customer(books.client)
    api = api_for(books)
    second = api_for(api_client_create(name="auditor", scopes=BOTH, acts_for=books.client))
    brk = the_break(
        api, upload(api, pay_row("TK5PAID001", 500, "05-11-2025 13:01:00")).json()["run"]["id"]
    )
    assert resolve(api, brk["id"], payment, reason="customer sent the SMS").status_code == 202

    response = approve(second, brk["id"], reason="M-Pesa confirms on the portal")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "resolved" and body["resolution"] == "credited"
    assert body["resolved_by"] == "api:books, approved by api:auditor"
    assert body["approval"]["status"] == "approved"
    assert body["approval"]["decided_by"] == "api:auditor"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS
    assert payment.mpesa_receipt_number == "TK5PAID001"
    event = PaymentEvent.objects.get(payment=payment, to_status=PaymentStatus.SUCCESS)
    assert (event.from_status, event.source, event.actor) == (
        PaymentStatus.FAILED,
        "reconciliation",
        "api:auditor",
    )
    approval = event.evidence["approval"]
    assert (approval["requested_by"], approval["approved_by"]) == ("api:books", "api:auditor")
    assert approval["request_reason"] == "customer sent the SMS"
    assert approval["approval_reason"] == "M-Pesa confirms on the portal"
    assert "approved by api:auditor" in event.reason
    # The whole story is on the break's trail too.
    actions = list(BreakEvent.objects.filter(break_record_id=brk["id"]).values_list("action"))
    assert actions == [("approval_requested",), ("resolved:credited",)]
    # Approved by a second person: the books may be closed.
    ok, out = invariants("--settled")
    assert ok, out


def test_another_merchants_key_cannot_see_let_alone_approve_the_credit(books):
    payment = cancelled_by_the_customer(books.client)
    api = api_for(books)
    stranger = api_for(api_client_create(name="stranger", scopes=BOTH))
    brk = the_break(
        api, upload(api, pay_row("TK5PAID001", 500, "05-11-2025 13:01:00")).json()["run"]["id"]
    )
    assert resolve(api, brk["id"], payment).status_code == 202

    assert approve(stranger, brk["id"]).status_code == 404
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED


def test_a_staff_user_approves_in_the_admin_a_credit_a_key_asked_for(books, admin_client):
    payment = cancelled_by_the_customer(books.client)
    api = api_for(books)
    brk = the_break(
        api, upload(api, pay_row("TK5PAID001", 500, "05-11-2025 13:01:00")).json()["run"]["id"]
    )
    assert resolve(api, brk["id"], payment).status_code == 202
    waiting = admin_client.get(
        reverse("admin:reconciliation_creditapproval_changelist"), {"status": "pending"}
    )
    assert waiting.status_code == 200
    assert b"Approve" in waiting.content
    approval = CreditApproval.objects.get()
    detail = admin_client.get(
        reverse("admin:reconciliation_creditapproval_change", args=[approval.pk])
    )
    assert detail.status_code == 200
    assert b"api:books" in detail.content
    url = reverse("admin:reconciliation_break_approve", args=[brk["id"]])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"api:books" in page.content

    response = admin_client.post(url, {"reason": "called the customer"})

    assert response.status_code == 302
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS
    event = PaymentEvent.objects.get(payment=payment, to_status=PaymentStatus.SUCCESS)
    assert event.evidence["approval"]["requested_by"] == "api:books"
    assert event.evidence["approval"]["approved_by"] == "admin"


def test_a_staff_user_cannot_approve_the_credit_they_asked_for(admin_client):
    payment = cancelled_by_the_customer(None)
    from reconciliation.imports import statement_import

    run = statement_import(
        data=g2_csv([pay_row("TK5PAID001", 500, "05-11-2025 13:01:00")], preamble=Preamble())
    ).run
    brk = Break.objects.get(run=run)
    resolve_url = reverse("admin:reconciliation_break_resolve", args=[brk.pk])
    admin_client.post(
        resolve_url,
        {"action": "match", "payment_id": str(payment.pk), "reason": "SMS seen"},
    )
    assert CreditApproval.objects.get().status == "pending"

    response = admin_client.post(
        reverse("admin:reconciliation_break_approve", args=[brk.pk]), {"reason": "sure"}
    )

    assert response.status_code == 200  # the form again, with the refusal
    assert b"a second person" in response.content
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED


def test_a_failure_that_is_not_final_is_credited_without_approval(books):
    # "Expired unresolved": we stopped waiting; M-Pesa never said no.
    payment = prompted_payment(books.client, status=PaymentStatus.FAILED, result_code="expired")
    api = api_for(books)
    brk = the_break(
        api, upload(api, pay_row("TK5LATE001", 500, "05-11-2025 13:05:00")).json()["run"]["id"]
    )

    response = resolve(api, brk["id"], payment)

    assert response.status_code == 200, response.content
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


def test_accepting_the_break_cancels_the_credit_waiting_for_approval(books):
    payment = cancelled_by_the_customer(books.client)
    api = api_for(books)
    brk = the_break(
        api, upload(api, pay_row("TK5PAID001", 500, "05-11-2025 13:01:00")).json()["run"]["id"]
    )
    assert resolve(api, brk["id"], payment).status_code == 202

    response = api.post(
        f"/reconciliation/breaks/{brk['id']}/resolve/",
        {"action": "accept", "reason": "refunded outside M-Pesa"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["approval"]["status"] == "cancelled"
    note = PaymentEvent.objects.filter(payment=payment, kind=EventKind.NOTE).last()
    assert note is not None and "was cancelled" in note.reason
    assert approve(api_for(books), brk["id"]).status_code == 409
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED


# --- 4. The automatic resolution ------------------------------------------------------------


def test_the_automatic_resolution_refuses_a_line_dated_before_the_payment(books):
    payment = prompted_payment(books.client, receipt="TK5AUTO001")
    api = api_for(books)

    run = upload(api, pay_row("TK5AUTO001", 500, "05-11-2025 10:00:00")).json()["run"]

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    brk = Break.objects.get(run_id=run["id"])
    assert (brk.status, brk.auto_resolvable) == ("open", False)  # left to a person
    refusal = BreakEvent.objects.get(break_record=brk, action="auto_resolve_failed")
    assert "before the payment was created" in refusal.reason


def test_the_automatic_resolution_never_credits_a_final_failure(books):
    # The failure code alone says final, whatever the flag (a row older than the flag).
    payment = prompted_payment(
        books.client, receipt="TK5AUTO002", status=PaymentStatus.FAILED, result_code="2001"
    )
    api = api_for(books)

    run = upload(api, pay_row("TK5AUTO002", 500, "05-11-2025 13:01:00")).json()["run"]

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    refusal = BreakEvent.objects.get(break_record__run_id=run["id"], action="auto_resolve_failed")
    assert "2001" in refusal.reason


def test_the_automatic_resolution_credits_a_consistent_line(books):
    payment = prompted_payment(books.client, receipt="TK5AUTO003")

    upload(api_for(books), pay_row("TK5AUTO003", 500, "05-11-2025 13:01:00"))

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


# --- 5. check_invariants ---------------------------------------------------------------------


def test_check_invariants_flags_a_credit_on_a_statement_line_alone_until_a_second_person_approves(
    books,
):
    payment = prompted_payment(books.client)
    api = api_for(books)
    brk = the_break(
        api, upload(api, pay_row("TK5REAL002", 500, "05-11-2025 13:01:00")).json()["run"]["id"]
    )
    assert resolve(api, brk["id"], payment).status_code == 200

    ok, out = invariants()
    assert ok, out
    assert f"FLAG credit_on_statement_alone: payment {payment.pk}" in out
    settled, out = invariants("--settled")
    assert not settled
    assert f"VIOLATION credit_on_statement_alone: payment {payment.pk}" in out

    # The key that made the credit cannot vouch for it.
    assert approve(api, brk["id"]).json()["error"]["code"] == "self_approval"
    second = api_for(api_client_create(name="auditor", scopes=BOTH, acts_for=books.client))
    response = approve(second, brk["id"], reason="matches the bank's copy")
    assert response.status_code == 200, response.content
    assert approve(second, brk["id"]).status_code == 409  # once is enough

    ok, out = invariants("--settled")
    assert ok, out
    assert "FLAG" not in invariants()[1]
    note = PaymentEvent.objects.filter(payment=payment, kind=EventKind.NOTE).last()
    assert note is not None
    assert note.evidence["approval"]["approved_by"] == "api:auditor"


def test_an_automatic_credit_is_flagged_and_any_person_may_approve_it(books):
    payment = prompted_payment(books.client, receipt="TK5AUTO004")
    api = api_for(books)
    run = upload(api, pay_row("TK5AUTO004", 500, "05-11-2025 13:01:00")).json()["run"]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS
    assert not invariants("--settled")[0]

    brk = Break.objects.get(run_id=run["id"])
    response = approve(api, brk.pk, reason="receipt on the portal")

    assert response.status_code == 200, response.content
    assert invariants("--settled")[0]
