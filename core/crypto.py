"""Secrets encrypted at rest (webhook signing secrets; M-Pesa credentials later).

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under the keys of
``ENCRYPTION_KEYS``: the first encrypts, every one decrypts, so a key is rotated by putting
a new one first, running ``manage.py rotate_encryption_key`` (which re-encrypts every stored
secret under it), then removing the old one. Without ENCRYPTION_KEYS a key is derived from
DJANGO_SECRET_KEY (``manage.py check --deploy`` warns about it in production).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

# Every (model label, field) holding a value encrypted here: each app registers its own when
# it starts (AppConfig.ready), for ``manage.py rotate_encryption_key``.
ENCRYPTED_FIELDS: list[tuple[str, str]] = []


def register_encrypted_field(model_label: str, field: str) -> None:
    if (model_label, field) not in ENCRYPTED_FIELDS:
        ENCRYPTED_FIELDS.append((model_label, field))


class DecryptionFailed(Exception):
    """A stored secret that none of ENCRYPTION_KEYS opens (a key was removed too soon)."""


def derived_key(secret: str) -> str:
    """A Fernet key derived from DJANGO_SECRET_KEY, for when ENCRYPTION_KEYS is unset."""
    digest = hashlib.sha256(b"mpesa-encryption-key:" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _keys() -> tuple[str, ...]:
    return tuple(settings.ENCRYPTION_KEYS) or (derived_key(settings.SECRET_KEY),)


def encrypt(plaintext: str) -> str:
    return _fernet(_keys()).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(_keys()).decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed(
            "a stored secret cannot be decrypted with ENCRYPTION_KEYS: was the key it was "
            "encrypted with removed before rotate_encryption_key ran?"
        ) from None


def reencrypt(token: str) -> str:
    """The same secret under the first (current) key."""
    try:
        return _fernet(_keys()).rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("a stored secret cannot be decrypted with ENCRYPTION_KEYS") from None
