"""Processing stored callbacks: every outcome, through the HTTP endpoint and the task."""

from decimal import Decimal

import pytest

from callbacks.models import CallbackState, InboundCallback
from callbacks.services import callback_receive, callback_replay, callbacks_redrive
from callbacks.tasks import drain_callbacks, process_callback
from payments.models import EventKind, Payment, PaymentStatus
from payments.services import payment_transition
from testsupport import stk_failure_body, stk_success_body
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db
# Shaped like the tokens we issue, but issued to no payment.
WELL_FORMED = "U" * 43
CHECKOUT = "ws_CO_27112026103000123712345678"


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """POST a callback the way Daraja does and run what the commit enqueues (eager Celery)."""

    def _deliver(token, body):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                f"/payments/callback/{token}/", data=body, content_type="application/json"
            )
        assert response.status_code == 200
        return InboundCallback.objects.order_by("-id").first()

    return _deliver


def test_success_callback_moves_pending_to_success_with_receipt(deliver):
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    callback = deliver(
        token,
        stk_success_body(
            checkout_request_id=payment.checkout_request_id, amount="10.00", receipt="UKR1ABCDEF"
        ),
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS
    assert payment.mpesa_receipt_number == "UKR1ABCDEF"
    assert payment.paid_amount == Decimal("10.00")
    assert payment.transaction_date is not None
    assert callback.state == CallbackState.PROCESSED and callback.payment_id == payment.pk
    event = payment.events.get(to_status=PaymentStatus.SUCCESS)
    assert event.source == "callback" and event.callback_id == callback.pk
    assert event.evidence["receipt_number"] == "UKR1ABCDEF"


@pytest.mark.parametrize("code", [1032, 1037, 1, 2001, 17, "SFC_IC0003"])
def test_failure_callback_moves_pending_to_failed_with_code(deliver, code):
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    deliver(
        token,
        stk_failure_body(
            checkout_request_id=payment.checkout_request_id, result_code=code, result_desc="desc"
        ),
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.result_code == str(code) and payment.result_desc == "desc"


def test_duplicate_callback_changes_nothing_and_is_recorded(deliver):
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    body = stk_success_body(checkout_request_id=payment.checkout_request_id)
    deliver(token, body)
    second = deliver(token, body)
    assert second.state == CallbackState.DUPLICATE
    assert (
        payment.events.filter(kind=EventKind.TRANSITION, to_status=PaymentStatus.SUCCESS).count()
        == 1
    )


def test_failure_after_success_is_recorded_and_ignored(deliver):
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    deliver(token, stk_success_body(checkout_request_id=payment.checkout_request_id))
    late = deliver(token, stk_failure_body(checkout_request_id=payment.checkout_request_id))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS
    assert late.state == CallbackState.IGNORED and "never moves back" in late.last_error


def test_amount_mismatch_is_not_credited_but_flagged(deliver):
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT, amount="100.00")
    callback = deliver(
        token, stk_success_body(checkout_request_id=payment.checkout_request_id, amount=1)
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING and payment.needs_review
    assert callback.state == CallbackState.REVIEW
    flag = payment.events.get(kind=EventKind.FLAGGED)
    assert "amount mismatch" in flag.reason and flag.callback_id == callback.pk


def test_a_receipt_already_credited_to_another_payment_is_refused(deliver):
    _, first_token = PaymentFactory.with_token(checkout_request_id="ws_CO_A")
    second, second_token = PaymentFactory.with_token(checkout_request_id="ws_CO_B")
    deliver(first_token, stk_success_body(checkout_request_id="ws_CO_A", receipt="UKR1SAMEEE"))
    callback = deliver(
        second_token, stk_success_body(checkout_request_id="ws_CO_B", receipt="UKR1SAMEEE")
    )
    second.refresh_from_db()
    assert second.status == PaymentStatus.PENDING and second.needs_review
    assert callback.state == CallbackState.REVIEW and "already credited" in callback.last_error


def test_unknown_token_is_rejected_and_changes_nothing(deliver):
    payment, _ = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    callback = deliver("F" * 43, stk_success_body(checkout_request_id=payment.checkout_request_id))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    assert callback.state == CallbackState.REJECTED
    assert payment.events.filter(kind=EventKind.FLAGGED, reason__contains="unknown token").exists()


def test_a_valid_token_used_for_another_payment_is_rejected(deliver):
    victim, _ = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM")
    _, attacker_token = PaymentFactory.with_token(checkout_request_id="ws_CO_ATTACKER")
    callback = deliver(attacker_token, stk_success_body(checkout_request_id="ws_CO_VICTIM"))
    victim.refresh_from_db()
    assert victim.status == PaymentStatus.PENDING
    assert (
        callback.state == CallbackState.REJECTED
        and "different CheckoutRequestID" in callback.last_error
    )


def test_unparseable_callback_is_kept_as_invalid(deliver):
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    callback = deliver(token, b'{"Body": {"stkCallback": {"CheckoutRequestID": "x"}}}')
    assert (
        callback.state == CallbackState.INVALID and "ResultCode is missing" in callback.last_error
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


def test_callback_before_the_payment_is_pending_is_retried_then_processed(
    settings, client, monkeypatch
):
    settings.CALLBACK_ORPHAN_RETRIES = 2
    settings.CALLBACK_ORPHAN_RETRY_DELAY = 0.5
    retries = []
    monkeypatch.setattr(
        "callbacks.tasks.callback_enqueue",
        lambda callback_id, countdown=None: retries.append(countdown),
    )
    payment, token = PaymentFactory.with_token(initiated=True)
    body = stk_success_body(checkout_request_id="ws_CO_EARLY")
    client.post(f"/payments/callback/{token}/", data=body, content_type="application/json")
    callback = InboundCallback.objects.get()
    process_callback.apply(args=(callback.pk,))
    callback.refresh_from_db()
    assert callback.state == CallbackState.RECEIVED and callback.attempts == 1
    assert "still initiating" in callback.last_error
    assert retries == [0.5] and callback.next_attempt_at is not None
    # The payment becomes PENDING in the meantime: the retry succeeds.
    payment_transition(
        payment=payment,
        to_status=PaymentStatus.PENDING,
        source="daraja",
        fields={"checkout_request_id": "ws_CO_EARLY"},
    )
    process_callback.apply(args=(callback.pk,))
    callback.refresh_from_db()
    payment.refresh_from_db()
    assert callback.state == CallbackState.PROCESSED and payment.status == PaymentStatus.SUCCESS


def test_callback_whose_payment_never_becomes_pending_ends_orphan(settings, client, monkeypatch):
    settings.CALLBACK_ORPHAN_RETRIES = 1
    settings.CALLBACK_ORPHAN_RETRY_DELAY = 0
    monkeypatch.setattr(
        "callbacks.tasks.callback_enqueue", lambda callback_id, countdown=None: True
    )
    _, token = PaymentFactory.with_token(initiated=True)
    client.post(
        f"/payments/callback/{token}/",
        data=stk_success_body(checkout_request_id="ws_CO_X"),
        content_type="application/json",
    )
    callback = InboundCallback.objects.get()
    process_callback.apply(args=(callback.pk,))
    process_callback.apply(args=(callback.pk,))
    callback.refresh_from_db()
    assert callback.state == CallbackState.ORPHAN and "reconciliation" in callback.last_error


def test_processing_twice_is_safe(deliver):
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    callback = deliver(token, stk_success_body(checkout_request_id=payment.checkout_request_id))
    assert process_callback.apply(args=(callback.pk,)).get() == CallbackState.PROCESSED
    assert payment.events.filter(to_status=PaymentStatus.SUCCESS).count() == 1


def test_unexpected_errors_park_the_callback_with_its_traceback(client, monkeypatch):
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    client.post(
        f"/payments/callback/{token}/",
        data=stk_success_body(checkout_request_id=payment.checkout_request_id),
        content_type="application/json",
    )
    callback = InboundCallback.objects.get()

    def boom(**kwargs):
        raise RuntimeError("bug in processing")

    monkeypatch.setattr("payments.outcomes.payment_decide", boom)
    assert process_callback.apply(args=(callback.pk,)).get() == "failed"
    callback.refresh_from_db()
    assert (
        callback.state == CallbackState.FAILED
        and "RuntimeError: bug in processing" in callback.last_error
    )
    monkeypatch.undo()
    callback_replay(callback_id=callback.pk)
    callback.refresh_from_db()
    assert callback.state == CallbackState.RECEIVED
    process_callback.apply(args=(callback.pk,))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


@pytest.mark.parametrize("mode", ["batch", "task"])
def test_redrive_requeues_only_stale_unprocessed_callbacks(client, monkeypatch, settings, mode):
    settings.CALLBACK_PROCESSING = mode
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    client.post(
        f"/payments/callback/{token}/",
        data=stk_success_body(checkout_request_id=payment.checkout_request_id),
        content_type="application/json",
    )
    published = []
    monkeypatch.setattr(
        process_callback,
        "apply_async",
        lambda args, countdown=None: published.append(args[0]),
    )
    monkeypatch.setattr(
        drain_callbacks, "apply_async", lambda args, countdown=None: published.append("drain")
    )
    assert callbacks_redrive(older_than=3600) == 0
    assert callbacks_redrive(older_than=0) == 1
    callback = InboundCallback.objects.get()
    assert published == (["drain"] if mode == "batch" else [callback.pk])
    assert callback.attempts == 1  # each re-drive counts


def test_a_callback_that_keeps_killing_workers_is_parked_not_redriven_forever(
    client, monkeypatch, settings
):
    settings.CALLBACK_MAX_ATTEMPTS = 3
    monkeypatch.setattr(drain_callbacks, "apply_async", lambda args, countdown=None: None)
    _, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    client.post(f"/payments/callback/{token}/", data=b"{}", content_type="application/json")
    for _ in range(3):
        callbacks_redrive(older_than=0)
    callbacks_redrive(older_than=0)
    callback = InboundCallback.objects.get()
    assert callback.state == CallbackState.FAILED and "gave up" in callback.last_error


@pytest.mark.parametrize("mode", ["batch", "task"])
def test_a_broker_outage_does_not_fail_the_callback_endpoint(
    client, monkeypatch, django_capture_on_commit_callbacks, settings, mode
):
    settings.CALLBACK_PROCESSING = mode

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(process_callback, "apply_async", broker_down)
    monkeypatch.setattr(drain_callbacks, "apply_async", broker_down)
    _, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/payments/callback/{token}/", data=b"{}", content_type="application/json"
        )
    assert response.status_code == 200
    assert InboundCallback.objects.get().state == CallbackState.RECEIVED


def test_wake_ups_are_rate_limited_per_process(monkeypatch, settings):
    from callbacks.services import callback_wake, wakeup_reset

    settings.CALLBACK_WAKEUP_INTERVAL = 60
    published = []
    monkeypatch.setattr(
        drain_callbacks, "apply_async", lambda args, countdown=None: published.append(countdown)
    )
    wakeup_reset()
    for callback_id in range(50):
        callback_wake(callback_id=callback_id)
    wakeup_reset()  # later tests start with a process that has not woken the drain
    # One immediate wake-up, then one delayed to the end of the window for the latecomers.
    assert len(published) == 2
    assert published[0] is None and 59 < published[1] <= 60


def test_batch_drain_processes_everything_stored(client, settings):
    settings.CALLBACK_BATCH_SIZE = 3
    payments = [PaymentFactory.with_token(checkout_request_id=f"ws_CO_{n}") for n in range(7)]
    for n, (_, token) in enumerate(payments):
        client.post(
            f"/payments/callback/{token}/",
            data=stk_success_body(checkout_request_id=f"ws_CO_{n}", receipt=f"UKR1BATCH{n}"),
            content_type="application/json",
        )
        client.post(
            f"/payments/callback/{token}/",
            data=stk_success_body(checkout_request_id=f"ws_CO_{n}", receipt=f"UKR1BATCH{n}"),
            content_type="application/json",
        )
    assert drain_callbacks.apply().get() == 14
    assert set(Payment.objects.values_list("status", flat=True)) == {PaymentStatus.SUCCESS}
    states = sorted(InboundCallback.objects.values_list("state", flat=True))
    assert states.count(CallbackState.PROCESSED) == 7 and states.count(CallbackState.DUPLICATE) == 7


def test_one_bad_callback_does_not_stop_a_batch(client, monkeypatch):
    good, good_token = PaymentFactory.with_token(checkout_request_id="ws_CO_GOOD")
    bad, bad_token = PaymentFactory.with_token(checkout_request_id="ws_CO_BAD")
    for checkout, token, receipt in (
        ("ws_CO_BAD", bad_token, "UKR1BAD000"),
        ("ws_CO_GOOD", good_token, "UKR1GOOD00"),
    ):
        client.post(
            f"/payments/callback/{token}/",
            data=stk_success_body(checkout_request_id=checkout, receipt=receipt),
            content_type="application/json",
        )
    from payments import outcomes

    real = outcomes.payment_decide

    def flaky(*, payment, evidence):
        if payment.pk == bad.pk:
            raise RuntimeError("unexpected")
        return real(payment=payment, evidence=evidence)

    monkeypatch.setattr(outcomes, "payment_decide", flaky)
    drain_callbacks.apply()
    good.refresh_from_db()
    assert good.status == PaymentStatus.SUCCESS
    failed = InboundCallback.objects.get(state=CallbackState.FAILED)
    assert failed.payment_id == bad.pk and "RuntimeError: unexpected" in failed.last_error


def test_invariant_one_receipt_one_payment_in_the_database(deliver):
    from django.db import IntegrityError, transaction

    first, _ = PaymentFactory.with_token(checkout_request_id="ws_CO_1")
    second, _ = PaymentFactory.with_token(checkout_request_id="ws_CO_2")
    Payment.objects.filter(pk=first.pk).update(mpesa_receipt_number="UKR1DUPLIC")
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=second.pk).update(mpesa_receipt_number="UKR1DUPLIC")


@pytest.mark.parametrize("path", ["task", "batch", "redrive"])
def test_a_parked_callback_is_linked_to_the_payment_its_token_names(
    client, monkeypatch, settings, path
):
    # Processing links a callback to its payment; one parked before it got that far must still
    # be found by the payment (its API client lists and replays it).
    payment, token = PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    client.post(
        f"/payments/callback/{token}/",
        # Another amount than the payment's: a batch decides it one by one (not set-based).
        data=stk_success_body(checkout_request_id=payment.checkout_request_id, amount=99),
        content_type="application/json",
    )
    callback = InboundCallback.objects.get()
    assert callback.payment_id is None

    def boom(**kwargs):
        raise RuntimeError("bug in processing")

    monkeypatch.setattr("payments.outcomes.payment_decide", boom)
    if path == "task":
        process_callback.apply(args=(callback.pk,))
    elif path == "batch":
        drain_callbacks.apply()
    else:
        settings.CALLBACK_MAX_ATTEMPTS = 1
        monkeypatch.setattr(drain_callbacks, "apply_async", lambda args, countdown=None: None)
        callbacks_redrive(older_than=0)
        callbacks_redrive(older_than=0)
    callback.refresh_from_db()

    assert callback.state == CallbackState.FAILED
    assert callback.payment_id == payment.pk


def test_a_parked_callback_without_a_token_stays_without_a_payment(client, monkeypatch, settings):
    PaymentFactory.with_token(checkout_request_id=CHECKOUT)
    # Stored as received without a payment's token (the endpoint now refuses such a callback
    # at once; rows from before, or written by other code, must still not be misattributed).
    callback_receive(
        body=b"{}", content_type="application/json", headers={}, source_ip=None, token=WELL_FORMED
    )
    # Parked without being decided: the re-drive gives up on it.
    settings.CALLBACK_MAX_ATTEMPTS = 1
    monkeypatch.setattr(drain_callbacks, "apply_async", lambda args, countdown=None: None)

    callbacks_redrive(older_than=0)
    callbacks_redrive(older_than=0)

    callback = InboundCallback.objects.get()
    assert callback.state == CallbackState.FAILED and callback.payment_id is None
