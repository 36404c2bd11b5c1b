"""HTTP details decided once for every entry point."""

from __future__ import annotations


def content_length(value: str) -> int | None:
    """The length a Content-Length header declares, or None when it is no decimal number. ASCII digits only:
    `str.isdigit` also takes "１２", which `int` reads as 12."""
    return int(value) if value.isascii() and value.isdigit() else None
