"""Payers' numbers we know, by their SHA-256 (Daraja sends C2B payers' numbers hashed: the
plain SHA-256 of ``2547…``). A hash is matched to a customer by hashing the numbers we hold,
never reversed."""

from __future__ import annotations

from collections.abc import Iterable

from .models import KnownPhone


def phones_remember(phones: Iterable[str]) -> None:
    """Keep these numbers' hashes, to recognise them when Daraja sends only the hash."""
    KnownPhone.objects.bulk_create(
        [KnownPhone(hash=KnownPhone.hash_of(phone), phone=phone) for phone in set(phones) if phone],
        ignore_conflicts=True,
    )


def phone_of_hash(msisdn_hash: str) -> str:
    """The number we know whose SHA-256 is ``msisdn_hash``, or ""."""
    known = KnownPhone.objects.filter(hash=msisdn_hash.lower()).values_list("phone", flat=True)
    return known.first() or ""
