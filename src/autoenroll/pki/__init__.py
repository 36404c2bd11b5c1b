"""PKI layer: keys, certificate profiles and CA backends.

Pure Python on top of ``cryptography``; it must never import Django or
``autoenroll.server`` (the server's models call into it, not the reverse).

``pki.NAME`` is any name in the ``__all__`` of a submodule, loaded on first use (PEP 562): the agent checks
a key type name (``pki.keytypes``) or makes a key without paying for the CA, CRL, OCSP and HSM modules.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Searched in this order: the cheap modules first. (No `typing` here: the agent imports this on every logon.)
_SUBMODULES = ("keytypes", "serials", "keys", "csr", "crl", "backends", "profiles", "ocsp", "hsm")


def _submodule(name: str) -> ModuleType:
    return importlib.import_module(f".{name}", __name__)


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:  # `pki.ocsp.MAX_OCSP_REQUEST_SIZE`: the submodule itself
        return _submodule(name)
    if name == "__all__":
        return sorted({n for module in _SUBMODULES for n in _submodule(module).__all__})
    if not name.startswith("__"):
        for module in _SUBMODULES:
            found = _submodule(module)
            if name in found.__all__:
                value = getattr(found, name)
                globals()[name] = value  # from now on a plain attribute (monkeypatch and `is` work as usual)
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES, *__getattr__("__all__")})
