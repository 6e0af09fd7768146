"""The demo page: pay with a phone number and watch INITIATED → PENDING → SUCCESS/FAILED live.

For local development and demos against the simulator (``DEMO_ENABLED``, on by default only
when ``MPESA_ENV=simulator``). It uses the same service as the API, as a built-in "demo" client.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from core.models import ApiClient
from core.money import whole_shillings
from core.phones import normalize_phone
from core.services import api_client_create
from daraja.client import get_client
from daraja.errors import DarajaError

from .accounts import RegistrationError, account_create, account_register_urls
from .api import StkPushRequestSerializer
from .models import Channel, MpesaAccount, Payment
from .selectors import payment_events, payment_list
from .serializers import PaymentEventSerializer, PaymentSerializer
from .services import payment_initiate

DEMO_CLIENT = "demo-page"


def _enabled() -> None:
    if not settings.DEMO_ENABLED:
        raise Http404("The demo page is disabled (DEMO_ENABLED=false).")


# Local only: the demo key does the books and the webhooks too, so that the README's statement
# upload and endpoint registration work with it (a production key takes payments only unless
# given the scopes).
DEMO_SCOPES = ["payments", "reconciliation", "webhooks"]


def demo_client() -> ApiClient:
    """The one built-in demo API client: the demo page's payments and `make run`'s printed key
    (`bootstrap_demo` rotates its key) belong to it."""
    client = (
        ApiClient.objects.filter(name=DEMO_CLIENT, revoked_at__isnull=True)
        .order_by("created_at")
        .first()
    )
    if client is None:
        return api_client_create(name=DEMO_CLIENT, scopes=DEMO_SCOPES).client
    if client.scopes != DEMO_SCOPES:  # made by an earlier version, with payments only
        client.scopes = DEMO_SCOPES
        client.save(update_fields=["scopes"])
    return client


def _test_numbers() -> list[dict[str, str]]:
    try:
        from simulator.scenarios import TEST_NUMBERS
    except ImportError:  # the simulator package is not installed beside the app
        return []
    return [
        {
            "phone": entry.phone,
            "name": entry.name.replace("_", " "),
            "description": entry.description,
        }
        for entry in TEST_NUMBERS.values()
    ]


def _state(payment: Payment) -> dict[str, Any]:
    return {
        "payment": PaymentSerializer(payment).data,
        "events": PaymentEventSerializer(payment_events(payment=payment), many=True).data,
    }


@require_GET
def demo_page(request: HttpRequest) -> HttpResponse:
    _enabled()
    return render(
        request,
        "demo.html",
        {
            "test_numbers": _test_numbers(),
            "mpesa_env": settings.MPESA_ENV,
            "daraja_url": settings.MPESA_BASE_URL,
            "demo_paybill": DEMO_PAYBILL,
        },
    )


@require_POST
def demo_pay(request: HttpRequest) -> JsonResponse:
    _enabled()
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse(
            {"error": {"code": "malformed_request", "message": "Send JSON."}}, status=400
        )
    if not isinstance(data, dict):
        return JsonResponse(
            {"error": {"code": "malformed_request", "message": "Send a JSON object."}}, status=400
        )
    serializer = StkPushRequestSerializer(
        data={
            "phone_number": data.get("phone_number", ""),
            "amount": data.get("amount", ""),
            "account_reference": data.get("account_reference") or "DEMO",
            "description": data.get("description") or "Demo payment",
        }
    )
    if not serializer.is_valid():
        fields = {name: [str(e) for e in errors] for name, errors in serializer.errors.items()}
        return JsonResponse(
            {"error": {"code": "validation_error", "message": "Check the form.", "fields": fields}},
            status=400,
        )
    values = serializer.validated_data
    payment = payment_initiate(
        client=demo_client(),
        phone_number=values["phone_number"],
        amount=values["amount"],
        account_reference=values["account_reference"],
        description=values["description"],
    )
    return JsonResponse(_state(payment), status=201)


# The paybill the demo pays (a C2B test shortcode of Daraja's sandbox, known to the simulator).
DEMO_PAYBILL = "600984"


def demo_account() -> MpesaAccount:
    """The demo paybill, owned by the demo client; its C2B URLs are registered with the
    simulator when it does not know them yet (a restarted simulator forgets them)."""
    account = MpesaAccount.objects.filter(shortcode=DEMO_PAYBILL).first()
    if account is None:
        account, _ = account_create(
            name="Demo paybill", shortcode=DEMO_PAYBILL, client=demo_client()
        )
    registered = get_client().http.get("/simulator/c2b").json().get("registered", {})
    if DEMO_PAYBILL not in registered:
        account_register_urls(account)
    return account


@require_POST
def demo_pay_paybill(request: HttpRequest) -> JsonResponse:
    """The customer pays the demo paybill from the phone (the simulator's ``c2b/v2/simulate``):
    validation, then the confirmation, reach this system as Daraja would send them."""
    _enabled()
    try:
        data = json.loads(request.body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("send a JSON object")
        phone = normalize_phone(data.get("phone_number", ""))
        amount = whole_shillings(data.get("amount", ""))
        if amount <= 0:
            raise ValueError("amount must be positive")
    except ValueError as exc:  # bad JSON, InvalidPhoneNumber and InvalidAmount
        return JsonResponse(
            {"error": {"code": "validation_error", "message": str(exc)}}, status=400
        )
    reference = str(data.get("account_reference") or "DEMO")[:20]
    since = timezone.now()
    try:
        account = demo_account()
        get_client().c2b_simulate(
            shortcode=account.shortcode, amount=amount, msisdn=phone, bill_ref=reference
        )
    except (RegistrationError, DarajaError, httpx.HTTPError) as exc:
        return JsonResponse({"error": {"code": "daraja_error", "message": str(exc)}}, status=502)
    return JsonResponse({"shortcode": account.shortcode, "since": since.isoformat()}, status=202)


@require_GET
def demo_paybill_latest(request: HttpRequest) -> JsonResponse:
    """The newest paybill payment of the demo client recorded after ``since``, if any yet."""
    _enabled()
    try:
        since = datetime.fromisoformat(request.GET.get("since", ""))
    except ValueError:
        return JsonResponse({"error": {"code": "validation_error", "message": "since"}}, status=400)
    payment = (
        payment_list(client=demo_client())
        .filter(channel=Channel.PAYBILL, created_at__gte=since)
        .order_by("-created_at")
        .first()
    )
    return JsonResponse(_state(payment) if payment is not None else {"payment": None})


@require_GET
def demo_payment(request: HttpRequest, payment_id: str) -> JsonResponse:
    _enabled()
    payment = payment_list(client=demo_client()).filter(pk=payment_id).first()
    if payment is None:
        raise Http404("No such demo payment.")
    return JsonResponse(_state(payment))
