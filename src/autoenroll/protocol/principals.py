"""Which Kerberos principals are people with a mailbox, and which are computers.

Services (``HTTP/host@REALM``) and computer accounts (``WS1$@REALM``) hold tickets too; only a user gets
an S/MIME certificate, and MS-XCEP offers computer templates to computer accounts only. The SPNEGO
acceptor, the enrollment pipeline and the policy service all ask here.
"""

from __future__ import annotations

__all__ = ["computer_principal", "user_principal"]


def _split(principal: str) -> tuple[str, str]:
    """(name, realm); the realm is what follows the last ``@``, as Kerberos writes it (``a\\@b@REALM``)."""
    if not isinstance(principal, str):
        raise ValueError(f"a principal must be text, not {type(principal).__name__}")
    name, at, realm = principal.rpartition("@")
    if not at:
        raise ValueError(f"{principal!r} is not a principal: no @REALM")
    if not name:
        raise ValueError(f"{principal!r} is not a principal: empty name")
    if not realm:
        raise ValueError(f"{principal!r} is not a principal: empty realm")
    if "/" in name:
        raise ValueError(f"{principal!r} is a service principal, not a user")
    return name, realm


def user_principal(principal: str) -> tuple[str, str]:
    """(name, realm) of a user's principal, such as ``user1@TEST.COM``; ValueError for anything else."""
    name, realm = _split(principal)
    if name.endswith("$"):
        raise ValueError(f"{principal!r} is a computer account, not a user")
    return name, realm


def computer_principal(principal: str) -> tuple[str, str]:
    """(name, realm) of a computer account's principal, such as ``WS1$@TEST.COM``; ValueError otherwise."""
    name, realm = _split(principal)
    if not name.endswith("$") or name == "$":
        raise ValueError(f"{principal!r} is not a computer account (NAME$@REALM)")
    return name, realm
