"""Text fields as the server accepts them from outside: bounded, with no NUL and no lone surrogate
(PostgreSQL refuses NUL in a string, SQLite cannot encode a lone surrogate: either would be a 500)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> bool:
    """No NUL, no lone surrogate: what every database the server runs on can store."""
    return _UNSTORABLE.search(value) is None


def _clean(value: str) -> str:
    if not storable(value):
        raise ValueError("NUL or a lone surrogate")
    return value


def text(max_length: int):
    """A field type for django-ninja schemas: a string of at most `max_length` clean characters."""
    return Annotated[str, Field(max_length=max_length), AfterValidator(_clean)]
