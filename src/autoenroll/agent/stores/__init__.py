"""Certificate stores behind one interface (``Store``), chosen by the ``store`` key of autoenroll.conf.

    folder[:PATH]        PEM/PKCS#12 folder (default on Linux and macOS)
    nss:PATH             an NSS database directory (a Thunderbird/Firefox profile)
    nss:thunderbird      every Thunderbird profile of the user (nss:firefox likewise)
    windows              CurrentUser\\MY (default on Windows)
    keychain[:PATH]      the macOS login keychain (or the named keychain)

Several stores may be listed, comma-separated: the first makes the key, the others receive a copy of the
identity (a PKCS#12 import), so Thunderbird and the folder hold the same certificate.
"""

from __future__ import annotations

import sys

from .base import Installed, Request, Store

__all__ = ["Installed", "Request", "Store", "default_specs", "open_stores"]


def default_specs() -> tuple[str, ...]:
    return ("windows",) if sys.platform == "win32" else ("folder",)


def open_stores(specs: tuple[str, ...] | list[str]) -> list[Store]:
    """Store objects for the configured specs (nothing is touched on disk yet)."""
    stores: list[Store] = []
    for spec in specs or default_specs():
        kind, _, location = spec.partition(":")
        kind = kind.strip().lower()
        if kind == "folder":
            from .folder import FolderStore

            stores.append(FolderStore(location))
        elif kind == "nss":
            from .nss import PROFILE_GLOBS, NSSStore, profiles

            if location in PROFILE_GLOBS:
                stores.extend(NSSStore(str(p)) for p in profiles(location))
            elif location:
                stores.append(NSSStore(location))
            else:
                raise ValueError("store nss needs a profile directory or 'thunderbird'/'firefox'")
        elif kind == "windows":
            from .windows import WindowsStore

            stores.append(WindowsStore(location))
        elif kind in ("keychain", "macos"):
            from .macos import KeychainStore

            stores.append(KeychainStore(location))
        else:
            raise ValueError(f"unknown store {spec!r} (folder, nss, windows, keychain)")
    if any(not s.imports_keys for s in stores[1:]):
        raise ValueError("the windows store keeps its own keys: list it first and alone")
    return stores
