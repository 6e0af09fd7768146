"""M-Pesa accounts (paybills and tills): made, found by their URL token, and their C2B URLs.

An account's URLs carry a token (``secrets.token_urlsafe``; only its SHA-256 is stored) and
never a word Daraja refuses in a registered URL ("mpesa", "safaricom", "exec", "cmd", "sql",
"query"..., in any case): a token that happens to contain one is drawn again.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.crypto import decrypt, encrypt
from core.models import ApiClient, hash_secret
from daraja.client import PAYBILL, TILL, DarajaClient, DarajaConfig, get_client
from daraja.errors import DarajaError

from .models import AccountKind, MpesaAccount, Payment

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
    till_number: str = "",
) -> tuple[MpesaAccount, str]:
    """A new account; returns it with its URL token (shown once: only its hash is kept).
    ``till_number``: a till's number when its shortcode is the store number."""
    if not _is_shortcode(shortcode):
        raise ValueError(f"shortcode {shortcode!r} must be 5 to 8 digits")
    if kind not in AccountKind.values:
        raise ValueError(f"kind {kind!r} must be one of {AccountKind.values}")
    if till_number and (kind != AccountKind.TILL or not _is_shortcode(till_number)):
        raise ValueError(f"till number {till_number!r} must be 5 to 8 digits, on a till")
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
        till_number=till_number,
    )
    return account, token


def _is_shortcode(value: str) -> bool:
    return value.isascii() and value.isdigit() and 5 <= len(value) <= 8


def account_new_token(account: MpesaAccount) -> str:
    """Replace the account's URL token (the old URLs stop working: register the new ones)."""
    token = new_url_token()
    with transaction.atomic():
        MpesaAccount.objects.filter(pk=account.pk).update(url_token_hash=hash_secret(token))
        account.url_token_hash = hash_secret(token)
    _forget_tokens()
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


_clients: dict[DarajaConfig, DarajaClient] = {}
_clients_lock = threading.Lock()


def account_transaction_type(account: MpesaAccount) -> str:
    """What an STK Push from ``account`` asks for: Buy Goods for a till, else Pay Bill."""
    return TILL if account.kind == AccountKind.TILL else PAYBILL


def account_config(account: MpesaAccount) -> DarajaConfig:
    """What a Daraja call for ``account`` uses: its shortcode, kind and till number; its own
    app's key and secret, else the MPESA_* settings'; its own passkey, else the settings'
    when it is the settings' shortcode (a passkey belongs to one shortcode), else none."""
    base = DarajaConfig.from_settings()
    own_app = account.has_credentials
    if account.passkey_encrypted:
        passkey = decrypt(account.passkey_encrypted)
    else:
        passkey = base.passkey if account.shortcode == settings.MPESA_SHORTCODE else ""
    return replace(
        base,
        consumer_key=decrypt(account.consumer_key_encrypted) if own_app else base.consumer_key,
        consumer_secret=(
            decrypt(account.consumer_secret_encrypted) if own_app else base.consumer_secret
        ),
        shortcode=account.shortcode,
        passkey=passkey,
        transaction_type=account_transaction_type(account),
        party_b=account.party_b,
    )


def account_client(account: MpesaAccount) -> DarajaClient:
    """The Daraja client for calls about ``account`` (STK Push and Query, Register URL, Pull
    Transactions), one per configuration and process; the settings' own client when the
    account adds nothing to the MPESA_* settings."""
    config = account_config(account)
    if config == get_client().config:
        return get_client()
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = _clients[config] = DarajaClient(config)
        return client


def payment_client(payment: Payment) -> DarajaClient:
    """The client for STK Query about ``payment``: its account's (a payment made before
    accounts existed has none: the settings')."""
    return account_client(payment.account) if payment.account is not None else get_client()


def default_account() -> MpesaAccount:
    """The account of the MPESA_* settings (``MPESA_SHORTCODE``), where an STK Push goes when
    it names no shortcode. Made on first use, so an install from before accounts keeps working
    unchanged; from then on it is an account like the others (its record says its kind)."""
    shortcode = settings.MPESA_SHORTCODE
    account = MpesaAccount.objects.filter(shortcode=shortcode).first()
    if account is not None:
        return account
    till = settings.MPESA_TRANSACTION_TYPE == "till"
    try:
        with transaction.atomic():
            return MpesaAccount.objects.create(
                name=f"Default ({shortcode})",
                shortcode=shortcode,
                kind=AccountKind.TILL if till else AccountKind.PAYBILL,
                till_number=settings.MPESA_TILL_NUMBER if till else "",
                url_token_hash=hash_secret(new_url_token()),
            )
    except IntegrityError:  # another process made it first
        return MpesaAccount.objects.get(shortcode=shortcode)


class AccountRefused(Exception):
    """The API key may not push from this account, or the account cannot push; the message
    says why, to the merchant."""


def key_accounts(key: ApiClient) -> list[MpesaAccount] | None:
    """The accounts an API key is limited to; None when it is not limited."""
    limited = list(MpesaAccount.objects.filter(limited_keys=key).order_by("shortcode"))
    return limited or None


def key_account_list(key: ApiClient) -> QuerySet[MpesaAccount]:
    """The accounts an API key works on: the ones it is limited to, else its client's."""
    limited = key_accounts(key)
    if limited is not None:
        return MpesaAccount.objects.filter(pk__in=[account.pk for account in limited])
    return MpesaAccount.objects.filter(client=key.owner)


def account_for_push(*, key: ApiClient, shortcode: str | None) -> MpesaAccount:
    """The account an STK Push by ``key`` goes out from: the one ``shortcode`` names (the
    key's client's own, one no client owns, or the default account), else the default
    account. A key limited to accounts uses only those; without a shortcode, its one
    account, or the default account when it is among them."""
    limited = key_accounts(key)
    if shortcode:
        if shortcode == settings.MPESA_SHORTCODE:
            account: MpesaAccount | None = default_account()
        else:
            account = (
                MpesaAccount.objects.filter(shortcode=shortcode)
                .filter(Q(client=key.owner) | Q(client__isnull=True))
                .first()
            )
        if account is None or (limited is not None and account not in limited):
            raise AccountRefused(f"This API key has no M-Pesa account with shortcode {shortcode}.")
    elif limited is None:
        account = default_account()
    elif len(limited) == 1:
        account = limited[0]
    else:
        default = [a for a in limited if a.shortcode == settings.MPESA_SHORTCODE]
        if not default:
            names = ", ".join(a.shortcode for a in limited)
            raise AccountRefused(
                f"This API key is limited to the accounts {names}: name one in 'shortcode'."
            )
        account = default[0]
    if not account.enabled:
        raise AccountRefused(f"The M-Pesa account {account.shortcode} is disabled.")
    if not account_config(account).passkey:
        raise AccountRefused(
            f"The M-Pesa account {account.shortcode} has no Lipa na M-Pesa Online passkey, "
            "so it cannot send STK Pushes; an operator sets one with "
            f"'manage.py mpesa_account credentials {account.shortcode} --from-env PREFIX'."
        )
    return account


def key_limit(*, key: ApiClient, shortcodes: list[str]) -> list[MpesaAccount]:
    """Limit ``key`` to the accounts ``shortcodes`` name (of its client, or of none); an
    empty list lifts the limit. Returns the accounts it is now limited to."""
    accounts = []
    for shortcode in shortcodes:
        account = (
            MpesaAccount.objects.filter(shortcode=shortcode)
            .filter(Q(client=key.owner) | Q(client__isnull=True))
            .first()
        )
        if account is None:
            raise ValueError(f"no account {shortcode} of this key's client (or of no client)")
        accounts.append(account)
    with transaction.atomic():
        for account in MpesaAccount.objects.filter(limited_keys=key):
            account.limited_keys.remove(key)
        for account in accounts:
            account.limited_keys.add(key)
    return accounts


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
    _forget_tokens()
    for name, value in registered.items():
        setattr(account, name, value)
    return urls


# Accounts found by URL token, for confirmations (``cached=True``): the token's hash -> (until,
# account). A confirmation is stored whatever the account's state, so a few seconds' old view
# of it is enough, and it saves a query on the hottest C2B path.
TOKEN_CACHE_SECONDS = 5.0
_token_accounts: dict[str, tuple[float, MpesaAccount]] = {}


def account_of_token(token: str, *, cached: bool = False) -> MpesaAccount | None:
    """The account whose C2B URLs carry ``token``. ``cached``: it may be up to
    TOKEN_CACHE_SECONDS old in this process (an unknown token is always looked up)."""
    if not token:
        return None
    digest = hash_secret(token)
    if cached:
        hit = _token_accounts.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    account = MpesaAccount.objects.filter(url_token_hash=digest).first()
    if cached and account is not None:
        if len(_token_accounts) >= 1000:
            _token_accounts.clear()
        _token_accounts[digest] = (time.monotonic() + TOKEN_CACHE_SECONDS, account)
    return account


def _forget_tokens() -> None:
    """A token changed: this process stops using what it found by the old one at once."""
    _token_accounts.clear()
