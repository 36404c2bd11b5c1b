"""Per-user API tokens.

A token is `ae_<prefix>_<secret>`; the database keeps the prefix (to find the row) and an HMAC of the
secret (to check it). Checking costs one HMAC, not a password hash: tokens are long random strings,
so a slow hash would buy nothing but latency on every API call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

PREFIX_LEN = 10


def _digest(secret: str) -> str:
    key = hashlib.sha256(b"autoenroll api token v1\0" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'monitoring'.")
    prefix = models.CharField(max_length=PREFIX_LEN, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user", "name"]

    def __str__(self) -> str:
        return f"{self.name} (ae_{self.prefix}_…)"

    @classmethod
    def issue(cls, user, name: str, expires=None) -> tuple[ApiToken, str]:
        """Create a token; the clear value is returned once and never stored."""
        prefix, secret = secrets.token_hex(PREFIX_LEN // 2), secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, prefix=prefix, digest=_digest(secret), expires=expires)
        return token, f"ae_{prefix}_{secret}"

    @classmethod
    def authenticate(cls, value: str):
        """The active user behind a presented token, or None."""
        parts = value.split("_", 2)
        if len(parts) != 3 or parts[0] != "ae" or len(parts[1]) != PREFIX_LEN:
            return None
        token = cls.objects.select_related("user").filter(prefix=parts[1]).first()
        if token is None or not hmac.compare_digest(token.digest, _digest(parts[2])):
            return None
        now = timezone.now()
        if (token.expires and token.expires <= now) or not token.user.is_active:
            return None
        if token.last_used is None or (now - token.last_used).total_seconds() > 60:
            cls.objects.filter(pk=token.pk).update(last_used=now)  # at most once a minute: no write per call
        return token.user
