"""`python manage.py mpesa_account …`: the paybills and tills this system receives C2B money on.

    mpesa_account create --name "Shop" --shortcode 600984 [--kind till] [--client PREFIX]
                         [--till-number 5123456] [--min 10] [--max 150000]
                         [--pattern '[A-Z]{3}-[0-9]+'] [--require-known-reference]
    mpesa_account list
    mpesa_account new-token 600984     # new C2B URLs (the old ones stop working)
    mpesa_account register 600984 [--version v1]   # new C2B URLs, registered with Daraja
    mpesa_account add-reference 600984 INV-1001 [--amount 2500]
    mpesa_account pull-register 600984 --nominated-number 0722000000
    mpesa_account pull 600984          # pull now: record what no confirmation brought
    SHOP_CONSUMER_KEY=… SHOP_CONSUMER_SECRET=… [SHOP_PASSKEY=…] \
        mpesa_account credentials 600984 --from-env SHOP   # the account's own Daraja app
    mpesa_account credentials 600984 --clear               # back to the MPESA_* settings
    mpesa_account limit-key PREFIX 600984 [600985 ...]   # the API key works on these only
    mpesa_account limit-key PREFIX --clear                # on all of its client's accounts

Credentials are read from the environment (never the command line, which shell history and
``ps`` show) and stored encrypted (ENCRYPTION_KEYS; ``rotate_encryption_key`` re-encrypts
them).

``create`` and ``new-token`` print the account's validation and confirmation URLs, with
their token, once: only the token's hash is stored. Register them with Daraja.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from core.models import ApiClient
from core.phones import InvalidPhoneNumber, normalize_phone
from daraja.errors import DarajaError
from payments.accounts import (
    RegistrationError,
    account_client,
    account_create,
    account_new_token,
    account_register_urls,
    account_set_credentials,
    c2b_urls,
    key_limit,
    new_url_token,
)
from payments.models import AccountKind, KnownReference, MpesaAccount
from payments.pull import account_pull


def _amount(text: str | None, name: str) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"{name} {text!r} is not an amount") from None
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
        raise CommandError(f"{name} {text!r} must be a positive amount with at most 2 decimals")
    return value


class Command(BaseCommand):
    help = "Create and list M-Pesa accounts (paybills, tills) and print their C2B URLs."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="A new account; prints its C2B URLs once")
        create.add_argument("--name", required=True)
        create.add_argument("--shortcode", required=True)
        create.add_argument("--kind", choices=AccountKind.values, default=AccountKind.PAYBILL)
        create.add_argument(
            "--client", metavar="PREFIX", help="The API key prefix of the merchant it pays"
        )
        create.add_argument(
            "--till-number",
            default="",
            help="A till's number (STK Push's PartyB) when --shortcode is its store number",
        )
        create.add_argument("--min", dest="min_amount")
        create.add_argument("--max", dest="max_amount")
        create.add_argument("--pattern", default="", help="Regex the account number must match")
        create.add_argument("--require-known-reference", action="store_true")
        sub.add_parser("list", help="The accounts")
        token = sub.add_parser("new-token", help="New C2B URLs for an account")
        token.add_argument("shortcode")
        register = sub.add_parser("register", help="Register new C2B URLs with Daraja")
        register.add_argument("shortcode")
        register.add_argument("--version", choices=("v1", "v2"), default="v2")
        pull_register = sub.add_parser(
            "pull-register", help="Register for Pull Transactions and turn the pulls on"
        )
        pull_register.add_argument("shortcode")
        pull_register.add_argument("--nominated-number", required=True)
        credentials = sub.add_parser("credentials", help="The account's own Daraja app")
        credentials.add_argument("shortcode")
        source = credentials.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--from-env",
            metavar="PREFIX",
            help="read PREFIX_CONSUMER_KEY, PREFIX_CONSUMER_SECRET and (optional) "
            "PREFIX_PASSKEY from the environment",
        )
        source.add_argument("--clear", action="store_true", help="use the MPESA_* settings")
        pull = sub.add_parser("pull", help="Pull the last transactions now")
        pull.add_argument("shortcode")
        limit = sub.add_parser("limit-key", help="Limit an API key to some accounts")
        limit.add_argument("key", metavar="PREFIX", help="The API key's prefix")
        limit.add_argument("shortcodes", nargs="*", metavar="SHORTCODE")
        limit.add_argument("--clear", action="store_true", help="lift the limit")
        reference = sub.add_parser("add-reference", help="A known account number")
        reference.add_argument("shortcode")
        reference.add_argument("reference")
        reference.add_argument("--amount")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, "_" + action.replace("-", "_"))(**options)

    def _account(self, shortcode: str) -> MpesaAccount:
        account = MpesaAccount.objects.filter(shortcode=shortcode).first()
        if account is None:
            raise CommandError(f"No account with shortcode {shortcode!r}")
        return account

    def _print_urls(self, token: str) -> None:
        urls = c2b_urls(token)
        self.stdout.write("C2B URLs (shown once; register them with Daraja):")
        self.stdout.write(f"  ValidationURL:   {urls.validation}")
        self.stdout.write(f"  ConfirmationURL: {urls.confirmation}")

    def _create(self, **options: Any) -> None:
        client = None
        if options["client"]:
            client = ApiClient.objects.filter(key_prefix=options["client"]).first()
            if client is None:
                raise CommandError(f"No API key with prefix {options['client']!r}")
        try:
            account, token = account_create(
                name=options["name"],
                shortcode=options["shortcode"],
                kind=options["kind"],
                client=client,
                min_amount=_amount(options["min_amount"], "--min"),
                max_amount=_amount(options["max_amount"], "--max"),
                account_pattern=options["pattern"],
                require_known_reference=options["require_known_reference"],
                till_number=options["till_number"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except IntegrityError:
            raise CommandError(f"An account with shortcode {options['shortcode']} exists") from None
        self.stdout.write(f"Account: {account}")
        self._print_urls(token)

    def _limit_key(self, **options: Any) -> None:
        key = ApiClient.objects.filter(key_prefix=options["key"]).first()
        if key is None:
            raise CommandError(f"No API key with prefix {options['key']!r}")
        if bool(options["shortcodes"]) == options["clear"]:
            raise CommandError("Name the accounts (shortcodes), or give --clear")
        try:
            accounts = key_limit(key=key, shortcodes=options["shortcodes"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if accounts:
            names = ", ".join(account.shortcode for account in accounts)
            self.stdout.write(f"The key {key} works on the accounts {names} only.")
        else:
            self.stdout.write(f"The key {key} works on any of its client's accounts.")

    def _list(self, **options: Any) -> None:
        for account in MpesaAccount.objects.select_related("client"):
            owner = account.client.name if account.client else "-"
            state = "enabled" if account.enabled else "disabled"
            self.stdout.write(
                f"{account.shortcode}\t{account.kind}\t{state}\t{owner}\t{account.name}"
            )

    def _new_token(self, **options: Any) -> None:
        account = self._account(options["shortcode"])
        self._print_urls(account_new_token(account))

    def _register(self, **options: Any) -> None:
        account = self._account(options["shortcode"])
        try:
            urls = account_register_urls(account, version=options["version"])
        except RegistrationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Registered with Daraja ({options['version']}):")
        self.stdout.write(f"  ValidationURL:   {urls.validation}")
        self.stdout.write(f"  ConfirmationURL: {urls.confirmation}")

    def _credentials(self, **options: Any) -> None:
        account = self._account(options["shortcode"])
        if options["clear"]:
            account_set_credentials(account, consumer_key="", consumer_secret="")
            self.stdout.write(f"{account.shortcode} uses the MPESA_* settings' Daraja app.")
            return
        prefix = options["from_env"]
        values = {
            name: os.environ.get(f"{prefix}_{name.upper()}", "").strip()
            for name in ("consumer_key", "consumer_secret", "passkey")
        }
        missing = [
            f"{prefix}_{n.upper()}" for n in ("consumer_key", "consumer_secret") if not values[n]
        ]
        if missing:
            raise CommandError(f"not set in the environment: {', '.join(missing)}")
        account_set_credentials(account, **values)
        with_passkey = " and passkey" if values["passkey"] else ""
        self.stdout.write(
            f"{account.shortcode} has its own Daraja app (key, secret{with_passkey})."
        )

    def _pull_register(self, **options: Any) -> None:
        account = self._account(options["shortcode"])
        try:
            number = normalize_phone(options["nominated_number"])
        except InvalidPhoneNumber as exc:
            raise CommandError(f"--nominated-number: {exc}") from None
        try:
            status = account_client(account).pull_register(
                shortcode=account.shortcode,
                nominated_number="0" + number[3:],
                # Required by Daraja, unused (pulls are read by query): a C2B URL whose
                # token nobody holds, so anything sent there is stored, refused.
                callback_url=c2b_urls(new_url_token()).confirmation,
            )
        except DarajaError as exc:
            raise CommandError(f"Daraja refused the Pull registration: {exc}") from None
        MpesaAccount.objects.filter(pk=account.pk).update(pull_enabled=True)
        said = "registered" if status in ("1000", "0") else "was already registered"
        self.stdout.write(f"{account.shortcode} {said} for Pull Transactions; pulls are on.")

    def _pull(self, **options: Any) -> None:
        account = self._account(options["shortcode"])
        result = account_pull(account)
        if result.error:
            raise CommandError(f"The pull failed: {result.error}")
        self.stdout.write(
            f"Read {result.read} transaction(s): {result.recorded} recovered (no confirmation "
            f"had come), {result.known} already recorded, {result.refused} refused or kept "
            "for review."
        )

    def _add_reference(self, **options: Any) -> None:
        account = self._account(options["shortcode"])
        reference = options["reference"].strip()
        if not reference:
            raise CommandError("the reference is empty")
        try:
            KnownReference.objects.create(
                account=account, reference=reference, amount=_amount(options["amount"], "--amount")
            )
        except IntegrityError:
            raise CommandError(f"{reference!r} is already known on {account.shortcode}") from None
        self.stdout.write(f"Known reference {reference} added to {account.shortcode}")
