"""M-Pesa accounts (paybills and tills): made, found by their URL token, and their C2B URLs.

An account's URLs carry a token (``secrets.token_urlsafe``; only its SHA-256 is stored) and
never a word Daraja refuses in a registered URL ("mpesa", "safaricom", "exec", "cmd", "sql",
"query"..., in any case): a token that happens to contain one is drawn again.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, replace
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.crypto import decrypt, encrypt
from core.models import ApiClient, hash_secret
from daraja.client import DarajaClient, DarajaConfig, get_client
from daraja.errors import DarajaError

from .models import AccountKind, MpesaAccount

# Daraja refuses a registered URL that contains any of these, in any case.
FORBIDDEN_URL_WORDS = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")


def url_words_problem(url: str) -> str:
    """'' when Daraja would take ``url``; else which word it refuses."""
    lowered = url.lower()
    found = [word for word in FORBIDDEN_URL_WORDS if word in lowered]
    return f"the URL contains {found[0]!r}, which Daraja refuses" if found else ""


def new_url_token() -> str:
    while True:
        token = secrets.token_urlsafe(32)
        if not url_words_problem(token):
            return token


@dataclass(frozen=True)
class C2BUrls:
    validation: str
    confirmation: str


def c2b_urls(token: str) -> C2BUrls:
    base = f"{settings.MPESA_C2B_URL.rstrip('/')}/{token}"
    return C2BUrls(validation=f"{base}/validation/", confirmation=f"{base}/confirmation/")


def account_create(
    *,
    name: str,
    shortcode: str,
    kind: str = AccountKind.PAYBILL,
    client: ApiClient | None = None,
    min_amount: Decimal | None = None,
    max_amount: Decimal | None = None,
    account_pattern: str = "",
    require_known_reference: bool = False,
) -> tuple[MpesaAccount, str]:
    """A new account; returns it with its URL token (shown once: only its hash is kept)."""
    if not (shortcode.isascii() and shortcode.isdigit() and 5 <= len(shortcode) <= 8):
        raise ValueError(f"shortcode {shortcode!r} must be 5 to 8 digits")
    if kind not in AccountKind.values:
        raise ValueError(f"kind {kind!r} must be one of {AccountKind.values}")
    token = new_url_token()
    account = MpesaAccount.objects.create(
        name=name,
        shortcode=shortcode,
        kind=kind,
        client=client,
        url_token_hash=hash_secret(token),
        min_amount=min_amount,
        max_amount=max_amount,
        account_pattern=account_pattern,
        require_known_reference=require_known_reference,
    )
    return account, token


def account_new_token(account: MpesaAccount) -> str:
    """Replace the account's URL token (the old URLs stop working: register the new ones)."""
    token = new_url_token()
    with transaction.atomic():
        MpesaAccount.objects.filter(pk=account.pk).update(url_token_hash=hash_secret(token))
        account.url_token_hash = hash_secret(token)
    return token


def account_set_credentials(
    account: MpesaAccount, *, consumer_key: str, consumer_secret: str, passkey: str = ""
) -> None:
    """Give the account its own Daraja app (stored encrypted; ``passkey``: its Lipa na M-Pesa
    Online passkey, if it has one). Empty key and secret: back to the MPESA_* settings."""
    if bool(consumer_key) != bool(consumer_secret):
        raise ValueError("give both the consumer key and the consumer secret, or neither")
    fields = {
        "consumer_key_encrypted": encrypt(consumer_key) if consumer_key else "",
        "consumer_secret_encrypted": encrypt(consumer_secret) if consumer_secret else "",
        "passkey_encrypted": encrypt(passkey) if passkey else "",
    }
    MpesaAccount.objects.filter(pk=account.pk).update(**fields)
    for name, value in fields.items():
        setattr(account, name, value)


_clients: dict[tuple[int, str, str], DarajaClient] = {}
_clients_lock = threading.Lock()


def account_client(account: MpesaAccount) -> DarajaClient:
    """The Daraja client for calls about ``account`` (Register URL, Pull Transactions): its
    own app's credentials when it has them, else the MPESA_* settings' client."""
    if not account.has_credentials:
        return get_client()
    base = DarajaConfig.from_settings()
    key = (account.pk, base.base_url, account.consumer_key_encrypted)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            config = replace(
                base,
                consumer_key=decrypt(account.consumer_key_encrypted),
                consumer_secret=decrypt(account.consumer_secret_encrypted),
                shortcode=account.shortcode,
                passkey=decrypt(account.passkey_encrypted) if account.passkey_encrypted else "",
            )
            client = _clients[key] = DarajaClient(config)
        return client


class RegistrationError(Exception):
    """The URLs were not registered; the message says why and what to do."""


def register_problem(error: DarajaError) -> str:
    """Daraja's refusals of a Register URL call, as a person can act on them."""
    text = f"{error.error_code} {error.message}".lower()
    if "already registered" in text:
        return (
            "Daraja says these URLs are already registered for the shortcode. In production "
            "a registration is one-time: delete it in the M-Pesa portal (URL Management) "
            "and register again."
        )
    if error.error_code == "401.003.01" or "no apiproduct" in text:
        return (
            "Daraja found no API product for this call: the app's C2B product does not match "
            "the URL version. Register with the other version (--version v1 or v2)."
        )
    if "duplicate notification" in text:
        return "Daraja has URLs from its older platform for this shortcode: ask its support."
    return f"Daraja refused the registration: {error}"


def account_register_urls(
    account: MpesaAccount, *, version: str = "v2", client: DarajaClient | None = None
) -> C2BUrls:
    """Register new C2B URLs for ``account`` with Daraja; returns them. The URLs carry a new
    token, which replaces the old one only once Daraja has taken them (a refused
    registration leaves the registered URLs working). Raises RegistrationError."""
    token = new_url_token()
    urls = c2b_urls(token)
    for url in (urls.validation, urls.confirmation):
        problem = url_words_problem(url)
        if problem:
            raise RegistrationError(f"{url}: {problem} (set MPESA_C2B_URL)")
        if settings.MPESA_ENV == "production" and not url.startswith("https://"):
            raise RegistrationError(f"{url}: production URLs must be https")
    try:
        (client or account_client(account)).c2b_register_url(
            shortcode=account.shortcode,
            response_type=account.response_type,
            confirmation_url=urls.confirmation,
            validation_url=urls.validation,
            version=version,
        )
    except DarajaError as exc:
        raise RegistrationError(register_problem(exc)) from None
    registered = {
        "url_token_hash": hash_secret(token),
        "urls_registered_at": timezone.now(),
        "urls_registered_version": version,
    }
    MpesaAccount.objects.filter(pk=account.pk).update(**registered)
    for name, value in registered.items():
        setattr(account, name, value)
    return urls


def account_of_token(token: str) -> MpesaAccount | None:
    if not token:
        return None
    return MpesaAccount.objects.filter(url_token_hash=hash_secret(token)).first()
