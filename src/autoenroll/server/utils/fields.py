"""Model fields for secrets that must be encrypted at rest (AD login passwords).

The key is derived from Django's SECRET_KEY with HKDF, so a stolen database file alone reveals
nothing; SECRET_KEY_FALLBACKS keeps old values readable after a key rotation.
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

_INFO = b"autoenroll encrypted model field v1"


def _fernet_for(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@cache
def _cipher(secret_key: str, fallbacks: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet_for(secret_key), *(_fernet_for(s) for s in fallbacks)])


def cipher() -> MultiFernet:
    return _cipher(settings.SECRET_KEY, tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ())))


class EncryptedTextField(models.TextField):
    """A text column stored as a Fernet token; reads give back the clear text."""

    def get_prep_value(self, value: str | None) -> str | None:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return cipher().encrypt(value.encode()).decode("ascii")

    def from_db_value(self, value: str | None, expression, connection) -> str | None:
        if value is None or value == "":
            return value
        try:
            return cipher().decrypt(value.encode("ascii")).decode()
        except InvalidToken:
            raise ValueError(
                f"{self.model.__name__}.{self.name} cannot be decrypted: SECRET_KEY changed "
                "without keeping the old one in SECRET_KEY_FALLBACKS"
            ) from None

    def get_lookup(self, lookup_name):  # a Fernet token differs each time: lookups cannot match
        if lookup_name not in ("isnull",):
            return None
        return super().get_lookup(lookup_name)
