"""Certificate serial numbers as people and programs write them, reduced to the one form we store.

Every place that takes a serial from outside (the agent's status report, the admin pages' search, the REST
API, ``certificates revoke``) goes through :func:`parse_serial`, so that ``0x00AB…``, ``ab…`` and ``AB:…``
name the same certificate everywhere.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_SERIAL_DIGITS", "parse_serial"]

#: RFC 5280 allows 20 octets (40 digits); 64 leaves room for leading zeros and odd CAs, and bounds the work.
MAX_SERIAL_DIGITS: Final = 64

_HEX_DIGITS: Final = frozenset("0123456789abcdef")


def parse_serial(text: str) -> str:
    """The canonical form of a serial: lower-case hex without leading zeros (``"0"`` for zero).

    Accepts a ``0x`` prefix, ``:`` or whitespace between digits, any case and leading zeros, the ways
    OpenSSL, browsers and Windows print serials. Anything else is a ValueError that says what is wrong.
    """
    if not isinstance(text, str):
        raise ValueError(f"a serial number must be text, not {type(text).__name__}")
    shown = repr(text if len(text) <= 80 else text[:80] + "...")
    digits = text.strip()
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    digits = "".join(digits.replace(":", " ").split()).lower()
    if not digits:
        raise ValueError(f"{shown} is not a serial number: no hexadecimal digits")
    if not _HEX_DIGITS.issuperset(digits):
        bad = next(c for c in digits if c not in _HEX_DIGITS)
        raise ValueError(f"{shown} is not a hexadecimal serial number ({bad!r} is not a hex digit)")
    if len(digits) > MAX_SERIAL_DIGITS:
        raise ValueError(f"{shown} is not a serial number: more than {MAX_SERIAL_DIGITS} hex digits")
    return digits.lstrip("0") or "0"
